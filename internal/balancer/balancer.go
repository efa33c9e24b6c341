package balancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/budget"
	"loadlab/internal/evloop"
	"loadlab/internal/httpx"
	"loadlab/internal/tlsx"
)

// Config is one balancer: what it listens on, where it sends traffic and
// how. Zero durations and limits mean the defaults below.
type Config struct {
	Listen   string          `yaml:"listen"`
	Mode     string          `yaml:"mode"` // tcp or http
	Algo     string          `yaml:"algo"`
	Backends []BackendConfig `yaml:"backends"`
	Check    CheckConfig     `yaml:"check"`

	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	ClientIdle     time.Duration `yaml:"client_idle"`
	ServerIdle     time.Duration `yaml:"server_idle"`
	HeadTimeout    time.Duration `yaml:"head_timeout"`  // http mode: to receive a request head
	MaxBody        int64         `yaml:"max_body"`      // http mode: largest request body, held whole before it goes on; larger is 413
	Retries        int           `yaml:"retries"`       // other backends tried after a failed connect; -1 for none
	AllBackups     bool          `yaml:"all_backups"`   // when only backups are left, all of them take traffic, not the first alone
	MaxConns       int           `yaml:"max_conns"`     // open client connections; 0 = no limit
	QueueTimeout   time.Duration `yaml:"queue_timeout"` // a wait for a slot: max_conns's, or a backend's maxconn
	SendProxy      string        `yaml:"send_proxy"`    // "", v1 or v2
	HashBy         string        `yaml:"hash_by"`       // sourcehash's key: source (the client's address), sni, uri or header:NAME
	Cookie         string        `yaml:"cookie"`        // http mode: the cookie that keeps a client to its backend, as HAProxy's cookie NAME insert indirect nocache
	ResolveEvery   time.Duration `yaml:"resolve_every"`

	// TLS ends the clients' TLS with these certificates, picked by SNI;
	// the first is for a client that names none, or a name none has.
	TLS        []tlsx.Pair      `yaml:"tls"`
	BackendTLS BackendTLSConfig `yaml:"backend_tls"`

	Admin AdminConfig `yaml:"admin"`

	Log *slog.Logger `yaml:"-"` // access log; nil for none
	// Resolver looks up host names and srv:// records; nil for the system's.
	Resolver *net.Resolver `yaml:"-"`
}

// BackendConfig is one backend of a Config.
type BackendConfig struct {
	Addr   string `yaml:"addr"`
	Weight int    `yaml:"weight"`
	Backup bool   `yaml:"backup,omitempty"` // a spare: traffic only while no other backend is available
	// MaxConn bounds the connections (tcp) or requests (http) the backend
	// serves at once, as HAProxy's server maxconn; 0 for no bound.
	MaxConn int `yaml:"maxconn,omitempty"`
}

// MaxConnLimit is the largest maxconn a backend takes: past any server's
// real limit, and far from overflowing a counter.
const MaxConnLimit = 1_000_000

// Defaults, as an HAProxy user would set them.
const (
	DefaultConnectTimeout = 2 * time.Second
	DefaultClientIdle     = 60 * time.Second
	DefaultServerIdle     = 60 * time.Second
	DefaultHeadTimeout    = 10 * time.Second
	DefaultRetries        = 3
	DefaultMaxBody        = 1 << 20 // nginx's client_max_body_size
)

func (c *Config) fillDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.ConnectTimeout, DefaultConnectTimeout)
	set(&c.ClientIdle, DefaultClientIdle)
	set(&c.ServerIdle, DefaultServerIdle)
	set(&c.HeadTimeout, DefaultHeadTimeout)
	set(&c.QueueTimeout, c.ConnectTimeout) // as HAProxy's timeout queue
	if c.Mode == "" {
		c.Mode = "tcp"
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Algo == "" {
		c.Algo = "roundrobin"
	}
	c.Check.fillDefaults()
}

// MaxBackends bounds the pool, from the configuration and the admin API
// together: far more than any real pool, and small enough that a reload
// or a status page stays quick.
const MaxBackends = 10000

