package balancer

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// Picker chooses a backend for a new connection (tcp) or request (http)
// from those available; client is the client's address, for the pickers
// that keep a client to one backend. A picker keeps whatever state it
// needs itself: Pick is called from every loop at once.
type Picker interface {
	Pick(candidates []*Backend, client netip.Addr) *Backend
}

// Algorithms are the values of --algo.
var Algorithms = []string{"roundrobin", "weighted", "leastconn", "p2c", "sourcehash", "first"}

// NewPicker returns the picker for an --algo name.
func NewPicker(algo string) (Picker, error) {
	switch algo {
	case "roundrobin", "":
		return &RoundRobin{}, nil
	case "weighted":
		return &Weighted{}, nil
	case "leastconn":
		return &LeastConn{}, nil
	case "p2c":
		return PowerOfTwo{}, nil
	case "sourcehash":
		return SourceHash{}, nil
	case "first":
		return First{}, nil
	}
	return nil, fmt.Errorf("unknown algorithm %q (use %s)", algo, strings.Join(Algorithms, ", "))
}

var (
	_ Picker = (*RoundRobin)(nil)
	_ Picker = (*Weighted)(nil)
	_ Picker = (*LeastConn)(nil)
	_ Picker = PowerOfTwo{}
	_ Picker = SourceHash{}
	_ Picker = First{}
)

// RoundRobin hands out backends in turn, starting with the first: the lab's.
type RoundRobin struct{ next atomic.Uint64 }

func (r *RoundRobin) Pick(c []*Backend, _ netip.Addr) *Backend {
	if len(c) == 0 {
		return nil
	}
	return c[(r.next.Add(1)-1)%uint64(len(c))]
}

// Weighted is nginx's smooth weighted round robin: a backend of weight 3
// next to one of weight 1 gets A A B A, not A A A B. Each backend's
// running weight is the picker's own.
type Weighted struct {
	mu      sync.Mutex
	current map[*Backend]int64
}

func (w *Weighted) Pick(c []*Backend, _ netip.Addr) *Backend {
	if len(c) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.current == nil || len(w.current) > 2*len(c)+16 {
		// New, or holding backends long gone from the pool: start afresh
		// from those here (a backend back from down starts at 0, as new).
		w.current = make(map[*Backend]int64, len(c))
	}
	var total, bestCurrent int64
	var best *Backend
	for _, b := range c {
		cur := w.current[b] + b.Weight()
		w.current[b] = cur
		total += b.Weight()
		if best == nil || cur > bestCurrent {
			best, bestCurrent = b, cur
		}
	}
	w.current[best] -= total
	return best
}

// LeastConn picks the backend with the fewest open connections; ties go
// round robin so that an idle pool still spreads.
type LeastConn struct{ next atomic.Uint64 }

func (l *LeastConn) Pick(c []*Backend, _ netip.Addr) *Backend {
	if len(c) == 0 {
		return nil
	}
	start := int((l.next.Add(1) - 1) % uint64(len(c)))
	best := c[start]
	for i := 1; i < len(c); i++ {
		if b := c[(start+i)%len(c)]; b.Active.Load() < best.Active.Load() {
			best = b
		}
	}
	return best
}

// PowerOfTwo draws two backends at random and takes the one with fewer
// open connections: nearly least-connections, without looking at all.
// IntN, when set, replaces the random draw (for tests); it must be safe
// for concurrent use.
type PowerOfTwo struct {
	IntN func(n int) int
}

func (p PowerOfTwo) Pick(c []*Backend, _ netip.Addr) *Backend {
	switch len(c) {
	case 0:
		return nil
	case 1:
		return c[0]
	}
	draw := p.IntN
	if draw == nil {
		draw = rand.IntN
	}
	i := draw(len(c))
	j := draw(len(c) - 1)
	if j >= i {
		j++
	}
	if c[j].Active.Load() < c[i].Active.Load() {
		return c[j]
	}
	return c[i]
}

// SourceHash sends a client to the same backend every time, by rendezvous
// hashing of the client address with each backend's name: when a backend
// leaves, only the clients it had move.
type SourceHash struct{}

func (h SourceHash) Pick(c []*Backend, client netip.Addr) *Backend {
	key := client.Unmap().As16() // an IPv4 client is the same whichever way it came
	return h.pickKey(c, key[:])
}

// pickKey is the rendezvous choice for any key: the client's address, or
// the server name of its TLS hello (hash_by sni).
func (SourceHash) pickKey(c []*Backend, key []byte) *Backend {
	var best *Backend
	var bestScore uint64
	for _, b := range c {
		h := fnv.New64a()
		h.Write(key)
		h.Write([]byte(b.Name))
		if s := mix(h.Sum64()); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
}

// mix spreads FNV's output (SplitMix64's finalizer), whose high bits vary
// little between similar inputs.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// First always picks the first available backend: the rest are spares.
type First struct{}

func (First) Pick(c []*Backend, _ netip.Addr) *Backend {
	if len(c) == 0 {
		return nil
	}
	return c[0]
}
