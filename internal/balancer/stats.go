package balancer

import (
	"sync"
	"sync/atomic"
	"time"
)

// The figures a HAProxy user reads first on its stats page: sessions now
// and at most, session and request rates now and at most, response
// classes, for the frontend (what clients see) and for every backend.

// sessions counts what is open now and the most ever open at once.
type sessions struct {
	cur, max atomic.Int64
}

func (s *sessions) open() { raiseMax(&s.max, s.cur.Add(1)) }

// raiseMax makes m at least n.
func raiseMax(m *atomic.Int64, n int64) {
	for old := m.Load(); n > old && !m.CompareAndSwap(old, n); old = m.Load() {
	}
}

func (s *sessions) close() { s.cur.Add(-1) }

// codes counts responses by class: index 1 to 5 for 1xx to 5xx, 0 for
// anything else.
type codes [6]atomic.Int64

func (c *codes) count(status int) {
	if k := status / 100; k >= 1 && k <= 5 {
		c[k].Add(1)
	} else {
		c[0].Add(1)
	}
}

// Classes are the counts as 1xx, 2xx, 3xx, 4xx, 5xx and other.
func (c *codes) Classes() [6]int64 {
	return [6]int64{c[1].Load(), c[2].Load(), c[3].Load(), c[4].Load(), c[5].Load(), c[0].Load()}
}

// frontend is what the balancer's clients see.
type frontend struct {
	sessions
	total    atomic.Int64 // client connections taken
	requests atomic.Int64 // http: requests answered, by a backend or the balancer; tcp: connections
	codes                 // http: the answers clients got, the balancer's own included
	queueMax atomic.Int64
}

// rate is one counter's rate over the last whole second, and its most.
type rate struct {
	last     int64 // the counter at the last tick
	cur, max int64
}

func (r *rate) tick(now int64) {
	r.cur = now - r.last
	r.last = now
	r.max = max(r.max, r.cur)
}

// rates samples the counters every second, for "now" and "most" per
// second, as HAProxy's session and request rates.
type rates struct {
	mu       sync.Mutex
	sessions rate
	requests rate
	backends map[*Backend]*[2]rate // sessions, requests
	stop     chan struct{}
	done     chan struct{}
}

func startRates(b *Balancer) *rates {
	r := &rates{backends: map[*Backend]*[2]rate{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.sample(b)
			}
		}
	}()
	return r
}

func (r *rates) sample(b *Balancer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions.tick(b.fe.total.Load())
	r.requests.tick(b.fe.requests.Load())
	raiseMax(&b.fe.queueMax, int64(b.Queued()))
	seen := map[*Backend]bool{}
	for _, be := range b.pool.All() {
		br := r.backends[be]
		if br == nil {
			// First seen now: its counts so far are not this second's.
			br = &[2]rate{{last: be.Total.Load()}, {last: be.Requests.Load()}}
			r.backends[be] = br
		}
		br[0].tick(be.Total.Load())
		br[1].tick(be.Requests.Load())
		seen[be] = true
	}
	for be := range r.backends {
		if !seen[be] {
			delete(r.backends, be) // left the pool
		}
	}
}

// Rate is a per-second rate now (over the last second) and at most.
type Rate struct {
	Cur int64 `json:"cur"`
	Max int64 `json:"max"`
}

// frontendRates are the frontend's session and request rates.
func (r *rates) frontendRates() (sessions, requests Rate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Rate{r.sessions.cur, r.sessions.max}, Rate{r.requests.cur, r.requests.max}
}

// backendRates are a backend's session and request rates.
func (r *rates) backendRates(be *Backend) (sessions, requests Rate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if br := r.backends[be]; br != nil {
		return Rate{br[0].cur, br[0].max}, Rate{br[1].cur, br[1].max}
	}
	return Rate{}, Rate{}
}

func (r *rates) close() {
	close(r.stop)
	<-r.done
}