// Validate reports the first problem with c in one line.
func (c *Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"connect_timeout", c.ConnectTimeout}, {"client_idle", c.ClientIdle}, {"server_idle", c.ServerIdle},
		{"head_timeout", c.HeadTimeout}, {"queue_timeout", c.QueueTimeout}, {"resolve_every", c.ResolveEvery},
		{"check.interval", c.Check.Interval}, {"check.timeout", c.Check.Timeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s: %v is negative; give a duration such as 2s, or leave it out for the default", d.name, d.v)
		}
	}
	if c.Check.Interval > 0 && c.Check.Interval < MinCheckInterval {
		return fmt.Errorf("check.interval: %v is too short; checks at most every %v", c.Check.Interval, MinCheckInterval)
	}
	if c.ResolveEvery > 0 && c.ResolveEvery < MinCheckInterval {
		return fmt.Errorf("resolve_every: %v is too short; look DNS up at most every %v", c.ResolveEvery, MinCheckInterval)
	}
	if c.Check.Rise < 0 || c.Check.Fall < 0 {
		return errors.New("check.rise and check.fall must be 1 or more")
	}
	if len(c.Backends) > MaxBackends {
		return fmt.Errorf("%d backends: at most %d", len(c.Backends), MaxBackends)
	}
	c.fillDefaults()
	if c.Mode != "tcp" && c.Mode != "http" {
		return fmt.Errorf("mode %q: use tcp or http", c.Mode)
	}
	if _, err := NewPicker(c.Algo); err != nil {
		return err
	}
	switch {
	case c.Cookie != "" && c.Mode != "http":
		return fmt.Errorf("cookie %s is set on answers: it needs mode http", c.Cookie)
	case c.Cookie != "" && !httpx.IsToken(c.Cookie):
		return fmt.Errorf("cookie %q: want a cookie name (letters, digits and !#$%%&'*+-.^_`|~), such as SERVERID", c.Cookie)
	}
	header, byHeader := strings.CutPrefix(c.HashBy, "header:")
	switch {
	case c.HashBy == "" || c.HashBy == "source":
	case c.HashBy != "sni" && c.HashBy != "uri" && !byHeader:
		return fmt.Errorf("hash_by %q: use source, sni, uri or header:NAME", c.HashBy)
	case c.Algo != "sourcehash":
		return fmt.Errorf("hash_by %s is a key of algo sourcehash, not of %s", c.HashBy, c.Algo)
	case byHeader && !httpx.IsToken(header):
		return fmt.Errorf("hash_by %q: want a header's name after header:, such as header:Host", c.HashBy)
	case c.HashBy != "sni" && c.Mode != "http":
		return fmt.Errorf("hash_by %s reads requests: it needs mode http", c.HashBy)
	case c.HashBy == "sni" && c.Mode == "http" && len(c.TLS) == 0:
		return errors.New("hash_by sni in http mode needs the balancer to end TLS (tls certificates); in tcp mode it reads the hello of TLS passed through")
	}
	if len(c.Backends) == 0 {
		return errors.New("no backends (give at least one --backend host:port)")
	}
	seen := map[string]bool{}
	for _, b := range c.Backends {
		if err := checkAddr(b.Addr); err != nil {
			return err
		}
		if seen[b.Addr] {
			return fmt.Errorf("backend %s is listed twice", b.Addr)
		}
		seen[b.Addr] = true
		if b.Weight < 0 || b.Weight > 1000 {
			return fmt.Errorf("backend %s: weight must be from 1 to 1000", b.Addr)
		}
		if b.MaxConn < 0 || b.MaxConn > MaxConnLimit {
			return fmt.Errorf("backend %s: maxconn must be from 0 (no limit) to %d", b.Addr, MaxConnLimit)
		}
	}
	if err := sameAddress(c.Backends); err != nil {
		return err
	}
	if c.SendProxy != "" && c.SendProxy != "v1" && c.SendProxy != "v2" {
		return fmt.Errorf("send_proxy %q: use v1 or v2", c.SendProxy)
	}
	if c.Retries < -1 || c.MaxConns < 0 {
		return errors.New("retries must be -1 (none) or more, max_conns 0 (no limit) or more")
	}
	if c.MaxBody < 0 {
		return errors.New("max_body must be a size in bytes, more than 0")
	}
	if err := c.BackendTLS.validate(); err != nil {
		return err
	}
	for i, p := range c.TLS {
		if p.CertFile == "" || p.KeyFile == "" {
			return fmt.Errorf("tls[%d]: give both cert and key files", i)
		}
	}
	return c.Check.validate()
}

