// Package evloop is loadlab's reactor: event loops over the kernel's epoll,
// level triggered, on non-blocking sockets, one per core, that serve the
// connections of one listening socket. The first loop accepts and gives
// each connection to the least loaded loop; a Handler per loop decides
// what to do with it, and a Socket per descriptor is told what epoll
// reported. Everything the loops' rules need lives here: the descriptor
// table, accept and hand-over, --max-conns admission, deferred close,
// write-until-EAGAIN, the sweep clock, the yield, pausing accept when
// descriptors run out, a panic kept to its connection, and a graceful stop.
//
// Level triggering, as HAProxy: a loop that read less than its buffer
// knows the socket is drained, and epoll tells it when there is more; a
// socket whose output is not being taken is simply not asked for input
// (backpressure is one epoll_ctl).
package evloop

import (
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
)

// Handler is what one loop does with connections.
type Handler interface {
	// Take makes an accepted connection the handler's; it holds a
	// MaxConns slot when there is a limit, which Loop.Ended gives back.
	Take(fd int, from net.Addr)
	// Refuse turns away a connection that waited too long for a slot.
	Refuse(fd int, from net.Addr)
	// Sweep ends what is past its deadline, and returns the next deadline
	// of what it holds: the moment, or any time up to now for "soon", or
	// zero for nothing that can come due. The loop sleeps until then,
	// unless an event comes first; after events, which may set earlier
	// deadlines, it sweeps again within Config.SweepEvery.
	Sweep() time.Time
	Stopping() // the group stopped accepting: finish what is open, take nothing new
	CloseAll() // the grace is over: close everything now
}

// Socket is a descriptor in a loop's epoll set.
type Socket interface {
	// Ready is told what epoll reported for the socket.
	Ready(events uint32)
	// Fail releases the socket's connection after Ready panicked: its
	// state cannot be trusted, so it is closed, and the loop goes on.
	Fail()
}

// Config is what a Group needs besides its listener.
type Config struct {
	Loops int // event loops; 0 means GOMAXPROCS
	// Slots, when not nil, holds a token for every connection taken:
	// MaxConns of them. A connection over the limit waits for a token
	// until QueueTimeout says, then is refused.
	Slots        chan struct{}
	QueueTimeout func() time.Duration
	SweepEvery   time.Duration // 0 means 100 ms
	// NagleOn leaves Nagle's algorithm on for accepted connections, for
	// the handler to turn off (rawsys.SetNoDelay) when it needs: serve
	// does once a connection is kept alive, as nginx's tcp_nodelay does,
	// and so saves a system call on every one-request connection (a
	// close pushes out what Nagle holds). Otherwise it is turned off at
	// accept: the balancer relays bytes as they come.
	NagleOn bool
	// Panicked is told of a panic in a Socket's Ready, after the socket
	// was failed; nil logs it with slog.
	Panicked func(p any, stack []byte)
}

// Group is the event loops serving one listener.
type Group struct {
	cfg   Config
	lnfd  int
	loops []*Loop
	wg    sync.WaitGroup

	stopAccepting atomic.Bool    // Stop: take no more connections
	unlistened    sync.WaitGroup // a loop is done once it has left the listener
	closeAll      atomic.Bool    // Stop's grace is over: close what is open
	closed        atomic.Bool    // Stop has closed the listener
	closeOnce     sync.Once
	closeListener func()       // Stop's, for the acceptor to call the moment it has drained the backlog
	queued        atomic.Int64 // connections waiting for a MaxConns slot
}

// Start runs the loops on the listening socket lnfd (non-blocking), with a
// handler for each made by newHandler; with lnfd < 0 they have no
// listener (RunClients).
func Start(lnfd int, cfg Config, newHandler func(*Loop) Handler) (*Group, error) {
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 100 * time.Millisecond
	}
	if cfg.QueueTimeout == nil {
		cfg.QueueTimeout = func() time.Duration { return time.Second }
	}
	n := cfg.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	g := &Group{cfg: cfg, lnfd: lnfd}
	for range n {
		l, err := newLoop(g)
		if err != nil {
			for _, l := range g.loops {
				l.release()
			}
			return nil, err
		}
		l.handler = newHandler(l)
		l.timer, _ = l.handler.(timer)
		g.loops = append(g.loops, l)
	}
	g.unlistened.Add(len(g.loops))
	for _, l := range g.loops {
		g.wg.Go(l.run)
	}
	return g, nil
}

