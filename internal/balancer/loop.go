package balancer

import (
	"errors"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"loadlab/internal/evloop"

	"golang.org/x/sys/unix"
)

// Both modes run as handlers on evloop's event loops, one per core, as
// HAProxy does: the first loop accepts and gives each connection to the
// least loaded loop, which connects to a backend without blocking and
// moves bytes with one read and one write per message. Goroutines parked
// in blocking reads cost half as much CPU again per request (measured: 35
// µs against HAProxy's 23 µs, tcp keep-alive; docs/PERFORMANCE.md): Go's
// edge-triggered poller has to read until EAGAIN, and every message woke
// a goroutine. tcp.go and http.go are what a loop does with a connection;
// this file is what the two share.

// loopCount is how many event loops a balancer runs: one per P the
// process started with, whatever the P count is raised to later.
var loopCount = runtime.GOMAXPROCS(0)

// tuneForTLS readies the Go runtime, once, for TLS handshakes on
// goroutines beside the loops:
//   - one P more than there are loops. A loop blocked in epoll_wait keeps
//     its P until sysmon takes it back, 20 µs to 10 ms later; with as many
//     loops as Ps, a handshake goroutine the netpoller woke waited for
//     that. Measured, alternated 3 s pairs, wrk -c100 over TLS, when TLS
//     still bridged every message on goroutines: req/s +3 % (tcp
//     keep-alive), +13 % (tcp, a new connection each), +17 % (http
//     keep-alive), +12 % (http, new connections);
//   - the collector at 400 % instead of 100 % (unless GOGC is set): a
//     crypto/tls handshake leaves tens of kilobytes of garbage, and
//     collecting it was a tenth of the CPU of a new connection. Measured,
//     4 alternated 5 s pairs, http mode, a new connection per request:
//     391–465 µs of CPU per request against 439–535, req/s +4..16 %.
//     The heap the balancer keeps is its connections' buffers, a few
//     megabytes: five times that is still small.
//
// docs/PERFORMANCE.md has both.
var tlsTuned sync.Once

func tuneForTLS() {
	tlsTuned.Do(func() {
		if runtime.GOMAXPROCS(0) == loopCount {
			runtime.GOMAXPROCS(loopCount + 1)
		}
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(400)
		}
	})
}

// startLoops runs the mode's handlers on the balancer's listener.
func startLoops(b *Balancer, newMode func(*Balancer, *evloop.Loop) evloop.Handler) (*evloop.Group, error) {
	if cfg := b.Config(); len(cfg.TLS) > 0 || cfg.BackendTLS.Enabled {
		tuneForTLS()
	}
	loops := evloop.Config{
		Loops:        loopCount,
		Slots:        b.slots,
		QueueTimeout: func() time.Duration { return b.Config().QueueTimeout },
		SweepEvery:   sweepEvery,
		Panicked:     b.panicked,
	}
	return evloop.Start(b.lnfd, loops, func(l *evloop.Loop) evloop.Handler { return newMode(b, l) })
}

// sweepEvery is how often timeouts are checked: connect and idle
// timeouts fire within this much of their time.
const sweepEvery = 100 * time.Millisecond

// dial starts a non-blocking connect to be, at the address the resolver
// last found for it: nothing on a loop waits for DNS. Over TLS, the
// connect and handshake run on a goroutine (dialTLS); either way the
// balancer's connectWant and connectResult say when and how it ended.
func dial(l *evloop.Loop, b *Balancer, be *Backend) (int, error) {
	sa := be.sockaddr.Load()
	if sa == nil {
		return -1, &net.OpError{Op: "dial", Net: "tcp", Err: errUnresolved}
	}
	if t := b.backendTLS.Load(); t != nil {
		return dialTLS(b, be, sa, t)
	}
	return l.Connect(sa)
}

// localFailure reports whether a connect failed for want of something of
// this machine's — descriptors, memory, source ports — not because of
// the backend: such a failure is not held against the backend, and no
// other backend would fare better.
func localFailure(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "socket" {
		return true
	}
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) ||
		errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EADDRNOTAVAIL)
}

var errUnresolved = errors.New("host name not resolved yet")

var errConnectTimeout = &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// suspectFor is how long a backend whose connect just failed is passed
// over when no health check clears it sooner.
const suspectFor = 2 * time.Second

// shortErr is an error as the access log and the stats page show it.
func shortErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}
