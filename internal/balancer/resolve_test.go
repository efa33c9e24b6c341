package balancer

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"loadlab/internal/testutil"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS answers SRV queries for _http._tcp.lab.test with the given
// ports on b1.lab.test, b2.lab.test…, and A queries for those names with
// 127.0.0.1 — a headless service's DNS, on loopback.
type fakeDNS struct {
	conn  net.PacketConn
	ports atomic.Pointer[[]uint16]
}

func startDNS(t *testing.T, ports ...uint16) *fakeDNS {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{conn: pc}
	d.ports.Store(&ports)
	t.Cleanup(func() { pc.Close() })
	go d.serve()
	return d
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
		name := q.Name.String()
		switch {
		case q.Type == dnsmessage.TypeSRV && name == "_http._tcp.lab.test.":
			for i, port := range *d.ports.Load() {
				target := dnsmessage.MustNewName("b" + string(rune('1'+i)) + ".lab.test.")
				b.SRVResource(rh, dnsmessage.SRVResource{Priority: 1, Weight: 1, Port: port, Target: target})
			}
		case q.Type == dnsmessage.TypeA && strings.HasSuffix(name, ".lab.test."):
			b.AResource(rh, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
		}
		msg, err := b.Finish()
		if err == nil {
			d.conn.WriteTo(msg, from)
		}
	}
}

func (d *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "udp", d.conn.LocalAddr().String())
	}}
}

func TestSRVBackendsFollowDNS(t *testing.T) {
	bss, _ := fourBackends(t)
	port := func(bs *backendServer) uint16 { return uint16(bs.srv.Addr().(*net.TCPAddr).Port) }
	dns := startDNS(t, port(bss[0]), port(bss[1]))
	b := startBalancer(t, Config{
		Backends: []BackendConfig{{Addr: "srv://_http._tcp.lab.test"}}, ResolveEvery: 50 * time.Millisecond,
		Resolver: dns.resolver(), Check: CheckConfig{Kind: "none"},
	})
	seen := map[string]bool{}
	for range 8 {
		_, by, _, err := fetch(b.Addr().String(), "/")
		if err != nil {
			t.Fatal(err)
		}
		seen[by] = true
	}
	if len(seen) != 2 || !seen["b1"] || !seen["b2"] {
		t.Errorf("from the SRV record's two targets, served by %v", seen)
	}
	// The service grows: DNS now names three targets.
	three := []uint16{port(bss[0]), port(bss[1]), port(bss[2])}
	dns.ports.Store(&three)
	testutil.Eventually(t, 3*time.Second, "the pool following DNS to three backends", func() bool { return len(b.Pool().All()) == 3 })
	// SRV answers come in an order shuffled by weight: look the new one up by name.
	if a := b.Pool().Find("b3.lab.test:" + strconv.Itoa(int(three[2]))); a == nil || a.Addr() != "127.0.0.1:"+strconv.Itoa(int(three[2])) {
		t.Errorf("new backend: %v", b.Status())
	}
}

// During a DNS outage a backend named by a host name keeps its last good
// address, and no client waits on DNS: look-ups happen off the loops.
func TestDNSOutageKeepsLastGoodAddress(t *testing.T) {
	bs := startServe(t, "b1")
	port := bs.srv.Addr().(*net.TCPAddr).Port
	dns := startDNS(t)
	name := "b1.lab.test:" + strconv.Itoa(port)
	b := startBalancer(t, Config{Backends: []BackendConfig{{Addr: name}}, ResolveEvery: 20 * time.Millisecond,
		Resolver: dns.resolver(), Check: CheckConfig{Kind: "none"}})
	if status, by, _, err := fetch(b.Addr().String(), "/"); err != nil || status != 200 || by != "b1" {
		t.Fatalf("before the outage: %d %q %v", status, by, err)
	}
	dns.conn.Close() // DNS is gone: every look-up from now on fails
	for i := range 50 {
		if status, _, _, err := fetch(b.Addr().String(), "/"); err != nil || status != 200 {
			t.Fatalf("request %d during the outage: %d %v", i, status, err)
		}
	}
	if got := b.Pool().Find(name).Addr(); got != "127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("address during the outage: %s", got)
	}
}
