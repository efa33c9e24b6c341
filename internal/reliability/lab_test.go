package reliability

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"loadlab/internal/balancer"
	"loadlab/internal/bench"
	"loadlab/internal/testutil"
)

// lab is the seed's system on a testbed: four `loadlab serve` backends,
// each on a host of its own, behind `loadlab balance` on host lb, and a
// client host cli that runs `loadlab bench`.
type lab struct {
	tb       *testbed
	lb, cli  *host
	backends []*host
	servers  []*proc
	balancer *proc
	url      string // the balancer's, as the client reaches it
	admin    string // the balancer's admin listener, on lb's loopback
}

const (
	backendPort  = 8080
	balancerPort = 8000
	adminAddr    = "127.0.0.1:9000"
)

// Health checks fast enough for a test to watch them work: a backend is
// out after fall failed checks, 200 ms apart (+ the check's own timeout),
// and back after rise good ones.
var fastChecks = []string{
	"--check-interval", "200ms", "--check-timeout", "200ms", "--fall", strconv.Itoa(fall), "--rise", strconv.Itoa(rise),
	"--connect-timeout", "300ms",
}

const fall, rise = 2, 2

// newLab starts the four backends and a balancer with args (its listen,
// backend and admin flags are added here).
func newLab(t *testing.T, balanceArgs ...string) *lab {
	t.Helper()
	tb := newTestbed(t, "lb", "b1", "b2", "b3", "b4", "cli")
	l := &lab{tb: tb, lb: tb.host("lb"), cli: tb.host("cli"), admin: adminAddr}
	for i := 1; i <= 4; i++ {
		l.backends = append(l.backends, tb.host(fmt.Sprintf("b%d", i)))
		l.servers = append(l.servers, nil)
		l.startBackend(t, i-1)
	}
	l.balancer = l.startBalancer(t, balanceArgs...)
	l.url = "http://" + l.lb.addr(balancerPort) + "/"
	return l
}

func (l *lab) startBalancer(t *testing.T, args ...string) *proc {
	t.Helper()
	full := []string{"balance", "--listen", l.lb.addr(balancerPort), "--admin", l.admin, "--quiet"}
	for _, a := range l.backendAddrs() {
		full = append(full, "--backend", a)
	}
	return l.lb.start(t, append(full, args...)...)
}

// startBackend (re)starts backend i: the lab's event-loop server.
func (l *lab) startBackend(t *testing.T, i int) {
	t.Helper()
	l.servers[i] = l.backends[i].start(t, "serve", "--model", "async", "--listen", l.backends[i].addr(backendPort),
		"--quiet", "--name", l.backends[i].name, "--grace", "5s")
}

func (l *lab) backendAddrs() []string {
	var addrs []string
	for _, h := range l.backends {
		addrs = append(addrs, h.addr(backendPort))
	}
	return addrs
}

// served is what the balancer handed a backend: requests in http mode,
// connections in tcp mode.
func served(b balancer.BackendStatus, httpMode bool) int64 {
	if httpMode {
		return b.Requests
	}
	return b.Total
}

// served is what the balancer has handed all its backends.
func (l *lab) served(t *testing.T, httpMode bool) int64 {
	t.Helper()
	var n int64
	for _, b := range l.lb.backends(t, l.admin) {
		n += served(b, httpMode)
	}
	return n
}

// waitServed waits until the balancer has handed out n connections or
// requests, so a fault lands in the middle of a run, not before it.
func (l *lab) waitServed(t *testing.T, httpMode bool, n int64) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("the balancer serving %d", n), func() bool { return l.served(t, httpMode) >= n })
}

// failureWindow is where in a run its failures and non-2xx responses
// ended, as offsets from the run's start; ok is false if there were none.
func failureWindow(s *bench.Summary) (first, last time.Duration, ok bool) {
	for _, sl := range s.Timeline {
		if sl.Failed+sl.Non2xx == 0 {
			continue
		}
		at := time.Duration(sl.AtMs) * time.Millisecond
		if !ok {
			first, ok = at, true
		}
		last = at + 100*time.Millisecond
	}
	return first, last, ok
}

// row is one scenario's line for docs/RELIABILITY.md, logged so that a
// verbose run shows the figures the document quotes.
func row(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("RELIABILITY %s: %s", t.Name(), fmt.Sprintf(format, args...))
}

func modeArgs(mode string) []string {
	args := []string{"--mode", mode}
	return append(args, fastChecks...)
}

// benchArgs are the client's flags for a mode: keep-alive for http mode,
// a new connection per request for tcp mode (the lab's ab runs).
func benchArgs(mode string, args ...string) []string {
	if mode == "http" {
		args = append(args, "-k")
	}
	return args
}

func summaryLine(s *bench.Summary) string {
	return fmt.Sprintf("complete %d, failed %d (connect %d, receive %d, length %d, exceptions %d), non-2xx %d, %.0f req/s, p99 %.1f ms",
		s.Complete, s.Failed, s.Failures.Connect, s.Failures.Receive, s.Failures.Length, s.Failures.Exceptions,
		s.Non2xx, s.RequestsPerSecond, s.Total.P99)
}
