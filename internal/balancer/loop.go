package balancer

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
)

// Both modes run as an event loop per core over the kernel's epoll, level
// triggered, on non-blocking sockets, as HAProxy does: the first loop
// accepts and gives each connection to the least loaded loop, which
// connects to a backend without blocking and moves bytes with one read
// and one write per message. Goroutines parked in
// blocking reads cost half as much CPU again per request (measured: 35 µs
// against HAProxy's 23 µs, tcp keep-alive; docs/PERFORMANCE.md): Go's
// edge-triggered poller has to read until EAGAIN, and every message woke a
// goroutine. A loop that read less than its buffer knows the socket is
// drained, and level triggering tells it when there is more.
//
// This file is what the modes share: the loops, the listener, handing
// connections between loops, --max-conns, timeouts' clock and a graceful
// stop. tcp.go and http.go are what a loop does with a connection.

// proxy is a balancer's event loops.
type proxy struct {
	b     *Balancer
	lnfd  int
	loops []*loop
	wg    sync.WaitGroup

	stopAccepting atomic.Bool    // Shutdown: take no more connections
	unlistened    sync.WaitGroup // a loop is done once it has left the listener
	closeAll      atomic.Bool    // Shutdown's grace is over: close what is open
}

// mode is what one loop does with its connections in a balancer mode.
type mode interface {
	// take makes an accepted client connection the mode's; it holds a
	// --max-conns slot when there is a limit, which l.ended gives back.
	take(fd int, from net.Addr)
	// refuse turns away a client connection that waited too long for a slot.
	refuse(fd int, from net.Addr)
	sweep()    // every sweepEvery: timeouts
	stopping() // the balancer stopped accepting: finish what is open, take nothing new
	closeAll() // the grace is over: close everything now
}

// watched is a socket in a loop's epoll set, told what epoll reported.
type watched interface{ ready(events uint32) }

func startProxy(b *Balancer, newMode func(*loop) mode) (*proxy, error) {
	t := &proxy{b: b}
	raw, err := b.ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return nil, err
	}
	raw.Control(func(fd uintptr) { t.lnfd = int(fd) })
	for range runtime.GOMAXPROCS(0) {
		l, err := newLoop(t)
		if err != nil {
			for _, l := range t.loops {
				l.release()
			}
			return nil, err
		}
		l.mode = newMode(l)
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
func (t *proxy) stop(ln net.Listener, done <-chan struct{}) {
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

func (t *proxy) wake() {
	for _, l := range t.loops {
		l.knock()
	}
}

// loop is one event loop and the connections it owns; only its own
// goroutine touches them.
type loop struct {
	t          *proxy
	mode       mode
	epfd       int
	wakefd     int          // an eventfd: a knock from stop, or from a loop handing over a connection
	load       atomic.Int64 // client connections held (and handed over, not yet taken)
	inboxMu    sync.Mutex
	inbox      []handedOff
	events     []unix.EpollEvent
	buf        []byte    // what one read brings, on its way to the other side
	sockets    []watched // by descriptor
	closing    []int     // descriptors to close once the round's events are handled
	waiting    []waiter  // accepted over --max-conns: admitted when a slot frees, refused when their wait ends
	addrs      map[string]*rawsys.Sockaddr
	now        time.Time
	listening  bool      // the listener is in this loop's epoll set (the first loop's, unless paused)
	acceptable bool      // the listener may have connections waiting
	left       bool      // the loop has left the listener for good
	pausedTo   time.Time // accept paused after running out of descriptors
}

// waiter is a client connection waiting for a --max-conns slot.
type waiter struct {
	fd    int
	from  net.Addr
	until time.Time
}

func newLoop(t *proxy) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &loop{
		t: t, epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, 256), buf: make([]byte, 64<<10),
		addrs: map[string]*rawsys.Sockaddr{},
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, wakefd, unix.EPOLLIN); err != nil {
		l.release()
		return nil, err
	}
	if len(t.loops) > 0 { // the first loop accepts for all
		return l, nil
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, t.lnfd, unix.EPOLLIN); err != nil {
		l.release()
		return nil, err
	}
	l.listening = true
	return l, nil
}

func (l *loop) release() {
	l.closeNow()
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}

func (l *loop) knock() { unix.Write(l.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) }

func (l *loop) ctl(op, fd int, events uint32) error {
	return rawsys.EpollCtl(l.epfd, op, fd, events, int32(fd))
}

// sweepEvery is how often timeouts are checked: connect and idle
// timeouts fire within this much of their time.
const sweepEvery = 100 * time.Millisecond

// yieldEvery: a loop that always has work never enters the Go scheduler;
// handing its processor back now and then is cheaper than being preempted.
const yieldEvery = 2 * time.Millisecond

func (l *loop) run() {
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
			for _, w := range l.waiting {
				l.load.Add(-1)
				l.mode.refuse(w.fd, w.from)
			}
			l.waiting = nil
			l.mode.stopping()
		}
		if l.t.closeAll.Load() {
			l.mode.closeAll()
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
			case fd < len(l.sockets) && l.sockets[fd] != nil:
				l.sockets[fd].ready(ev.Events)
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

// accept takes waiting connections, up to maxAccept, and gives each to
// the loop holding the fewest connections, as HAProxy's listener does
// between its threads. One loop accepts for all: when every loop watched
// the listener, every new connection woke both, and the one that won
// took it whatever it already held — measured, new connections' latency
// spread wider than HAProxy's (standard deviation 5.4–6.1 ms against
// 3.6–4.7) and p99 1.09× its; with one acceptor and exact placement,
// 3.9–5.4 ms and p99 at HAProxy's (docs/PERFORMANCE.md).
//
// It runs every round while the listener has connections:
// level-triggered epoll puts a reported socket back at the end of its
// ready list, so with thousands of busy connections ahead of it the
// listener would come round again only every few dozen rounds.
func (l *loop) accept() {
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
		if to := l.t.lightest(); to != l && to.load.Load() < l.load.Load() {
			to.handOff(fd, from)
			continue
		}
		l.admit(fd, from)
	}
	l.acceptable = true // took maxAccept: there may be more
}

