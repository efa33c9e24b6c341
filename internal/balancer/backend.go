// Package balancer is loadlab's load balancer: a pool of backends with
// health checks, several ways to choose one, a TCP (L4) and an HTTP (L7)
// proxy, and an admin listener with a stats page, a JSON API and
// Prometheus metrics.
package balancer

import (
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"loadlab/internal/rawsys"
	"loadlab/internal/tlsx"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// State is a backend's standing in the pool.
type State int32

const (
	Ready    State = iota // gets new traffic
	Drain                 // finishes what it has, gets nothing new; still checked
	Down                  // failed its health checks
	Maint                 // maintenance: no new traffic and no checks, as HAProxy's MAINT
	Checking              // added, or back from maintenance: serves once rise checks pass
)

func (s State) String() string {
	switch s {
	case Ready:
		return "ready"
	case Drain:
		return "drain"
	case Maint:
		return "maint"
	case Checking:
		return "checking"
	}
	return "down"
}

// ParseState reads a state an operator may set: ready, drain or maint.
func ParseState(s string) (State, bool) {
	switch s {
	case "ready":
		return Ready, true
	case "drain":
		return Drain, true
	case "maint":
		return Maint, true
	}
	return 0, false
}

// Backend is one server behind the balancer and everything known of it.
// Counters are atomics: every connection touches them.
type Backend struct {
	Name string // as given, e.g. 127.0.0.1:9002 or srv-name
	// cookie is the value of the persistence cookie that names it: a
	// hash of Name, the same in every balancer given the same backends,
	// and telling clients nothing of the address.
	cookie string
	addr   atomic.Pointer[string]
	// sockaddr is where the loops connect: set at once for an IP address,
	// by the resolver for a host name (nil until it first answers; a
	// failed look-up keeps the last good answer).
	sockaddr atomic.Pointer[rawsys.Sockaddr]
	origin   string      // the srv:// entry it came from; "" for a plain one
	gone     atomic.Bool // left the pool: connections to it are not kept idle
	// cert is the certificate it showed last, over TLS.
	cert atomic.Pointer[tlsx.CertInfo]

	weight atomic.Int64
	// backup: a spare, given traffic only while no other backend is
	// available (HAProxy's backup server).
	backup atomic.Bool
	state  atomic.Int32
	// stateMu guards the time kept of the state's changes.
	stateMu        sync.Mutex
	changed        time.Time
	upFor, downFor time.Duration
	// suspectUntil keeps a backend whose connect just failed out of the
	// choice until then, or until a health check passes.
	suspectUntil atomic.Int64

	Active    atomic.Int64 // connections (tcp) or requests (http) open now, or connecting
	maxActive atomic.Int64 // the most ever open at once
	// maxConn bounds Active, as HAProxy's server maxconn: past it, new
	// traffic goes to another backend or waits in its loop's queue for a
	// slot (slots.go). 0 for no bound.
	maxConn   atomic.Int64
	codes     codes        // http mode: the backend's answers by class
	Total     atomic.Int64 // connections ever
	Requests  atomic.Int64 // requests (http mode) or connections (tcp mode) served
	BytesIn   atomic.Int64 // from clients to the backend
	BytesOut  atomic.Int64 // from the backend to clients
	Errors    atomic.Int64 // failed connects and broken exchanges
	lastCheck atomic.Pointer[CheckResult]
	checks    [checkHistory]CheckResult // the last ones, a ring; under stateMu
	nChecks   int
	// checksFailed counts failed checks while the backend was up, and
	// checksDown its falls to down: HAProxy's chkfail and chkdown.
	checksFailed, checksDown atomic.Int64

	// rise and fall streaks belong to the health checker, which runs one
	// check of a backend at a time (checking says one is running, checkDue
	// that the next fell due meanwhile).
	okStreak, failStreak int
	checking, checkDue   atomic.Bool
	// freshStreak asks the checker to count its streaks anew: the
	// backend came back from maintenance, unchecked meanwhile.
	freshStreak atomic.Bool

	latMu   sync.Mutex
	latency *hdrhistogram.Histogram // microseconds: connect (tcp) or response head (http)
}

// CheckResult is what a health check found.
type CheckResult struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Status is HAProxy's check_status: L4OK, L6OK or L7OK when the
	// check passed at the connect, TLS or HTTP; L4CON, L4TOUT, L6RSP,
	// L6TOUT, L7RSP, L7TOUT or L7STS for how it failed.
	Status     string  `json:"status"`
	Code       int     `json:"code,omitempty"` // the HTTP status an http check got
	DurationMS float64 `json:"duration_ms"`
	Detail     string  `json:"detail"`
}