// Balancer is a running balancer.
type Balancer struct {
	cfg    atomic.Pointer[Config]
	picker atomic.Pointer[pickerBox]
	pool   *Pool
	addr   net.Addr
	lnfd   int       // the listener, out of Go's poller (evloop.DetachListener); -1 behind the TLS front
	front  *tlsFront // ends TLS when there are certificates

	backendTLS atomic.Pointer[backendTLS] // nil for plain TCP to the backends

	fe frontend // what the clients see, for the stats page
	// inputs bounds the requests http mode holds whole while they come,
	// past budget.Free each: 64 MiB, or four of the largest max_body
	// allows. 300 clients each sending 1 MiB and holding back its last
	// byte took the balancer to 608 MB; past the budget a request is 503.
	inputs *budget.Pool
	rates  *rates

	slots chan struct{} // max-conns tokens; nil without a limit
	// waiting counts the connections or requests queued for a backend's
	// slot over its maxconn, in every loop (slots.go).
	waiting, waitingMax atomic.Int64
	loops               *evloop.Group // the event loops of either mode
	panics              atomic.Int64  // recovered panics, each of which closed one connection
	via                 string        // this balancer's pseudonym in Via, to see a request come round a loop
	selfMu              sync.Mutex
	selves              []self // addresses the balancer listens on, never a backend
	draining            atomic.Bool
	done                chan struct{}
	checker             *checker
	resolver            *resolver
	log                 *accessLog
}

// pickerBox lets the picker be swapped atomically on reload.
type pickerBox struct{ Picker }

// Start binds cfg.Listen and begins balancing.
func Start(cfg Config) (*Balancer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// No TCP keep-alive probes on either side: idle timeouts end dead
	// connections, and each probe setting is four setsockopt calls.
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", cfg.Listen)
	if err != nil {
		return nil, listenError(cfg.Listen, err)
	}
	var certs *tlsx.Store
	var warnings []string
	if len(cfg.TLS) > 0 {
		if certs, warnings, err = tlsx.Load(cfg.TLS); err != nil {
			ln.Close()
			return nil, err
		}
	}
	b := &Balancer{addr: ln.Addr(), lnfd: -1, done: make(chan struct{}), log: newAccessLog(cfg.Log), via: newPseudonym()}
	closeListener := ln.Close
	if certs == nil {
		if b.lnfd, err = evloop.DetachListener(ln); err != nil {
			ln.Close()
			return nil, err
		}
		closeListener = func() error { return unix.Close(b.lnfd) }
	}
	b.addSelf(b.addr, "listen address")
	for _, bc := range cfg.Backends {
		if err := b.refuseSelf(bc.Addr); err != nil {
			closeListener()
			return nil, err
		}
	}
	bt, err := newBackendTLS(cfg.BackendTLS, cfg.Mode, nil)
	if err != nil {
		closeListener()
		return nil, err
	}
	b.backendTLS.Store(bt)
	b.pool = NewPool(backendsOf(cfg.Backends))
	b.apply(cfg)
	if cfg.MaxConns > 0 {
		b.slots = make(chan struct{}, cfg.MaxConns)
	}
	b.resolver = newResolver(b)
	newMode := newTCPLoop
	if cfg.Mode == "http" {
		newMode = newHTTPLoop
	}
	if b.loops, err = startLoops(b, newMode); err != nil {
		closeListener()
		return nil, err
	}
	// What runs beside the loops starts once they exist: the resolver
	// tells them of backends gone and the rates read their queue.
	b.resolver.start()
	b.checker = startChecker(b)
	b.rates = startRates(b)
	if certs != nil {
		b.front = startTLSFront(b, ln, certs, warnings, cfg.Mode)
	}
	return b, nil
}

// backendsOf makes the plain backends of a configuration; srv:// entries
// become backends once the resolver has looked them up.
func backendsOf(cs []BackendConfig) []*Backend {
	var bs []*Backend
	for _, c := range cs {
		if !strings.HasPrefix(c.Addr, "srv://") {
			bs = append(bs, newBackendFor(c.Addr, c))
		}
	}
	return bs
}

// srvEntries are the srv:// entries of a configuration.
func srvEntries(cs []BackendConfig) []string {
	var srvs []string
	for _, c := range cs {
		if strings.HasPrefix(c.Addr, "srv://") {
			srvs = append(srvs, c.Addr)
		}
	}
	return srvs
}

func (b *Balancer) apply(cfg Config) {
	largest := cfg.MaxBody + int64(httpx.DefaultLimits().MaxHead) + budget.Free
	if b.inputs == nil {
		b.inputs = budget.ForRequests(largest)
	} else {
		b.inputs.Resize(budget.RequestsSize(largest))
	}
	p, _ := NewPicker(cfg.Algo)
	b.picker.Store(&pickerBox{p})
	b.cfg.Store(&cfg)
}

