package balancer

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/proxyproto"
	"loadlab/internal/rawsys"
)

// tcp mode is an event loop per core over the kernel's epoll, level
// triggered, on non-blocking sockets: a loop accepts from the shared
// listener, connects to a backend without blocking, and moves bytes with
// one read and one write per message, as HAProxy does. Goroutines parked
// in io.Copy cost half as much CPU again per request (measured: 35 µs
// against HAProxy's 23 µs, keep-alive; docs/PERFORMANCE.md): Go's
// edge-triggered poller has to read until EAGAIN, and every message woke
// a goroutine. A loop that read less than its buffer knows the socket is
// drained, and level triggering tells it when there is more.
type tcpProxy struct {
	b     *Balancer
	lnfd  int
	loops []*tcpLoop
	wg    sync.WaitGroup

	stopAccepting atomic.Bool    // Shutdown: take no more connections
	unlistened    sync.WaitGroup // a loop is done once it has left the listener
	closeAll      atomic.Bool    // Shutdown's grace is over: close what is open
}

func startTCPProxy(b *Balancer) (*tcpProxy, error) {
	t := &tcpProxy{b: b}
	raw, err := b.ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return nil, err
	}
	raw.Control(func(fd uintptr) { t.lnfd = int(fd) })
	for range runtime.GOMAXPROCS(0) {
		l, err := newTCPLoop(t)
		if err != nil {
			for _, l := range t.loops {
				l.release()
			}
			return nil, err
		}
		t.loops = append(t.loops, l)
	}
	t.unlistened.Add(len(t.loops))
	for _, l := range t.loops {
		t.wg.Go(l.run)
	}
	return t, nil
}

// stop ends accepting at once, closing the listener, and the loops once
// their connections are done — or, when done is closed first, after
// closing those. It returns when the loops have ended.
func (t *tcpProxy) stop(ln net.Listener, done <-chan struct{}) {
	t.stopAccepting.Store(true)
	t.wake()
	t.unlistened.Wait() // no loop will touch the listener's descriptor again
	ln.Close()
	finished := make(chan struct{})
	go func() { t.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-done:
		t.closeAll.Store(true)
		t.wake()
		<-finished
	}
}

func (t *tcpProxy) wake() {
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, l := range t.loops {
		unix.Write(l.wakefd, one)
	}
}

// tcpLoop is one event loop and the connections it owns; only its own
// goroutine touches them.
type tcpLoop struct {
	t          *tcpProxy
	epfd       int
	wakefd     int          // an eventfd: a knock from stop, or from a loop handing over a connection
	load       atomic.Int64 // connections held (and handed over, not yet taken)
	inboxMu    sync.Mutex
	inbox      []handedOff
	events     []unix.EpollEvent
	buf        []byte
	sides      []*tcpSide // by descriptor
	closing    []int      // descriptors to close once the round's events are handled
	pairs      map[*tcpPair]struct{}
	waiting    []*tcpPair // accepted over --max-conns: admitted when a slot frees, refused when their wait ends
	addrs      map[string]*rawsys.Sockaddr
	now        time.Time
	listening  bool      // the listener is in this loop's epoll set
	acceptable bool      // the listener may have connections waiting
	left       bool      // the loop has left the listener for good
	pausedTo   time.Time // accept paused after running out of descriptors
}

// tcpSide is one socket of a proxied pair.
type tcpSide struct {
	fd         int
	pair       *tcpPair
	peer       *tcpSide
	pending    []byte // for this socket: bytes it could not take yet
	eof        bool   // the other end sent FIN: nothing more to read
	shut       bool   // we passed the peer's FIN on (shutdown SHUT_WR)
	watching   uint32 // what epoll reports for it
	registered bool
}

// tcpPair is a client connection and its backend connection.
type tcpPair struct {
	client, server tcpSide
	from           net.Addr
	be             *Backend
	tried          []*Backend
	skipped        []string
	connecting     bool
	slot           bool // holds a --max-conns slot
	start          time.Time
	dialed         time.Time // when the current connect began
	waitUntil      time.Time // over --max-conns: refused after this
	active         time.Time // last data either way
	up, down       int64
}