// DetachListener takes a *net.TCPListener's socket out of Go's poller,
// for Start: it returns a duplicate of the descriptor, the caller's to
// close (unix.Close) once Stop has left it, and closes ln, whose Addr
// still answers. Left in Go's poller as well as in the first loop's
// epoll set, every connection that arrived also woke the runtime's
// netpoll thread, for nothing: 0.42 context switches per new connection
// against 0.06, and 34 µs of CPU against 24 (docs/PERFORMANCE.md).
func DetachListener(ln net.Listener) (int, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return -1, &net.OpError{Op: "listen", Net: "tcp", Err: unix.EINVAL}
	}
	addr := ln.Addr()
	fd, err := rawsys.Detach(tl) // ln's Addr still answers after
	if err != nil {
		return -1, &net.OpError{Op: "listen", Net: "tcp", Addr: addr, Err: err}
	}
	return fd, nil
}

// Stop ends accepting at once, calls closeListener once no loop touches
// the listener any more, and ends the loops once their connections are
// done — or, when done is closed first, after closing those. It returns
// when the loops have ended. closed, when not nil, runs after the
// listener's close and before the handlers are told of the stop, while
// the loops go on serving: a process that shares its port with others
// waits there until theirs are closed too (prefork).
func (g *Group) Stop(closeListener, closed func(), done <-chan struct{}) {
	g.closeListener = closeListener
	g.stopAccepting.Store(true)
	g.wake()
	g.unlistened.Wait()
	g.closeOnce.Do(g.closeListener) // if the acceptor did not (accept paused)
	if closed != nil {
		closed()
	}
	g.closed.Store(true)
	g.wake() // the handlers may close their idle connections now
	finished := make(chan struct{})
	go func() { g.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-done:
		g.closeAll.Store(true)
		g.wake()
		<-finished
	}
}

// Stopping reports whether Stop has begun.
func (g *Group) Stopping() bool { return g.stopAccepting.Load() }

// Each runs f on every loop's handler from the loop's own goroutine, and
// returns when all have run it: the way to reach a loop's connections
// from outside. The loops run f at the same time.
func (g *Group) Each(f func(Handler)) {
	var wg sync.WaitGroup
	for _, l := range g.loops {
		wg.Add(1)
		if !l.post(func() { f(l.handler); wg.Done() }) {
			wg.Done() // that loop has ended, and its connections with it
		}
	}
	wg.Wait()
}

func (g *Group) wake() {
	for _, l := range g.loops {
		l.knock()
	}
}

// Loop is one event loop and the connections it owns; only its own
// goroutine touches them.
type Loop struct {
	g          *Group
	handler    Handler
	epfd       int
	wakefd     int          // an eventfd: a knock from Stop, or from a loop handing over a connection
	load       atomic.Int64 // connections held (and handed over, not yet taken)
	inboxMu    sync.Mutex
	inbox      []handedOff
	posted     []func()
	exited     bool // run has returned: nothing posted will run
	events     []unix.EpollEvent
	buf        []byte   // what one read brings, on its way somewhere else
	sockets    []Socket // by descriptor
	closing    []int    // descriptors to close once the round's events are handled
	waiting    []waiter // accepted over MaxConns: admitted when a slot frees, refused when their wait ends
	now        time.Time
	listening  bool      // the listener is in this loop's epoll set (the first loop's, unless paused)
	acceptable bool      // the listener may have connections waiting
	left       bool      // the loop has left the listener for good
	pausedTo   time.Time // accept paused after running out of descriptors
	told       bool      // the handler was told of the stop
	timer      timer     // the handler, when it keeps time of its own
	done       bool      // a client loop's handler is done: end after this round
}

// waiter is a connection waiting for a MaxConns slot.
type waiter struct {
	fd    int
	from  net.Addr
	until time.Time
}

func newLoop(g *Group) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &Loop{g: g, epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, 256), buf: make([]byte, 64<<10)}
	if err := l.ctl(unix.EPOLL_CTL_ADD, wakefd, unix.EPOLLIN); err != nil {
		l.release()
		return nil, err
	}
	if len(g.loops) > 0 || g.lnfd < 0 { // the first loop accepts for all
		return l, nil
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, g.lnfd, unix.EPOLLIN); err != nil {
		l.release()
		return nil, err
	}
	l.listening = true
	return l, nil
}

func (l *Loop) release() {
	l.closeNow()
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
}