// Reload replaces the configuration without dropping a connection: the
// listener stays, backends that remain keep their counters and health.
// An invalid cfg is refused and the running one stays.
func (b *Balancer) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if old := b.Config(); cfg.Listen != old.Listen || cfg.Mode != old.Mode || cfg.MaxConns != old.MaxConns {
		return errors.New("listen, mode and max_conns cannot change on reload; restart the balancer")
	}
	if (len(cfg.TLS) > 0) != (b.front != nil) || cfg.BackendTLS.Enabled != b.Config().BackendTLS.Enabled {
		return errors.New("tls and backend_tls cannot be turned on or off on reload; restart the balancer")
	}
	var bt *backendTLS
	if old := b.backendTLS.Load(); old != nil {
		var err error
		if bt, err = newBackendTLS(cfg.BackendTLS, cfg.Mode, old.session); err != nil {
			return err
		}
	}
	var certs *tlsx.Store
	var warnings []string
	if b.front != nil {
		var err error
		if certs, warnings, err = tlsx.Load(cfg.TLS); err != nil {
			return err
		}
	}
	cfg.Log, cfg.Resolver = b.Config().Log, b.Config().Resolver
	for _, bc := range cfg.Backends {
		if err := b.refuseSelf(bc.Addr); err != nil {
			return err
		}
	}
	b.forget(b.pool.Replace(backendsOf(cfg.Backends), srvEntries(cfg.Backends)))
	b.apply(cfg)
	if certs != nil {
		b.front.certs.Store(certs)
		b.front.warnings.Store(&warnings)
	}
	if bt != nil {
		b.backendTLS.Store(bt)
	}
	return nil
}

