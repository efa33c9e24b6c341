// Package server runs a handler behind one of four concurrency models —
// an event loop, a goroutine (or OS thread) per connection, a worker pool,
// or preforked processes — that put the same bytes on the wire. A model only
// moves bytes between sockets and the httpx/handler pipeline in session.go.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"loadlab"
	"loadlab/internal/budget"
	"loadlab/internal/httpx"
)

// Handler answers one request; site.Site is the lab's.
type Handler interface {
	Serve(req *httpx.Request, resp *httpx.Response)
}

// Models are the values of Config.Model.
var Models = []string{"async", "thread", "pool", "prefork"}

// Config describes one server. The zero values of the durations and limits
// mean the defaults below.
type Config struct {
	Model  string // async, thread, pool or prefork
	Listen string // host:port; port 0 picks a free one
	Name   string // when set, responses carry X-Served-By: Name

	Loops     int  // async: event loops; 0 means one per core
	OSThreads bool // thread: pin each connection's goroutine to an OS thread
	Workers   int  // pool: requests handled at once
	Queue     int  // pool: requests waiting for a worker
	Procs     int  // prefork: child processes
	// Child starts one prefork child listening on addr with SO_REUSEPORT.
	// Its stdin is a pipe from the parent, closed during a stop once every
	// child has closed its listener (see ListenerClosed).
	Child func(addr string) *exec.Cmd
	// ListenerClosed, when set, runs during a stop once the listener is
	// closed and before answers say "Connection: close"; serving goes on
	// meanwhile. A prefork child waits in it for its siblings: a client
	// told to reconnect before every listener on the port is closed lands
	// in a sibling's backlog, and is reset when that one closes.
	ListenerClosed func()

	HeaderTimeout time.Duration // to receive a whole request head
	IdleTimeout   time.Duration // between requests on a keep-alive connection, and between body reads
	WriteTimeout  time.Duration // to write one response
	MaxConns      int           // open connections; more are answered 503; 0 means no limit
	Limits        httpx.Limits
	ReusePort     bool // bind with SO_REUSEPORT (prefork children)
	// AcceptProxy expects a PROXY protocol header (v1 or v2) first on every
	// connection and logs the client it names; without one the connection
	// is closed.
	AcceptProxy bool
	// Listener, when set, is used instead of binding Listen (thread and
	// pool models): the balancer's http mode hands over its own.
	Listener net.Listener
	// TLS, when set, makes every connection TLS (tlsx.Store.ServerConfig),
	// served on a goroutine whatever the model: see tls.go.
	TLS *tls.Config

	Log *slog.Logger // access log, a line per request; nil for none
}

// Defaults, as nginx users would expect them.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
	DefaultWriteTimeout  = 30 * time.Second
)

// MaxPinnedConns bounds the open connections of the thread model with
// OSThreads, each holding an OS thread: Go ends a program that passes
// 10,000 threads (debug.SetMaxThreads) with a fatal error that nothing
// recovers, so 10,000 clients would take the server down. Past the bound
// a connection is answered 503, as over MaxConns, where a C server whose
// pthread_create fails refuses it.
const MaxPinnedConns = 9000

var maxPinnedConns = MaxPinnedConns // lowered by tests

func (c *Config) fillDefaults() {
	if c.OSThreads && (c.MaxConns <= 0 || c.MaxConns > maxPinnedConns) {
		c.MaxConns = maxPinnedConns
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = DefaultHeaderTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Limits == (httpx.Limits{}) {
		c.Limits = httpx.DefaultLimits()
	}
	if c.Workers <= 0 {
		c.Workers = 256
	}
	if c.Queue <= 0 {
		c.Queue = 1024
	}
	if c.Procs <= 0 {
		c.Procs = 2
	}
}

// Server is a running server of any model.
type Server interface {
	// Addr is the address actually bound.
	Addr() net.Addr
	// Shutdown stops accepting, lets requests in flight finish and closes
	// idle connections; when ctx ends it closes whatever is left.
	Shutdown(ctx context.Context) error
	// Done is closed when the server has stopped, on its own or by Shutdown.
	Done() <-chan struct{}
}

// Start binds cfg.Listen and serves h with cfg.Model. It returns once the
// server accepts connections.
func Start(cfg Config, h Handler) (Server, error) {
	cfg.fillDefaults()
	raiseOpenFileLimit()
	core := &core{cfg: cfg, handler: h, head: httpx.HeadOptions{Server: loadlab.ServerHeader, ServedBy: cfg.Name}}
	core.inputs = budget.ForRequests(int64(core.maxInput()))
	switch cfg.Model {
	case "async":
		return startAsync(core)
	case "thread", "pool":
		return startBlocking(core)
	case "prefork":
		return startPrefork(core)
	}
	return nil, fmt.Errorf("unknown model %q (use %s)", cfg.Model, strings.Join(Models, ", "))
}

// core is what every connection of one server shares.
type core struct {
	cfg      Config
	handler  Handler
	head     httpx.HeadOptions
	sessions sync.Pool // *session
	panics   atomic.Int64
	// inputs bounds the bytes of unfinished requests all connections hold
	// (budget.ForRequests). 300 clients each sending a 1 MiB body and
	// holding back its last byte took an async server to 575 MB and a
	// thread one to 981 MB; past the budget a request is answered 503.
	inputs *budget.Pool
}

// errInputBudget answers a request that would take the server past its
// budget for unfinished requests.
var errInputBudget = &httpx.Error{Status: 503, Reason: "too many large requests coming in at once; try again"}

// listenError turns a bind failure into one line that says what to do.
func listenError(addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("listen %s: address already in use (another server is on it; pick another --listen port)", addr)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("listen %s: permission denied (ports below 1024 need root; pick a higher port)", addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("listen %s: address not available on this machine (use 127.0.0.1 or leave the host empty)", addr)
	}
	return fmt.Errorf("listen %s: %w", addr, err)
}

// raiseOpenFileLimit lifts the soft RLIMIT_NOFILE to the hard limit: every
// connection is a file descriptor, and 1024 is too few for a load test.
func raiseOpenFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