// knock wakes the loop, unless it has ended: its eventfd is closed then,
// and the number may be another socket's by now (a knock from Stop once
// wrote its eight bytes into a client's answer that way).
func (l *Loop) knock() {
	l.inboxMu.Lock()
	defer l.inboxMu.Unlock()
	if !l.exited {
		unix.Write(l.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

func (l *Loop) ctl(op, fd int, events uint32) error {
	return rawsys.EpollCtl(l.epfd, op, fd, events, int32(fd))
}

// Now is the time the loop's current round began: cheaper than asking
// the clock for every event, and exact enough for timeouts.
func (l *Loop) Now() time.Time { return l.now }

// Buf is the loop's read buffer (64 KiB), free to use until the handler
// returns to the loop.
func (l *Loop) Buf() []byte { return l.buf }

// Stopping reports whether the group is stopping and its listener is
// closed: answers say "Connection: close" from then, not before, since a
// client that reconnected while the listener was still open would land
// in its backlog and be reset at its close.
func (l *Loop) Stopping() bool { return l.told }

// yieldEvery: a loop that always has work never enters the Go scheduler;
// handing its processor back now and then is cheaper than being preempted.
const yieldEvery = 2 * time.Millisecond

func (l *Loop) run() {
	defer l.release()
	l.now = time.Now()
	every := l.g.cfg.SweepEvery
	// A sweep is due only when something may come due: a loop that holds
	// nothing, or only connections whose deadlines are far off, sleeps in
	// epoll_wait until an event or the deadline. Each wake out of a blocking
	// epoll_wait sets the Go runtime's sysmon polling again (some sixty
	// short sleeps before it rests), so an idle server that woke every
	// sweep cost hundreds of context switches a second, and the lab's
	// twenty of them a fifth of a core and a quarter of the measured
	// system's req/s (docs/PERFORMANCE.md). One sweep follows the start
	// all the same: a client's handler holds what its Start opened before
	// any event.
	nextSweep, nextYield := l.now.Add(every), l.now.Add(yieldEvery)
	if s, ok := l.handler.(starter); ok {
		s.Start()
	}
	for {
		if l.g.stopAccepting.Load() && !l.left {
			l.leave()
		}
		if l.left && !l.told && l.g.closed.Load() {
			// Only now, with nothing left to connect to: a client whose
			// idle connection is closed retries on a new one, which until
			// the listener closed would have landed in its backlog, to be
			// reset there.
			l.told = true
			l.handler.Stopping()
		}
		if l.g.closeAll.Load() {
			l.handler.CloseAll()
		}
		if l.left && l.load.Load() == 0 || l.done { // none held, none handed over; or a client done
			l.inboxMu.Lock()
			l.exited = true
			l.inboxMu.Unlock()
			l.runPosted()
			return
		}
		ms := -1 // no deadline: until an event
		if !nextSweep.IsZero() {
			wait := nextSweep.Sub(l.now)
			if len(l.waiting) > 0 {
				wait = min(wait, 5*time.Millisecond) // a slot may free in another loop
			}
			ms = max(int((wait+time.Millisecond-1)/time.Millisecond), 0) // a sweep may be a little late
		}
		if l.timer != nil {
			if next := l.timer.Next(); !next.IsZero() && (ms < 0 || next.Before(nextSweep)) {
				ms = max(int(next.Sub(time.Now())/time.Millisecond), 0) // a timer may not: the rest of a millisecond is spun
			}
		}
		l.closeNow()
		n, err := unix.EpollWait(l.epfd, l.events, ms)
		if err != nil && err != unix.EINTR {
			continue
		}
		l.now = time.Now()
		if n > 0 && (nextSweep.IsZero() || nextSweep.Sub(l.now) > every) {
			nextSweep = l.now.Add(every) // what happened may have set a deadline
		}
		for _, ev := range l.events[:max(n, 0)] {
			switch fd := int(ev.Fd); {
			case fd == l.g.lnfd:
				l.acceptable = true
			case fd == l.wakefd:
				var b [8]byte
				unix.Read(l.wakefd, b[:])
				l.takeInbox()
			case fd < len(l.sockets) && l.sockets[fd] != nil:
				l.dispatch(l.sockets[fd], ev.Events)
			}
		}
		l.closeNow()
		if l.timer != nil {
			l.timer.Tick(l.now)
		}
		if l.acceptable && l.listening {
			l.accept()
		}
		l.admitWaiting()
		if !nextSweep.IsZero() && !l.now.Before(nextSweep) {
			nextSweep = l.sweep()
			if !nextSweep.IsZero() && nextSweep.Sub(l.now) < every {
				nextSweep = l.now.Add(every)
			}
		}
		if !l.now.Before(nextYield) {
			runtime.Gosched()
			nextYield = l.now.Add(yieldEvery)
		}
	}
}

// dispatch tells s what epoll reported; a panic fails that socket alone.
func (l *Loop) dispatch(s Socket, events uint32) {
	defer func() {
		if p := recover(); p != nil {
			stack := debug.Stack()
			func() {
				defer func() { recover() }() // a Fail that panics too must not end the loop
				s.Fail()
			}()
			if l.g.cfg.Panicked != nil {
				l.g.cfg.Panicked(p, stack)
			} else {
				slog.Error("panic serving a connection; it was closed", "panic", p, "stack", string(stack))
			}
		}
	}()
	s.Ready(events)
}

// leave takes the loop off the listener for good and refuses the waiting;
// the handler is told of the stop once the listener is closed.
func (l *Loop) leave() {
	if l.listening {
		// Take what the backlog holds first: the listener's close would
		// reset those connections, and their clients would count a
		// request lost. What arrives after this is refused at connect.
		for l.accept() {
		}
		l.ctl(unix.EPOLL_CTL_DEL, l.g.lnfd, 0)
		l.listening = false
		// Closed at once, here: a connection that came between the
		// drain and a close on Stop's goroutine would be reset.
		l.g.closeOnce.Do(l.g.closeListener)
	}
	l.left = true
	l.g.unlistened.Done()
	for _, w := range l.waiting {
		l.load.Add(-1)
		l.handler.Refuse(w.fd, w.from)
	}
	l.queue(nil)
}

// sweep runs the handler's timeouts, refuses waits over MaxConns that ran
// out, and resumes accepting after a pause. It returns the next deadline,
// as Handler.Sweep does.
func (l *Loop) sweep() time.Time {
	next := l.handler.Sweep()
	kept := l.waiting[:0]
	for _, w := range l.waiting {
		if l.now.After(w.until) {
			l.load.Add(-1)
			l.handler.Refuse(w.fd, w.from)
		} else {
			kept = append(kept, w)
		}
	}
	l.queue(kept)
	if !l.listening && !l.pausedTo.IsZero() && l.now.After(l.pausedTo) && !l.g.stopAccepting.Load() {
		if l.ctl(unix.EPOLL_CTL_ADD, l.g.lnfd, unix.EPOLLIN) == nil {
			l.listening, l.pausedTo = true, time.Time{}
		}
	}
	if len(l.waiting) > 0 || !l.pausedTo.IsZero() {
		return l.now // soon: a slot may free, accepting resumes
	}
	return next
}

// Connect starts a non-blocking connect to sa.
func (l *Loop) Connect(sa *rawsys.Sockaddr) (int, error) {
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

// WriteSome writes p to fd until it is all written or the socket is full,
// and returns what is left; err is a failure of the connection, never
// EAGAIN.
func WriteSome(fd int, p []byte) ([]byte, error) {
	return WriteSomeWith(rawsys.Write, fd, p)
}

// WriteSomeWith is WriteSome through write, a write(2) of another layer
// that answers as the system call does: TLS's record layer.
func WriteSomeWith(write func(fd int, p []byte) (int, error), fd int, p []byte) ([]byte, error) {
	for len(p) > 0 {
		n, err := write(fd, p)
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

// Own records s as the handler of fd's events.
func (l *Loop) Own(fd int, s Socket) {
	for len(l.sockets) <= fd {
		l.sockets = append(l.sockets, make([]Socket, len(l.sockets)+64)...)
	}
	l.sockets[fd] = s
}

// Add records s as the handler of fd's events and puts fd in the epoll
// set for events, once: for a socket whose wishes never change (bench's,
// edge-triggered).
func (l *Loop) Add(fd int, s Socket, events uint32) error {
	l.Own(fd, s)
	return l.ctl(unix.EPOLL_CTL_ADD, fd, events)
}

// Disown forgets fd and closes it after the round's events: until then
// its number cannot be given to a new socket, so an event of this round
// still queued for the old socket cannot reach the new one. Closing also
// takes it out of the epoll set: no epoll_ctl is needed before.
func (l *Loop) Disown(fd int) {
	if fd < 0 {
		return
	}
	if fd < len(l.sockets) {
		l.sockets[fd] = nil
	}
	l.closing = append(l.closing, fd)
}

func (l *Loop) closeNow() {
	for _, fd := range l.closing {
		rawsys.Close(fd)
	}
	l.closing = l.closing[:0]
}

// Interest is what epoll is told to report for one socket, kept so that
// an unchanged wish costs no system call.
type Interest struct {
	events     uint32
	registered bool
}

// Set tells epoll that fd now waits for want (none: stays in the set,
// reporting only errors and hang-ups).
func (l *Loop) Set(fd int, in *Interest, want uint32) {
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

// Unset takes fd out of the epoll set.
func (l *Loop) Unset(fd int, in *Interest) {
	if in.registered {
		l.ctl(unix.EPOLL_CTL_DEL, fd, 0)
	}
	*in = Interest{}
}