// AddBackend adds a backend at addr, as the admin API asks, after the
// checks a configuration gets; the status is the HTTP answer to give on
// an error.
func (b *Balancer) AddBackend(c BackendConfig) (*Backend, int, error) {
	if c.Weight < 0 || c.Weight > 1000 {
		return nil, 400, fmt.Errorf("weight %d: give a whole number from 1 to 1000", c.Weight)
	}
	if c.MaxConn < 0 || c.MaxConn > MaxConnLimit {
		return nil, 400, fmt.Errorf("maxconn %d: give a whole number from 0 (no limit) to %d", c.MaxConn, MaxConnLimit)
	}
	addr := strings.TrimSpace(c.Addr)
	if strings.HasPrefix(addr, "srv://") {
		return nil, 400, errors.New("srv:// backends come from the configuration only (they follow DNS, not the API)")
	}
	if err := checkAddr(addr); err != nil {
		return nil, 400, err
	}
	if err := b.refuseSelf(addr); err != nil {
		return nil, 400, err
	}
	if b.pool.Len() >= MaxBackends {
		return nil, 409, fmt.Errorf("the pool has %d backends, the most it takes", MaxBackends)
	}
	be := newBackendFor(addr, c)
	if b.Config().Check.Kind != "none" {
		be.SetState(Checking) // traffic once rise checks pass, as HAProxy brings a new server up
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	b.resolver.resolve(ctx, be)
	cancel()
	for _, other := range b.pool.All() {
		if other.Name == be.Name {
			return nil, 409, fmt.Errorf("backend %s exists", addr)
		}
		if sa := be.sockaddr.Load(); sa != nil && other.Addr() == be.Addr() {
			return nil, 409, fmt.Errorf("backend %s is %s, which backend %s is already", addr, be.Addr(), other.Name)
		}
	}
	if !b.pool.Add(be) {
		return nil, 409, fmt.Errorf("backend %s exists", addr)
	}
	return be, 201, nil
}

// SetAdminState is an operator's change of be's state: drain and maint
// at once; ready takes traffic again where health allows it — back from
// maintenance (unchecked meanwhile) it is checked first, from drain it
// is down if its last check failed, and a backend down or checking stays
// so until its checks pass.
func (b *Balancer) SetAdminState(be *Backend, s State) {
	checked := b.Config().Check.Kind != "none"
	switch {
	case s != Ready:
		be.SetState(s)
	case be.changeState(Maint, Checking) && !checked:
		be.changeState(Checking, Ready)
	case be.State() == Drain:
		if lc := be.LastCheck(); checked && lc != nil && !lc.OK {
			be.changeState(Drain, Down)
		} else {
			be.changeState(Drain, Ready)
		}
	}
	if s == Ready {
		be.suspectUntil.Store(0)
	}
}

// RemoveBackend takes the named backend out of the pool, as the admin API
// asks, and closes the idle connections the loops keep to it.
func (b *Balancer) RemoveBackend(name string) bool {
	be := b.pool.Remove(name)
	if be == nil {
		return false
	}
	b.forget([]*Backend{be})
	return true
}

// forget tells the loops that backends left the pool: idle connections
// kept to them are closed at once, not when they time out.
func (b *Balancer) forget(gone []*Backend) {
	for _, be := range gone {
		be.gone.Store(true)
	}
	if len(gone) == 0 || b.loops == nil {
		return
	}
	b.loops.Each(func(h evloop.Handler) {
		if f, ok := h.(interface{ forget([]*Backend) }); ok {
			f.forget(gone)
		}
	})
}

// Config is the running configuration.
func (b *Balancer) Config() *Config { return b.cfg.Load() }

// Pool is the balancer's backends.
func (b *Balancer) Pool() *Pool { return b.pool }

// panicked counts and logs a panic that closed one connection.
func (b *Balancer) panicked(p any, stack []byte) {
	b.panics.Add(1)
	slog.Error("panic serving a connection; it was closed and serving goes on", "panic", p, "stack", string(stack))
}

// Addr is the address the balancer listens on.
func (b *Balancer) Addr() net.Addr { return b.addr }

// Queued is how many client connections wait over --max-conns now.
func (b *Balancer) Queued() int { return b.loops.Queued() }

// Done is closed once the balancer has stopped.
func (b *Balancer) Done() <-chan struct{} { return b.done }

// pick chooses a backend for a client, leaving out those already tried:
// the one its request's persistence cookie names, if that one may take
// it; by the key hash_by names when the client has one (its TLS hello's
// server name, its request's path or header); else by the algorithm.
func (b *Balancer) pick(client net.Addr, tried []*Backend) (be *Backend, full bool) {
	rc, _ := client.(*requestClient)
	if rc != nil {
		if be := b.pool.stuck(rc.cookie, tried); be != nil {
			return claim(be)
		}
	}
	cfg := b.Config()
	candidates := b.pool.candidates(tried, cfg.AllBackups)
	// A hash keeps its key to one backend: a full one is waited for, as
	// HAProxy queues on the server that persistence or a hash chose.
	if name := serverName(client); name != "" && cfg.HashBy == "sni" {
		return claim(SourceHash{}.pickKey(candidates, []byte(name)))
	}
	if rc != nil && rc.key != "" {
		return claim(SourceHash{}.pickKey(candidates, []byte(rc.key)))
	}
	var ip netip.Addr
	if a := clientAddr(client); a != nil {
		ip, _ = netip.AddrFromSlice(a.IP)
	}
	picker := b.picker.Load().Picker
	if _, ok := picker.(SourceHash); ok {
		return claim(picker.Pick(candidates, ip))
	}
	// The other algorithms choose among the backends with a free slot; one
	// that filled between the look and the claim is passed over.
	some := len(candidates) > 0
	for {
		open := withRoom(candidates)
		if len(open) == 0 {
			return nil, some
		}
		be := picker.Pick(open, ip)
		if be.take() {
			return be, false
		}
		candidates = slices.DeleteFunc(open, func(x *Backend) bool { return x == be })
	}
}

// claim takes a slot on be, the one backend a client may go to: full
// when be has none free now.
func claim(be *Backend) (*Backend, bool) {
	switch {
	case be == nil:
		return nil, false
	case be.take():
		return be, false
	}
	return nil, true
}

// withRoom is candidates less those at their maxconn: candidates itself
// when none is.
func withRoom(candidates []*Backend) []*Backend {
	i := slices.IndexFunc(candidates, (*Backend).full)
	if i < 0 {
		return candidates
	}
	open := slices.Clone(candidates[:i])
	for _, be := range candidates[i+1:] {
		if !be.full() {
			open = append(open, be)
		}
	}
	return open
}

// Shutdown stops accepting, lets connections finish until ctx ends, then
// closes what is left.
func (b *Balancer) Shutdown(ctx context.Context) error {
	if b.draining.Swap(true) {
		<-b.done
		return nil
	}
	b.checker.stop()
	b.resolver.stop()
	b.rates.close()
	closeListener := func() { unix.Close(b.lnfd) }
	if b.front != nil {
		closeListener = b.front.close
	}
	b.loops.Stop(closeListener, nil, ctx.Done())
	if b.front != nil {
		b.front.end()
	}
	err := ctx.Err()
	b.log.close()
	close(b.done)
	return err
}

func listenError(addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen %s: address already in use (another server is on it; pick another --listen port)", addr)
	}
	return fmt.Errorf("listen %s: %w", addr, err)
}
