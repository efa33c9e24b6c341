package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func backends(n int) []*Backend {
	var bs []*Backend
	for i := range n {
		bs = append(bs, NewBackend(fmt.Sprintf("127.0.0.1:%d", 9002+i), 1))
	}
	return bs
}

// counts picks n times and counts the picks per backend.
func counts(p Picker, bs []*Backend, n int, key func(i int) netip.Addr) map[string]int {
	got := map[string]int{}
	for i := range n {
		got[p.Pick(bs, key(i)).Name]++
	}
	return got
}

func noKey(int) netip.Addr { return netip.Addr{} }

var client = netip.MustParseAddr("1.2.3.4")

// TestEveryAlgorithm is one table for every picker: what it must do with
// the same pool.
func TestEveryAlgorithm(t *testing.T) {
	for _, algo := range Algorithms {
		p, err := NewPicker(algo)
		if err != nil {
			t.Fatal(err)
		}
		if p.Pick(nil, client) != nil {
			t.Errorf("%s: picked from an empty pool", algo)
		}
		one := backends(1)
		if p.Pick(one, client) != one[0] {
			t.Errorf("%s: did not pick the only backend", algo)
		}
	}
	if _, err := NewPicker("random"); err == nil {
		t.Error("unknown algorithm accepted")
	}
}

func TestRoundRobinInOrder(t *testing.T) {
	bs := backends(4)
	p := &RoundRobin{}
	for i := range 4000 {
		if got := p.Pick(bs, netip.Addr{}); got != bs[i%4] {
			t.Fatalf("pick %d went to %s, want %s", i, got.Name, bs[i%4].Name)
		}
	}
}

func TestWeightedIsSmoothAndProportional(t *testing.T) {
	bs := backends(3)
	bs[0].weight.Store(5)
	bs[1].weight.Store(1)
	bs[2].weight.Store(1)
	p := &Weighted{}
	var seq string
	for range 7 {
		seq += p.Pick(bs, netip.Addr{}).Name[len("127.0.0.1:900"):]
	}
	if seq != "2232422" { // nginx's smooth order for weights 5, 1, 1: a a b a c a a
		t.Errorf("order %s, want nginx's smooth 2232422", seq)
	}
	got := counts(p, bs, 7000, noKey)
	if got[bs[0].Name] != 5000 || got[bs[1].Name] != 1000 || got[bs[2].Name] != 1000 {
		t.Errorf("weights 5:1:1 gave %v", got)
	}
}

// seeded is p2c's random draw from a fixed seed: the picks are the same
// every run, so the test asserts what happened, not what is likely.
func seeded() func(n int) int { return rand.New(rand.NewPCG(1, 2)).IntN }

func TestLeastConnAndP2CAvoidTheBusy(t *testing.T) {
	for _, p := range []Picker{&LeastConn{}, PowerOfTwo{IntN: seeded()}} {
		bs := backends(4)
		bs[1].Active.Store(50) // one backend held busy
		got := counts(p, bs, 4000, noKey)
		if got[bs[1].Name] != 0 {
			t.Errorf("%T sent %d of 4000 to the busy backend", p, got[bs[1].Name])
		}
		for _, b := range []*Backend{bs[0], bs[2], bs[3]} {
			if got[b.Name] == 0 {
				t.Errorf("%T never picked the idle backend %s: %v", p, b.Name, got)
			}
		}
	}
}

// TestWeightedStateIsItsOwn: two weighted pickers over the same backends
// (two balancers, or one before and after a reload) do not disturb each
// other's order.
func TestWeightedStateIsItsOwn(t *testing.T) {
	bs := backends(2)
	bs[0].weight.Store(3)
	a, b := &Weighted{}, &Weighted{}
	var seqA, seqB string
	for range 4 { // picks taken in turn
		seqA += a.Pick(bs, netip.Addr{}).Name[len("127.0.0.1:900"):]
		seqB += b.Pick(bs, netip.Addr{}).Name[len("127.0.0.1:900"):]
	}
	if seqA != "2232" {
		t.Errorf("weights 3:1 alone gave %s, want 2232", seqA)
	}
	if seqB != seqA {
		t.Errorf("the other picker's order %s, want the same %s", seqB, seqA)
	}
}

func TestSourceHashMovesOnlyTheLeaversClients(t *testing.T) {
	bs := backends(4)
	p := SourceHash{}
	before := map[netip.Addr]*Backend{}
	spread := map[*Backend]int{}
	for i := range 4000 {
		client := netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i % 250)})
		before[client] = p.Pick(bs, client)
		spread[before[client]]++
	}
	for _, b := range bs {
		if spread[b] < 800 || spread[b] > 1200 {
			t.Errorf("backend %s got %d of 4000 clients: hash is lopsided", b.Name, spread[b])
		}
	}
	gone := bs[2]
	rest := []*Backend{bs[0], bs[1], bs[3]}
	for client, was := range before {
		now := p.Pick(rest, client)
		if was != gone && now != was {
			t.Fatalf("client %s moved from %s to %s though its backend stayed", client, was.Name, now.Name)
		}
	}
}

func TestFirstPicksTheFirst(t *testing.T) {
	bs := backends(3)
	if got := counts(First{}, bs, 10, noKey); got[bs[0].Name] != 10 {
		t.Errorf("first: %v", got)
	}
}

// Backups are offered only when no other backend is: the first of them,
// or all with allBackups; a backend already tried counts as not there.
func TestCandidatesKeepBackupsInReserve(t *testing.T) {
	bs := backends(4)
	bs[2].backup.Store(true)
	bs[3].backup.Store(true)
	p := NewPool(bs)
	names := func(c []*Backend) (out []string) {
		for _, b := range c {
			out = append(out, b.Name[len("127.0.0.1:"):])
		}
		return out
	}
	check := func(what string, got []*Backend, want ...string) {
		t.Helper()
		if fmt.Sprint(names(got)) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", what, names(got), want)
		}
	}
	check("all up", p.candidates(nil, false), "9002", "9003")
	check("all up, all_backups", p.candidates(nil, true), "9002", "9003")
	check("one active tried", p.candidates(bs[:1], false), "9003")
	check("both actives tried", p.candidates(bs[:2], false), "9004")
	check("both actives tried, all_backups", p.candidates(bs[:2], true), "9004", "9005")
	bs[0].SetState(Down)
	bs[1].SetState(Drain)
	check("actives out", p.candidates(nil, false), "9004")
	bs[2].SetState(Maint)
	check("actives and the first backup out", p.candidates(nil, false), "9005")
	bs[3].SetState(Down)
	check("everything out", p.candidates(nil, true))
	bs[1].SetState(Ready)
	check("an active back", p.candidates(nil, false), "9003")
}