func newTCPLoop(t *tcpProxy) (*tcpLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &tcpLoop{
		t: t, epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, 256), buf: make([]byte, 64<<10),
		pairs: map[*tcpPair]struct{}{}, addrs: map[string]*rawsys.Sockaddr{},
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, wakefd, unix.EPOLLIN); err != nil {
		l.release()
		return nil, err
	}
	// Every loop is woken by a new connection and takes a few: an idle loop
	// gets to new connections first, and a burst is shared out.
	if err := l.ctl(unix.EPOLL_CTL_ADD, t.lnfd, unix.EPOLLIN); err != nil {
		l.release()
		return nil, err
	}
	l.listening = true
	return l, nil
}

func (l *tcpLoop) release() {
	l.closeNow()
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}

func (l *tcpLoop) ctl(op, fd int, events uint32) error {
	return rawsys.EpollCtl(l.epfd, op, fd, events, int32(fd))
}

// sweepEvery is how often timeouts are checked: connect and idle
// timeouts fire within this much of their time.
const sweepEvery = 100 * time.Millisecond

// yieldEvery: a loop that always has work never enters the Go scheduler;
// handing its processor back now and then is cheaper than being preempted.
const yieldEvery = 2 * time.Millisecond

func (l *tcpLoop) run() {
	defer l.release()
	l.now = time.Now()
	nextSweep, nextYield := l.now.Add(sweepEvery), l.now.Add(yieldEvery)
	for {
		if l.t.stopAccepting.Load() && !l.left {
			if l.listening {
				l.ctl(unix.EPOLL_CTL_DEL, l.t.lnfd, 0)
				l.listening = false
			}
			l.left = true
			l.t.unlistened.Done()
			for _, p := range l.waiting {
				l.refuse(p)
			}
			l.waiting = nil
		}
		if l.t.closeAll.Load() {
			for p := range l.pairs {
				l.finish(p, "closed")
			}
		}
		if l.left && l.load.Load() == 0 { // none held, none handed over
			return
		}
		wait := nextSweep.Sub(l.now)
		if len(l.waiting) > 0 {
			wait = min(wait, 5*time.Millisecond) // a slot may free in another loop
		}
		l.closeNow()
		n, err := unix.EpollWait(l.epfd, l.events, max(int(wait/time.Millisecond), 0))
		if err != nil && err != unix.EINTR {
			continue
		}
		l.now = time.Now()
		for _, ev := range l.events[:max(n, 0)] {
			switch fd := int(ev.Fd); {
			case fd == l.t.lnfd:
				l.acceptable = true
			case fd == l.wakefd:
				var b [8]byte
				unix.Read(l.wakefd, b[:])
				l.takeInbox()
			case fd < len(l.sides) && l.sides[fd] != nil:
				l.ready(l.sides[fd], ev.Events)
			}
		}
		l.closeNow()
		if l.acceptable && l.listening {
			l.accept()
		}
		l.admitWaiting()
		if !l.now.Before(nextSweep) {
			l.sweep()
			nextSweep = l.now.Add(sweepEvery)
		}
		if !l.now.Before(nextYield) {
			runtime.Gosched()
			nextYield = l.now.Add(yieldEvery)
		}
	}
}

// maxAccept is how many connections a loop takes per round; the rest
// wait for the next round (or another loop), so that a burst of new
// connections does not hold up the bytes of those already open.
const maxAccept = 32

// accept takes waiting connections, up to maxAccept, and says whether
// more may be waiting. It runs every round while the listener has
// connections: level-triggered epoll puts a reported socket back at the
// end of its ready list, so with thousands of busy connections ahead of
// it the listener would come round again only every few dozen rounds.
func (l *tcpLoop) accept() {
	l.acceptable = false
	for range maxAccept {
		fd, from, err := rawsys.Accept4(l.t.lnfd)
		switch err {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			// Out of descriptors: the listener would wake us at once,
			// again and again. Pause accepting a little.
			l.ctl(unix.EPOLL_CTL_DEL, l.t.lnfd, 0)
			l.listening = false
			l.pausedTo = l.now.Add(sweepEvery)
			return
		default:
			return
		}
		rawsys.SetNoDelay(fd)
		if to := l.t.lightest(); to != l && l.load.Load() > to.load.Load()+handOffSlack {
			to.handOff(fd, from)
			continue
		}
		l.take(fd, from)
	}
	l.acceptable = true // took maxAccept: there may be more
}

