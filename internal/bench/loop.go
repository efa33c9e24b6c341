package bench

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/evloop"
	"loadlab/internal/rawsys"
)

// loop is one core's share of a run: a handler on one of evloop's client
// loops, driving its connections with non-blocking sockets, as wrk does.
// Go's net package costs a new connection a dozen system calls and two
// goroutine switches; a loop costs it socket, connect, epoll_ctl, write,
// read and close. Its sockets are edge-triggered, unlike serve's and
// balance's: a client's socket wants both directions at once for its
// whole life, so one epoll_ctl registers it and none ever changes it
// (level-triggered, every socket writable and waiting for its answer
// would be reported every round).
type loop struct {
	r     *run
	ev    *evloop.Loop
	sa    *rawsys.Sockaddr
	conns []*conn
	more  []*conn // read their turn's share and may have more: read on after this round
	live  int     // connections not yet retired
	stats workerStats
	rec   recorder
}

// conn is one client connection's state machine, and the socket evloop
// reports to.
type conn struct {
	l       *loop
	fd      int // -1 when closed
	state   connState
	reused  bool // the socket already carried a response: a close now is the server's idle close
	retried bool // one silent reconnect per request, as ab makes
	p       parser

	begin, connected, written, firstByte time.Time
	deadline                             time.Time
	sent                                 int // request bytes written
	wakeAt                               time.Time
}

type connState int

const (
	idle     connState = iota
	sleeping           // rate mode: waiting for its send time
	connecting
	writing
	reading
	retired
)

func newLoop(r *run, ev *evloop.Loop, n int) *loop {
	l := &loop{r: r, ev: ev, rec: recorder{to: r.coll}, sa: rawsys.NewSockaddr(r.addr.IP, r.addr.Port)}
	for range n {
		l.conns = append(l.conns, &conn{l: l, fd: -1})
	}
	l.live = n
	return l
}

// Start begins every connection's first request.
func (l *loop) Start() {
	for _, c := range l.conns {
		l.next(c)
	}
	l.checkDone()
}

// Next is when the first sleeping connection (rate mode) is due; at once
// when some connection has more to read.
func (l *loop) Next() time.Time {
	var next time.Time
	if len(l.more) > 0 {
		return l.ev.Now()
	}
	if l.r.w.Rate > 0 {
		for _, c := range l.conns {
			if c.state == sleeping && (next.IsZero() || c.wakeAt.Before(next)) {
				next = c.wakeAt
			}
		}
	}
	return next
}

// Tick follows every wait: a stopped run retires every connection; in
// rate mode, those whose time has come send.
func (l *loop) Tick(time.Time) {
	if l.r.stop.Load() {
		for _, c := range l.conns {
			l.retire(c)
		}
	}
	more := l.more
	l.more = nil
	for _, c := range more {
		if c.state == reading {
			l.read(c)
		}
	}
	if l.r.w.Rate > 0 {
		now := time.Now()
		for _, c := range l.conns {
			if c.state == sleeping && !now.Before(c.wakeAt) {
				l.send(c)
			}
		}
	}
	l.checkDone()
}

// checkDone ends the loop once every connection has retired.
func (l *loop) checkDone() {
	if l.live == 0 {
		l.rec.flush()
		l.ev.Done()
	}
}

// Ready handles epoll's news for c.
func (c *conn) Ready(uint32) { c.l.ready(c) }

// Fail ends c's attempt after a panic in Ready.
func (c *conn) Fail() { c.l.failed(c, exception, errPanic) }

var errPanic = errors.New("panic in the client")

// sweepEvery is how often deadlines are checked; a timeout fires within
// this much of the -s time.
const sweepEvery = 50 * time.Millisecond

// Sweep fails what outlived -s.
func (l *loop) Sweep() {
	now := time.Now()
	for _, c := range l.conns {
		if (c.state == connecting || c.state == writing || c.state == reading) && now.After(c.deadline) {
			l.failed(c, receiveFailed, os.ErrDeadlineExceeded)
		}
	}
}

// next starts c's next request, or retires it when the run has no more.
func (l *loop) next(c *conn) {
	if !l.r.take() {
		l.retire(c)
		return
	}
	c.retried = false
	c.begin = time.Now()
	if l.r.w.Rate > 0 {
		// The request's place in the schedule, not when a connection was
		// free for it, is where its latency starts.
		i := l.r.scheduled.Add(1) - 1
		c.begin = l.r.start.Add(time.Duration(float64(i) / l.r.w.Rate * float64(time.Second)))
		if c.begin.After(time.Now()) {
			c.state, c.wakeAt = sleeping, c.begin
			return
		}
	}
	l.send(c)
}