// NewBackend makes a ready backend for addr with a weight of at least 1.
func NewBackend(addr string, weight int) *Backend {
	b := &Backend{Name: addr, cookie: cookieValue(addr), latency: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 2)}
	b.addr.Store(&addr)
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			b.resolved(ip, port)
		}
	}
	b.weight.Store(int64(max(weight, 1)))
	b.changed = time.Now()
	return b
}

// newBackendFor makes a backend at addr with what c says of it: its
// weight, whether it is a backup, its maxconn.
func newBackendFor(addr string, c BackendConfig) *Backend {
	b := NewBackend(addr, c.Weight)
	b.backup.Store(c.Backup)
	b.maxConn.Store(int64(c.MaxConn))
	return b
}

// resolved records the address b's name stands for now.
func (b *Backend) resolved(ip net.IP, port string) {
	n, err := strconv.Atoi(port)
	if err != nil {
		return
	}
	addr := net.JoinHostPort(ip.String(), port)
	b.addr.Store(&addr)
	b.sockaddr.Store(rawsys.NewSockaddr(ip, n))
}

// Addr is where to connect now; re-resolution may change it.
func (b *Backend) Addr() string { return *b.addr.Load() }

// State reports the backend's state.
func (b *Backend) State() State { return State(b.state.Load()) }

// SetState changes the backend's state, keeping when it changed and how
// long it has been up (ready or drain) and down (any other) in all.
func (b *Backend) SetState(s State) {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	old := b.State()
	if old == s {
		return
	}
	now := time.Now()
	b.accountLocked(old, now)
	b.state.Store(int32(s))
}

// changeState moves the backend from one state to another, unless an
// operator or another check changed it meanwhile.
func (b *Backend) changeState(from, to State) bool {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if b.State() != from {
		return false
	}
	b.accountLocked(from, time.Now())
	b.state.Store(int32(to))
	if to == Checking {
		b.freshStreak.Store(true)
	}
	return true
}

// accountLocked adds the time since the last change to up or down.
func (b *Backend) accountLocked(old State, now time.Time) {
	if !b.changed.IsZero() {
		if old == Ready || old == Drain {
			b.upFor += now.Sub(b.changed)
		} else {
			b.downFor += now.Sub(b.changed)
		}
	}
	b.changed = now
}

// Uptime is how long the backend has been up (ready or drain) and down
// (down, checking or in maintenance) since it joined the pool, and when
// its state last changed.
func (b *Backend) Uptime() (up, down time.Duration, changed time.Time) {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	up, down = b.upFor, b.downFor
	if b.State() == Ready || b.State() == Drain {
		up += time.Since(b.changed)
	} else {
		down += time.Since(b.changed)
	}
	return up, down, b.changed
}

// Weight is the backend's share in weighted round robin.
func (b *Backend) Weight() int64 { return b.weight.Load() }

// Backup reports whether b is a spare: see Pool.candidates.
func (b *Backend) Backup() bool { return b.backup.Load() }

// available reports whether new traffic may go to b now.
func (b *Backend) available(now time.Time) bool {
	return b.State() == Ready && !b.suspected(now)
}

// suspected reports whether a failed connect keeps b out of the choice
// at now.
func (b *Backend) suspected(now time.Time) bool { return now.UnixNano() < b.suspectUntil.Load() }

// suspect counts a failed connect and takes b out of the choice for a
// while.
func (b *Backend) suspect(d time.Duration) {
	b.Errors.Add(1)
	b.suspectUntil.Store(time.Now().Add(d).UnixNano())
}

func (b *Backend) observe(d time.Duration) {
	b.latMu.Lock()
	b.latency.RecordValue(max(d.Microseconds(), 1))
	b.latMu.Unlock()
}

// Latency returns p50 and p99 of what observe recorded, in milliseconds.
func (b *Backend) Latency() (p50, p99 float64) {
	b.latMu.Lock()
	defer b.latMu.Unlock()
	return float64(b.latency.ValueAtQuantile(50)) / 1000, float64(b.latency.ValueAtQuantile(99)) / 1000
}

// latencyBuckets are the upper bounds, in seconds, of the latency
// histogram that /metrics exports: from 100 µs (a loopback connect) to
// 10 s.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// LatencyHistogram returns what observe recorded as Prometheus wants a
// histogram: the count, the sum in seconds, and the count at or below
// each of latencyBuckets.
func (b *Backend) LatencyHistogram() (count uint64, sum float64, buckets map[float64]uint64) {
	b.latMu.Lock()
	bars := b.latency.Distribution()
	count, sum = uint64(b.latency.TotalCount()), b.latency.Mean()*float64(b.latency.TotalCount())/1e6
	b.latMu.Unlock()
	buckets = make(map[float64]uint64, len(latencyBuckets))
	var below uint64
	i := 0
	for _, le := range latencyBuckets {
		for ; i < len(bars) && float64(bars[i].To)/1e6 <= le; i++ {
			below += uint64(bars[i].Count)
		}
		buckets[le] = below
	}
	return count, sum, buckets
}