// handOffSlack is how many more connections than the least loaded loop a
// loop may hold before it passes new ones on. Loops take connections from
// a shared listener, so an idle loop gets to new connections first; but a
// burst of connections that then stay (keep-alive) could land on one
// loop, and handing over the surplus keeps the loops even, as HAProxy
// does between its threads.
const handOffSlack = 16

// lightest is the loop holding the fewest connections.
func (t *tcpProxy) lightest() *tcpLoop {
	best := t.loops[0]
	for _, l := range t.loops[1:] {
		if l.load.Load() < best.load.Load() {
			best = l
		}
	}
	return best
}

// handOff gives an accepted connection to l, from another loop.
func (l *tcpLoop) handOff(fd int, from net.Addr) {
	l.load.Add(1) // counted at once, so the next choice sees it
	l.inboxMu.Lock()
	l.inbox = append(l.inbox, handedOff{fd, from})
	l.inboxMu.Unlock()
	unix.Write(l.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}

type handedOff struct {
	fd   int
	from net.Addr
}

// takeInbox takes the connections other loops handed over.
func (l *tcpLoop) takeInbox() {
	l.inboxMu.Lock()
	in := l.inbox
	l.inbox = nil
	l.inboxMu.Unlock()
	for _, h := range in {
		l.load.Add(-1) // take counts it again
		l.take(h.fd, h.from)
	}
}

// take makes an accepted connection this loop's and connects it to a
// backend (or queues it over --max-conns).
func (l *tcpLoop) take(fd int, from net.Addr) {
	b := l.t.b
	p := &tcpPair{from: from, start: l.now}
	p.client = tcpSide{fd: fd, pair: p, peer: &p.server}
	p.server = tcpSide{fd: -1, pair: p, peer: &p.client}
	l.own(&p.client)
	l.pairs[p] = struct{}{}
	l.load.Add(1)
	if b.slots != nil {
		select {
		case b.slots <- struct{}{}:
			p.slot = true
		default:
			p.waitUntil = l.now.Add(b.Config().QueueTimeout)
			l.waiting = append(l.waiting, p)
			return
		}
	}
	l.dial(p)
}

// admitWaiting gives free --max-conns slots to connections waiting for one.
func (l *tcpLoop) admitWaiting() {
	for len(l.waiting) > 0 {
		select {
		case l.t.b.slots <- struct{}{}:
			p := l.waiting[0]
			l.waiting = l.waiting[1:]
			p.slot = true
			l.dial(p)
		default:
			return
		}
	}
}

// dial connects p to the next backend, without blocking; a failed
// connect comes back here to try another, up to Retries.
func (l *tcpLoop) dial(p *tcpPair) {
	b := l.t.b
	cfg := b.Config()
	for len(p.tried) <= max(cfg.Retries, 0) {
		be := b.pick(p.from, p.tried)
		if be == nil {
			break
		}
		p.tried = append(p.tried, be)
		fd, err := l.connect(be.Addr())
		if err != nil {
			be.suspect(suspectFor)
			p.skipped = append(p.skipped, be.Name+": "+shortErr(err))
			continue
		}
		p.be, p.connecting, p.dialed = be, true, l.now
		p.server.fd = fd
		l.own(&p.server)
		l.watch(&p.server)
		return
	}
	if len(p.tried) == 0 {
		p.skipped = append(p.skipped, "no backend available")
	}
	l.refuse(p)
}

// connect starts a non-blocking connect to addr.
func (l *tcpLoop) connect(addr string) (int, error) {
	sa, ok := l.addrs[addr]
	if !ok {
		ta, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			return -1, err
		}
		sa = rawsys.NewSockaddr(ta.IP, ta.Port)
		l.addrs[addr] = sa
	}
	fd, err := rawsys.Socket(sa.Family)
	if err != nil {
		return -1, &net.OpError{Op: "socket", Net: "tcp", Err: err}
	}
	rawsys.SetNoDelay(fd)
	if err := rawsys.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		rawsys.Close(fd)
		return -1, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	return fd, nil
}