// send writes the request on c's connection, opening one if needed.
func (l *loop) send(c *conn) {
	c.deadline = time.Now().Add(l.r.w.Timeout)
	c.p.reset(l.r.noBody, l.r.server.Load() == nil)
	c.sent, c.firstByte = 0, time.Time{}
	if c.fd >= 0 {
		c.connected = c.begin // a reused connection's connect time is zero, as in ab
		c.state = writing
		l.write(c)
		return
	}
	c.reused = false
	fd, err := rawsys.Socket(l.sa.Family)
	if err != nil {
		l.failed(c, connectFailed, os.NewSyscallError("socket", err))
		return
	}
	// No TCP_NODELAY: a request goes out in one write, and Nagle never
	// holds back the first segment of a send.
	c.fd = fd
	if err := l.r.prepare(fd); err != nil {
		l.failed(c, connectFailed, err)
		return
	}
	if err := l.ev.Add(fd, c, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET); err != nil {
		l.failed(c, connectFailed, os.NewSyscallError("epoll_ctl", err))
		return
	}
	switch err := rawsys.Connect(fd, l.sa); err {
	case nil, unix.EINPROGRESS:
		// On loopback the handshake is usually over by now: try the write
		// at once rather than wait a round of epoll for EPOLLOUT.
		c.state = connecting
		l.write(c)
	default:
		l.failed(c, connectFailed, os.NewSyscallError("connect", err))
	}
}

// ready handles epoll's news for c.
func (l *loop) ready(c *conn) {
	switch c.state {
	case connecting, writing:
		l.write(c)
	case reading:
		l.read(c)
	}
}

// write sends what is left of the request. The first write on a new
// socket also learns how its connect went: ENOTCONN or EAGAIN while the
// handshake is under way, the connect's own error if it failed.
func (l *loop) write(c *conn) {
	req := l.r.req
	for c.sent < len(req) {
		n, err := rawsys.Write(c.fd, req[c.sent:])
		switch {
		case err == unix.EAGAIN || err == unix.ENOTCONN && c.state == connecting:
			return // edge-triggered: EPOLLOUT comes when it can go on
		case err != nil && c.state == connecting:
			l.failed(c, connectFailed, os.NewSyscallError("connect", err))
			return
		case err != nil:
			l.failed(c, writeFailed, os.NewSyscallError("write", err))
			return
		}
		if c.state == connecting {
			c.connected, c.state = time.Now(), writing
		}
		c.sent += n
	}
	c.written = time.Now()
	c.state = reading
	l.read(c) // the answer may be there already; edge-triggered epoll would not say so again
}

// readsPerTurn bounds the reads of one connection in a round. Its socket
// is edge-triggered, so it is read to EAGAIN; but a server that sends
// without pause (an endless body, interim answers without end) would
// never let it get there, and the loop would neither serve its other
// connections nor sweep for -s. It reads on in the next round instead.
const readsPerTurn = 16

func (l *loop) read(c *conn) {
	buf := l.ev.Buf()
	for reads := 1; ; reads++ {
		if reads > readsPerTurn {
			l.more = append(l.more, c)
			return
		}
		n, err := rawsys.Read(c.fd, buf)
		switch {
		case err == unix.EAGAIN:
			return
		case err == unix.EINTR:
			continue
		case err != nil:
			l.failed(c, receiveFailed, os.NewSyscallError("read", err))
			return
		case n == 0:
			if !c.p.started() {
				l.failed(c, receiveFailed, io.EOF)
				return
			}
			c.p.eof()
			l.done(c)
			return
		}
		if c.firstByte.IsZero() {
			c.firstByte = time.Now()
			l.r.traceHead(buf[:n])
		}
		finished, err := c.p.feed(buf[:n])
		if err != nil {
			l.failed(c, exception, err)
			return
		}
		if finished {
			l.done(c)
			return
		}
	}
}

// done records a complete response and moves c on to its next request.
func (l *loop) done(c *conn) {
	end := time.Now()
	res := &c.p.res
	if !res.keepAlive || !l.r.w.KeepAlive {
		l.closeFD(c)
	} else {
		c.reused = true
	}
	l.r.complete(&l.stats, &l.rec, sample{
		start:   c.begin,
		connect: c.connected.Sub(c.begin).Microseconds(),
		waiting: c.firstByte.Sub(c.written).Microseconds(),
		total:   end.Sub(c.begin).Microseconds(),
	}, res, end)
	c.state = idle
	l.next(c)
}

// failed ends c's attempt. A kept-alive connection the server closed while
// idle gets one silent retry on a new connection, as in ab; anything else
// is counted, and has used its ticket: complete and failed add up to n
// at most.
func (l *loop) failed(c *conn, out outcome, err error) {
	reused := c.reused
	l.closeFD(c)
	if reused && !c.retried && (out == writeFailed || out == receiveFailed && !c.p.started() && !isTimeout(err)) {
		c.retried = true
		l.send(c)
		return
	}
	l.r.fail(&l.stats, out, err)
	c.state = idle
	l.next(c)
}

func (l *loop) closeFD(c *conn) {
	if c.fd >= 0 {
		l.ev.Disown(c.fd) // closed after the round's events; closing takes it out of the epoll set
		c.fd = -1
	}
	c.reused = false
}

func (l *loop) retire(c *conn) {
	if c.state == retired {
		return
	}
	l.closeFD(c)
	c.state = retired
	l.live--
	if l.live == 0 {
		l.checkDone()
	}
}

// isTimeout reports a request that outlived -s.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