// LastCheck is the last health check's result, or nil before the first.
func (b *Backend) LastCheck() *CheckResult { return b.lastCheck.Load() }

// ParseBackend reads --backend's form: "host:port" with options after
// commas, "weight=N", "maxconn=N" and "backup" (HAProxy's server
// keywords), or "srv://_service._proto.name" for a DNS SRV record.
func ParseBackend(spec string) (BackendConfig, error) {
	parts := strings.Split(spec, ",")
	c := BackendConfig{Addr: strings.TrimSpace(parts[0]), Weight: 1}
	for _, p := range parts[1:] {
		k, v, hasValue := strings.Cut(strings.TrimSpace(p), "=")
		switch {
		case k == "weight":
			w, err := strconv.Atoi(v)
			if err != nil || w < 1 || w > 1000 {
				return BackendConfig{}, fmt.Errorf("backend %q: weight must be a whole number from 1 to 1000", spec)
			}
			c.Weight = w
		case k == "maxconn":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > MaxConnLimit {
				return BackendConfig{}, fmt.Errorf("backend %q: maxconn must be a whole number from 0 (no limit) to %d", spec, MaxConnLimit)
			}
			c.MaxConn = n
		case k == "backup" && !hasValue:
			c.Backup = true
		default:
			return BackendConfig{}, fmt.Errorf("backend %q: unknown option %q (give weight=N, maxconn=N or backup)", spec, p)
		}
	}
	if err := checkAddr(c.Addr); err != nil {
		return BackendConfig{}, err
	}
	return c, nil
}