// connected finishes p's connect: on success the pair starts moving
// bytes; on failure the backend is suspect and the next one is tried.
func (l *tcpLoop) connected(p *tcpPair) {
	be := p.be
	if err := rawsys.SocketError(p.server.fd); err != nil {
		l.retry(p, &net.OpError{Op: "dial", Net: "tcp", Err: err})
		return
	}
	p.connecting = false
	p.active = l.now
	be.observe(l.now.Sub(p.dialed))
	be.Active.Add(1)
	be.Total.Add(1)
	be.Requests.Add(1)
	if v := l.t.b.Config().SendProxy; v != "" {
		local, _ := rawsys.LocalAddr(p.client.fd)
		p.server.pending = proxyproto.Append(nil, v, p.from, local)
	}
	l.watch(&p.client)
	l.flush(&p.server) // the PROXY header, if any; and it watches the server
}

// retry gives up on p's current backend and dials the next.
func (l *tcpLoop) retry(p *tcpPair, err error) {
	p.be.suspect(suspectFor)
	p.skipped = append(p.skipped, p.be.Name+": "+shortErr(err))
	l.disown(&p.server)
	l.closeLater(p.server.fd)
	p.server.fd, p.connecting, p.be = -1, false, nil
	l.dial(p)
}

// ready handles epoll's report for one socket.
func (l *tcpLoop) ready(s *tcpSide, events uint32) {
	p := s.pair
	if p.connecting {
		if s == &p.server && events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.connected(p)
		}
		return
	}
	if events&unix.EPOLLERR != 0 { // a reset, or worse: the pair is broken
		l.finish(p, "error")
		return
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP) != 0 && len(s.pending) > 0 {
		if !l.flush(s) {
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP) != 0 {
		l.pump(s)
	}
}

// pump moves what src has to its peer: one read and one write per
// message. A read shorter than the buffer drained the socket; epoll says
// when there is more.
func (l *tcpLoop) pump(src *tcpSide) {
	dst := src.peer
	p := src.pair
	for !src.eof && len(dst.pending) == 0 {
		n, err := rawsys.Read(src.fd, l.buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			l.finish(p, "error")
			return
		}
		if n == 0 { // FIN: pass it on once what is pending is written
			src.eof = true
			if !l.flush(dst) {
				return
			}
			break
		}
		p.active = l.now
		if src == &p.client {
			p.up += int64(n)
		} else {
			p.down += int64(n)
		}
		dst.pending = l.buf[:n]
		if !l.flush(dst) {
			return
		}
		if len(dst.pending) > 0 { // dst is full: keep the rest, stop reading src
			dst.pending = append([]byte(nil), dst.pending...)
			break
		}
		if n < len(l.buf) {
			break
		}
	}
	l.watch(src)
	l.watch(dst)
}

// flush writes s.pending to s, and passes its peer's FIN on once nothing
// is pending; false if the pair is gone.
func (l *tcpLoop) flush(s *tcpSide) bool {
	for len(s.pending) > 0 {
		n, err := rawsys.Write(s.fd, s.pending)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			l.finish(s.pair, "error")
			return false
		}
		s.pending = s.pending[n:]
	}
	if len(s.pending) == 0 {
		s.pending = nil
		if s.peer.eof && !s.shut {
			// Pass the FIN on; if s has sent its own already, the close
			// that follows sends it.
			if !s.eof {
				rawsys.ShutdownWrite(s.fd)
			}
			s.shut = true
		}
	}
	p := s.pair
	if p.client.shut && p.server.shut {
		l.finish(p, "done")
		return false
	}
	l.watch(s)
	l.watch(s.peer)
	return true
}

// watch tells epoll what s waits for now: to read while its peer can
// take more, to write while it has bytes pending (or its connect is under
// way).
func (l *tcpLoop) watch(s *tcpSide) {
	if s.fd < 0 {
		return
	}
	if s.eof && s.shut { // done both ways: nothing more to wait for on it
		if s.registered {
			l.ctl(unix.EPOLL_CTL_DEL, s.fd, 0)
			s.registered, s.watching = false, 0
		}
		return
	}
	var want uint32
	p := s.pair
	switch {
	case p.connecting:
		if s == &p.server {
			want = unix.EPOLLOUT
		}
	default:
		if !s.eof && len(s.peer.pending) == 0 {
			want |= unix.EPOLLIN
		}
		if len(s.pending) > 0 {
			want |= unix.EPOLLOUT
		}
	}
	if s.registered && want == s.watching {
		return
	}
	op := unix.EPOLL_CTL_MOD
	if !s.registered {
		op = unix.EPOLL_CTL_ADD
	}
	if l.ctl(op, s.fd, want) == nil {
		s.registered, s.watching = true, want
	}
}