// lightest is the loop holding the fewest connections.
func (t *proxy) lightest() *loop {
	best := t.loops[0]
	for _, l := range t.loops[1:] {
		if l.load.Load() < best.load.Load() {
			best = l
		}
	}
	return best
}

// handOff gives an accepted connection to l, from the accepting loop.
// One knock wakes l for all that came before it takes them.
func (l *loop) handOff(fd int, from net.Addr) {
	l.load.Add(1) // counted at once, so the next choice sees it
	l.inboxMu.Lock()
	first := len(l.inbox) == 0
	l.inbox = append(l.inbox, handedOff{fd, from})
	l.inboxMu.Unlock()
	if first {
		l.knock()
	}
}

type handedOff struct {
	fd   int
	from net.Addr
}

// takeInbox takes the connections other loops handed over.
func (l *loop) takeInbox() {
	l.inboxMu.Lock()
	in := l.inbox
	l.inbox = nil
	l.inboxMu.Unlock()
	for _, h := range in {
		l.load.Add(-1) // admit counts it again
		l.admit(h.fd, h.from)
	}
}

// admit gives a client connection to the mode, or queues it over
// --max-conns.
func (l *loop) admit(fd int, from net.Addr) {
	l.load.Add(1)
	if slots := l.t.b.slots; slots != nil {
		select {
		case slots <- struct{}{}:
		default:
			l.waiting = append(l.waiting, waiter{fd, from, l.now.Add(l.t.b.Config().QueueTimeout)})
			return
		}
	}
	l.mode.take(fd, from)
}

// admitWaiting gives free --max-conns slots to connections waiting for one.
func (l *loop) admitWaiting() {
	for len(l.waiting) > 0 {
		select {
		case l.t.b.slots <- struct{}{}:
			w := l.waiting[0]
			l.waiting = l.waiting[1:]
			l.mode.take(w.fd, w.from)
		default:
			return
		}
	}
}

// ended is a client connection the mode took being done: its slot is free.
func (l *loop) ended() {
	l.load.Add(-1)
	if l.t.b.slots != nil {
		<-l.t.b.slots
	}
}

// sweep runs the mode's timeouts, refuses waits over --max-conns that ran
// out, and resumes accepting after a pause.
func (l *loop) sweep() {
	l.mode.sweep()
	kept := l.waiting[:0]
	for _, w := range l.waiting {
		if l.now.After(w.until) {
			l.load.Add(-1)
			l.mode.refuse(w.fd, w.from)
		} else {
			kept = append(kept, w)
		}
	}
	l.waiting = kept
	if !l.listening && !l.pausedTo.IsZero() && l.now.After(l.pausedTo) && !l.t.stopAccepting.Load() {
		if l.ctl(unix.EPOLL_CTL_ADD, l.t.lnfd, unix.EPOLLIN) == nil {
			l.listening, l.pausedTo = true, time.Time{}
		}
	}
}

// connect starts a non-blocking connect to addr.
func (l *loop) connect(addr string) (int, error) {
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

// writeSome writes p to fd until it is all written or the socket is full,
// and returns what is left; err is a failure of the connection, never
// EAGAIN.
func writeSome(fd int, p []byte) ([]byte, error) {
	for len(p) > 0 {
		n, err := rawsys.Write(fd, p)
		switch err {
		case nil:
			p = p[n:]
		case unix.EINTR:
		case unix.EAGAIN:
			return p, nil
		default:
			return p, err
		}
	}
	return p, nil
}

// own records w as the handler of fd's events.
func (l *loop) own(fd int, w watched) {
	for len(l.sockets) <= fd {
		l.sockets = append(l.sockets, make([]watched, len(l.sockets)+64)...)
	}
	l.sockets[fd] = w
}

// disown forgets fd and closes it after the round's events: until then
// its number cannot be given to a new socket, so an event of this round
// still queued for the old socket cannot reach the new one.
func (l *loop) disown(fd int) {
	if fd < 0 {
		return
	}
	if fd < len(l.sockets) {
		l.sockets[fd] = nil
	}
	l.closing = append(l.closing, fd)
}

func (l *loop) closeNow() {
	for _, fd := range l.closing {
		rawsys.Close(fd) // also takes it out of the epoll set
	}
	l.closing = l.closing[:0]
}

// interest is what epoll is told to report for one socket, kept so that
// an unchanged wish costs no system call.
type interest struct {
	events     uint32
	registered bool
}

// set tells epoll that fd now waits for want (none: stays in the set,
// reporting only errors and hang-ups).
func (l *loop) set(fd int, in *interest, want uint32) {
	if fd < 0 || in.registered && want == in.events {
		return
	}
	op := unix.EPOLL_CTL_MOD
	if !in.registered {
		op = unix.EPOLL_CTL_ADD
	}
	if l.ctl(op, fd, want) == nil {
		in.registered, in.events = true, want
	}
}

// unset takes fd out of the epoll set.
func (l *loop) unset(fd int, in *interest) {
	if in.registered {
		l.ctl(unix.EPOLL_CTL_DEL, fd, 0)
	}
	*in = interest{}
}