// checkAddr says what is wrong with a backend's address, if anything.
func checkAddr(addr string) error {
	if strings.HasPrefix(addr, "srv://") {
		if len(addr) == len("srv://") {
			return fmt.Errorf("backend %q: srv:// needs a name", addr)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("backend %.80q is not host:port (for example 127.0.0.1:9002)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("backend %.80q: port must be a number from 1 to 65535", addr)
	}
	if net.ParseIP(host) == nil && !isHostName(host) {
		return fmt.Errorf("backend %.80q: %.80q is neither an IP address nor a host name", addr, host)
	}
	return nil
}

// isHostName reports whether s is a DNS name as RFC 1123 allows: labels
// of letters, digits and hyphens, up to 63 bytes each and 253 in all.
func isHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Pool is the set of backends. Readers take a snapshot without locking;
// changes replace the whole slice. What the admin API adds and removes is
// remembered, so that a reload or a DNS refresh, which rebuild the pool
// from the configuration, keep those changes.
type Pool struct {
	mu         sync.Mutex
	backends   atomic.Pointer[[]*Backend]
	apiAdded   []*Backend
	apiRemoved map[string]bool
}

// NewPool makes a pool of the given backends.
func NewPool(bs []*Backend) *Pool {
	p := &Pool{apiRemoved: map[string]bool{}}
	p.backends.Store(&bs)
	return p
}

// All is the current backends, in their configured order.
func (p *Pool) All() []*Backend { return *p.backends.Load() }

// Find returns the backend with the given name, or nil.
func (p *Pool) Find(name string) *Backend {
	for _, b := range p.All() {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// Len is the number of backends.
func (p *Pool) Len() int { return len(p.All()) }

// Add appends b, as the admin API asks, unless a backend of that name is
// there; it reports whether it did.
func (p *Pool) Add(b *Backend) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Find(b.Name) != nil {
		return false
	}
	delete(p.apiRemoved, b.Name)
	p.apiAdded = append(p.apiAdded, b)
	next := append(append([]*Backend(nil), p.All()...), b)
	p.backends.Store(&next)
	return true
}

// Remove takes the named backend out, as the admin API asks, and returns
// it (nil when there is none); connections it has go on.
func (p *Pool) Remove(name string) *Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	var next []*Backend
	var gone *Backend
	for _, b := range p.All() {
		if b.Name != name {
			next = append(next, b)
		} else {
			gone = b
		}
	}
	if gone == nil {
		return nil
	}
	p.apiRemoved[name] = true
	p.apiAdded = slices.DeleteFunc(p.apiAdded, func(b *Backend) bool { return b.Name == name })
	p.backends.Store(&next)
	return gone
}

// Replace sets the pool to bs, the configuration's plain backends, merged
// with what the admin API changed since, and with the backends of the
// srv:// entries in srvs as DNS last named them; it keeps the existing
// Backend (and its counters and health) for every name that stays, and
// returns those that left.
func (p *Pool) Replace(bs []*Backend, srvs []string) []*Backend {
	return p.replaceWhere(func(b *Backend) bool { return !slices.Contains(srvs, b.origin) }, bs)
}

// ReplaceFrom replaces only the backends that came from the configuration
// entry origin (an srv:// name) with bs, and returns those that left.
func (p *Pool) ReplaceFrom(origin string, bs []*Backend) []*Backend {
	for _, b := range bs {
		b.origin = origin
	}
	return p.replaceWhere(func(b *Backend) bool { return b.origin == origin }, bs)
}

// replaceWhere swaps the backends for which mine is true for bs, keeping
// the others in place and what the API added last.
func (p *Pool) replaceWhere(mine func(*Backend) bool, bs []*Backend) []*Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	var next, gone []*Backend
	old := map[string]*Backend{}
	for _, b := range p.All() {
		old[b.Name] = b
	}
	kept := map[*Backend]bool{}
	keep := func(b *Backend) {
		next = append(next, b)
		kept[b] = true
	}
	has := func(name string) bool { return kept[old[name]] }
	for _, b := range p.All() {
		if !mine(b) && !slices.Contains(p.apiAdded, b) {
			keep(b)
		}
	}
	for _, b := range bs {
		if p.apiRemoved[b.Name] || has(b.Name) || kept[b] {
			continue
		}
		if o := old[b.Name]; o != nil {
			o.weight.Store(b.Weight())
			o.backup.Store(b.Backup())
			o.maxConn.Store(b.maxConn.Load())
			b = o
		}
		keep(b)
	}
	for _, b := range p.apiAdded {
		if !kept[b] {
			keep(b)
		}
	}
	for _, b := range p.All() {
		if !kept[b] {
			gone = append(gone, b)
		}
	}
	p.backends.Store(&next)
	return gone
}

// candidates lists the backends new traffic may go to, leaving out those
// in skip (already tried for this connection). As HAProxy's backup
// servers, the backups are in the list only while no other backend is
// available, and then only the first of them in the configured order,
// unless allBackups (HAProxy's option allbackups) lets them share.
func (p *Pool) candidates(skip []*Backend, allBackups bool) []*Backend {
	now := time.Now()
	all := p.All()
	out := make([]*Backend, 0, len(all))
	var backups []*Backend
	for _, b := range all {
		if !b.available(now) || contains(skip, b) {
			continue
		}
		if b.Backup() {
			backups = append(backups, b)
		} else {
			out = append(out, b)
		}
	}
	switch {
	case len(out) > 0 || len(backups) == 0:
		return out
	case allBackups:
		return backups
	}
	return backups[:1]
}

// stuck is the backend a persistence cookie's value names, if it may take
// the client's request now: ready, or draining, since a drain (as
// HAProxy's) turns away new clients but not those already kept to it;
// and not among skip. nil sends the request to the algorithm, which
// then sets the cookie anew.
func (p *Pool) stuck(value string, skip []*Backend) *Backend {
	if value == "" {
		return nil
	}
	now := time.Now()
	for _, b := range p.All() {
		if b.cookie != value {
			continue
		}
		if s := b.State(); (s == Ready || s == Drain) && !b.suspected(now) && !contains(skip, b) {
			return b
		}
		return nil
	}
	return nil
}

// cookieValue is the persistence cookie's value for a backend's name.
func cookieValue(name string) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return strconv.FormatUint(mix(h.Sum64()), 16)
}

func contains(bs []*Backend, b *Backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

// take claims a slot on b for a connection (tcp) or request (http),
// unless b is at its maxconn; Balancer.release gives it back.
func (b *Backend) take() bool {
	limit := b.maxConn.Load()
	if limit == 0 {
		raiseMax(&b.maxActive, b.Active.Add(1))
		return true
	}
	for n := b.Active.Load(); n < limit; n = b.Active.Load() {
		if b.Active.CompareAndSwap(n, n+1) {
			raiseMax(&b.maxActive, n+1)
			return true
		}
	}
	return false
}

// full reports whether b is at its maxconn now.
func (b *Backend) full() bool {
	limit := b.maxConn.Load()
	return limit > 0 && b.Active.Load() >= limit
}

// MaxConn is b's bound on what it serves at once; 0 for none.
func (b *Backend) MaxConn() int64 { return b.maxConn.Load() }

// checkHistory is how many check results a backend keeps for the stats
// page.
const checkHistory = 5

// noteCheck keeps a check's result.
func (b *Backend) noteCheck(res *CheckResult) {
	b.lastCheck.Store(res)
	b.stateMu.Lock()
	b.checks[b.nChecks%checkHistory] = *res
	b.nChecks++
	b.stateMu.Unlock()
}

// Checks are the last checks' results, the newest first.
func (b *Backend) Checks() []CheckResult {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	var out []CheckResult
	for i := 1; i <= min(b.nChecks, checkHistory); i++ {
		out = append(out, b.checks[(b.nChecks-i)%checkHistory])
	}
	return out
}