// own records s as the loop's, found by its descriptor.
func (l *tcpLoop) own(s *tcpSide) {
	for len(l.sides) <= s.fd {
		l.sides = append(l.sides, make([]*tcpSide, len(l.sides)+64)...)
	}
	l.sides[s.fd] = s
}

func (l *tcpLoop) disown(s *tcpSide) {
	if s.fd >= 0 && s.fd < len(l.sides) {
		l.sides[s.fd] = nil
	}
	s.registered, s.watching = false, 0
}

// closeLater closes fd after the round's events: until then its number
// cannot be given to a new socket, so an event of this round still
// queued for the old socket cannot reach the new one.
func (l *tcpLoop) closeLater(fd int) { l.closing = append(l.closing, fd) }

func (l *tcpLoop) closeNow() {
	for _, fd := range l.closing {
		rawsys.Close(fd) // also takes it out of the epoll set
	}
	l.closing = l.closing[:0]
}

// refuse turns a client away at once with a reset, as a closed port would.
func (l *tcpLoop) refuse(p *tcpPair) {
	unix.SetsockoptLinger(p.client.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	l.finish(p, "refused")
}

// finish closes both sockets of p and accounts for it.
func (l *tcpLoop) finish(p *tcpPair, status string) {
	if _, ok := l.pairs[p]; !ok {
		return
	}
	delete(l.pairs, p)
	l.load.Add(-1)
	for _, s := range []*tcpSide{&p.client, &p.server} {
		if s.fd >= 0 {
			l.disown(s)
			l.closeLater(s.fd)
			s.fd = -1
		}
	}
	if p.slot {
		<-l.t.b.slots
	}
	b := l.t.b
	if status == "refused" {
		b.log.connection(p.from, nil, 0, 0, l.now.Sub(p.start), status, p.skipped)
		return
	}
	if p.be == nil || p.connecting { // closed by a shutdown before it was joined
		return
	}
	be := p.be
	be.Active.Add(-1)
	be.BytesIn.Add(p.up)
	be.BytesOut.Add(p.down)
	if status == "error" {
		be.Errors.Add(1)
	}
	b.log.connection(p.from, be, p.up, p.down, l.now.Sub(p.start), status, p.skipped)
}

// sweep ends connects past their timeout (and tries the next backend),
// idle connections, and waits over --max-conns that ran out.
func (l *tcpLoop) sweep() {
	cfg := l.t.b.Config()
	idleAfter := min(cfg.ClientIdle, cfg.ServerIdle)
	for p := range l.pairs {
		switch {
		case p.connecting && l.now.Sub(p.dialed) > cfg.ConnectTimeout:
			l.retry(p, errConnectTimeout)
		case !p.connecting && p.be != nil && l.now.Sub(p.active) > idleAfter:
			l.finish(p, "idle")
		}
	}
	kept := l.waiting[:0]
	for _, p := range l.waiting {
		if l.now.After(p.waitUntil) {
			l.refuse(p)
		} else {
			kept = append(kept, p)
		}
	}
	l.waiting = kept
	if !l.listening && !l.pausedTo.IsZero() && l.now.After(l.pausedTo) && !l.t.stopAccepting.Load() {
		if l.ctl(unix.EPOLL_CTL_ADD, l.t.lnfd, unix.EPOLLIN) == nil {
			l.listening, l.pausedTo = true, time.Time{}
		}
	}
}

var errConnectTimeout = &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// suspectFor is how long a backend whose connect just failed is passed
// over when no health check clears it sooner.
const suspectFor = 2 * time.Second

// dialer connects to backends (http mode) without TCP keep-alive probes.
func (b *Balancer) dialer(cfg *Config) net.Dialer {
	return net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: -1}
}

// shortErr is an error as the access log and the stats page show it.
func shortErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}
