package balancer

import (
	"errors"
	"net"
	"runtime"
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

// tlsProcs gives the Go scheduler one P more than there are loops, once,
// when TLS runs on goroutines beside them. A loop blocked in epoll_wait
// keeps its P until sysmon takes it back, 20 µs to 10 ms later; with as
// many loops as Ps, a TLS goroutine the netpoller woke waited for that.
// Measured, alternated 3 s pairs, wrk -c100 over TLS: req/s +3 % (tcp
// keep-alive), +13 % (tcp, a new connection each), +17 % (http
// keep-alive), +12 % (http, new connections); docs/PERFORMANCE.md.
var tlsProcs sync.Once

func raiseProcsForTLS() {
	tlsProcs.Do(func() {
		if runtime.GOMAXPROCS(0) == loopCount {
			runtime.GOMAXPROCS(loopCount + 1)
		}
	})
}

// startLoops runs the mode's handlers on the balancer's listener.
func startLoops(b *Balancer, newMode func(*Balancer, *evloop.Loop) evloop.Handler) (*evloop.Group, error) {
	if cfg := b.Config(); len(cfg.TLS) > 0 || cfg.BackendTLS.Enabled {
		raiseProcsForTLS()
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
