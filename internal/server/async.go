package server

import (
	"context"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/budget"
	"loadlab/internal/evloop"
	"loadlab/internal/httpx"
	"loadlab/internal/rawsys"
)

// asyncServer is the event-loop model: evloop's loops, one per core, read
// what a connection sent, run it through the session and write the answer
// without ever blocking. A connection whose answers are not being taken is
// not read further: its socket is watched for room to write only, so the
// client's own sends stall in the kernel (backpressure), and what one
// connection holds is bounded by its input limit and outHigh.
type asyncServer struct {
	core  *core
	addr  net.Addr
	lnfd  int // the listener, out of Go's poller (evloop.DetachListener)
	group *evloop.Group
	open  atomic.Int64
	done  chan struct{}
}

// outHigh is how much output a connection gathers from pipelined requests
// before it stops parsing and writes; with a large body or a file pending
// it parses nothing more until that is sent.
const outHigh = 64 << 10

// lingerFor bounds the lingering close: after a refusal, input the client
// still sends is read and dropped for this long, so that the kernel does
// not answer it with a reset that would destroy the refusal in flight.
const lingerFor = 2 * time.Second

func startAsync(c *core) (Server, error) {
	if c.cfg.TLS != nil {
		return startBlocking(c) // TLS runs on goroutines: see tls.go
	}
	ln, err := listen(c.cfg.Listen, c.cfg.ReusePort)
	if err != nil {
		return nil, err
	}
	lnfd, err := evloop.DetachListener(ln)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s := &asyncServer{core: c, addr: ln.Addr(), lnfd: lnfd, done: make(chan struct{})}
	cfg := &c.cfg
	sweep := min(cfg.HeaderTimeout, cfg.IdleTimeout, cfg.WriteTimeout) / 4
	s.group, err = evloop.Start(lnfd, evloop.Config{
		Loops:      cfg.Loops,
		SweepEvery: max(10*time.Millisecond, min(sweep, 100*time.Millisecond)),
		NagleOn:    true, // until a connection is kept alive: see parse
		Panicked:   func(p any, stack []byte) { c.panicked("connection", p, stack) },
	}, func(l *evloop.Loop) evloop.Handler {
		return &asyncLoop{s: s, l: l, conns: map[*asyncConn]struct{}{}}
	})
	if err != nil {
		unix.Close(lnfd)
		return nil, err
	}
	return s, nil
}

func (s *asyncServer) Addr() net.Addr        { return s.addr }
func (s *asyncServer) Done() <-chan struct{} { return s.done }

// Shutdown stops accepting, closes idle connections, lets the others
// finish their answer (with "Connection: close") and, when ctx ends
// first, closes them.
func (s *asyncServer) Shutdown(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	s.group.Stop(func() { unix.Close(s.lnfd) }, s.core.cfg.ListenerClosed, ctx.Done())
	close(s.done)
	return ctx.Err()
}

// asyncLoop is one loop's share of the server: its connections.
type asyncLoop struct {
	s     *asyncServer
	l     *evloop.Loop
	conns map[*asyncConn]struct{}
}

// asyncConn is one connection; only its loop touches it.
type asyncConn struct {
	h     *asyncLoop
	fd    int
	sess  *session
	epoll evloop.Interest

	in      []byte // input not parsed yet
	held    int64  // of the server's input budget, for in
	sent    int    // of sess.out, already written
	body    []byte // a large in-memory body, written after sess.out
	stream  io.ReadCloser
	file    *os.File // stream, when it is a file: sendfile
	left    int64    // of stream, still to send; < 0: to its end
	chunked bool     // stream goes out in chunked encoding

	stalled    bool      // parsing stopped for output to drain; input may hold whole requests
	closeAfter bool      // close once the output is written
	eof        bool      // the client sent FIN
	linger     bool      // closing: reading and dropping until the client's FIN
	active     time.Time // last read, or last write progress
}

// Take starts serving a new connection, reading at once: the request is
// usually there already.
func (h *asyncLoop) Take(fd int, from net.Addr) {
	s := h.s
	now := h.l.Now()
	if max := s.core.cfg.MaxConns; max > 0 && s.open.Load() >= int64(max) {
		rawsys.Write(fd, s.core.serviceUnavailable("too many open connections"))
		rawsys.Close(fd)
		h.l.Ended()
		return
	}
	s.open.Add(1)
	c := &asyncConn{h: h, fd: fd, sess: s.core.getSession(from), active: now}
	c.sess.answered(now) // the first head is awaited from now
	h.conns[c] = struct{}{}
	h.l.Own(fd, c)
	if h.l.Stopping() {
		c.close()
		return
	}
	c.Ready(unix.EPOLLIN)
}

// Refuse is never called: serve has no admission queue.
func (h *asyncLoop) Refuse(fd int, _ net.Addr) { rawsys.Close(fd) }

// Fail closes the connection after a panic.
func (c *asyncConn) Fail() { c.close() }

// Ready handles what epoll reported.
func (c *asyncConn) Ready(events uint32) {
	if events&unix.EPOLLERR != 0 {
		c.close()
		return
	}
	if c.linger {
		c.drop()
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP) != 0 && !c.pending() && !c.closeAfter && !c.eof {
		if !c.read() {
			return
		}
	}
	c.advance()
}

// read takes what arrived and serves the whole requests in it; false when
// the connection was closed.
func (c *asyncConn) read() bool {
	buf := c.h.l.Buf()
	n, err := rawsys.Read(c.fd, buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return true
	case err != nil:
		c.close()
		return false
	case n == 0:
		c.eof = true
		return true
	}
	c.active = c.h.l.Now()
	c.sess.arrived(c.active, len(c.in))
	if len(c.in) == 0 {
		// Parse straight from the loop's buffer; keep only what is left.
		used := c.process(buf[:n])
		c.in = append(c.in, buf[used:n]...)
		return true
	}
	if len(c.in)+n > c.h.s.core.maxInput() {
		c.refuse(&httpx.Error{Status: 413, Reason: "request larger than the limit"})
		return true
	}
	if !c.h.s.core.inputs.Hold(&c.held, max(len(c.in)+n, c.sess.parser.Expected())) {
		c.refuse(errInputBudget)
		return true
	}
	c.in = append(c.in, buf[:n]...)
	c.in = c.in[:copy(c.in, c.in[c.process(c.in):])]
	c.keepInput()
	return true
}

// keepInput lets a large input buffer go once the requests it held are
// served, and holds of the budget only what is left.
func (c *asyncConn) keepInput() {
	if cap(c.in) > budget.Free && len(c.in) <= budget.Free {
		c.in = append([]byte(nil), c.in...)
	}
	c.h.s.core.inputs.Hold(&c.held, len(c.in)) // less than before: never refused
}

// process serves the whole requests at the start of data until the output
// gathered reaches outHigh or a body must be sent first, and returns how
// many bytes it used.
func (c *asyncConn) process(data []byte) int {
	sess := c.sess
	used := 0
	c.stalled = false
	for !c.closeAfter {
		if c.body != nil || c.stream != nil || len(sess.out)-c.sent >= outHigh {
			c.stalled = used < len(data)
			break
		}
		req, n, err := sess.next(data[used:])
		used += n
		if err == errNotProxied {
			c.closeAfter = true // not from a proxy that speaks the protocol: nothing to answer
			return len(data)
		}
		if err != nil {
			c.refuse(err.(*httpx.Error))
			return len(data)
		}
		if req == nil {
			break
		}
		rep := sess.respond(req, c.h.l.Stopping())
		c.body = rep.body
		if rep.stream != nil {
			c.stream, c.left, c.chunked = rep.stream, rep.size, rep.chunked
			c.file, _ = rep.stream.(*os.File)
		}
		if !rep.keepAlive {
			c.closeAfter = true
			c.linger = used < len(data) // the client sent more than is answered
			return len(data)
		}
		if sess.served == 1 {
			// Kept alive: from now on a small answer may follow one not
			// yet acknowledged, which Nagle's algorithm would hold back
			// until the ACK (delayed up to 40 ms).
			rawsys.SetNoDelay(c.fd)
		}
		sess.answered(c.h.l.Now())
	}
	if sess.parser.NeedsContinue() {
		sess.out = append(sess.out, httpx.Continue...)
	}
	return used
}

// refuse answers a request the parser refused, then closes, lingering.
func (c *asyncConn) refuse(e *httpx.Error) {
	c.sess.refuse(e)
	c.closeAfter, c.linger = true, true
}

// pending reports whether output waits to be written.
func (c *asyncConn) pending() bool {
	return c.sent < len(c.sess.out) || c.body != nil || c.stream != nil
}

// advance writes what is pending, serves input that waited for it, and
// tells epoll what the connection waits for next.
func (c *asyncConn) advance() {
	for {
		if c.pending() {
			if !c.flush() {
				return
			}
			if c.pending() {
				c.h.l.Set(c.fd, &c.epoll, unix.EPOLLOUT) // and read nothing meanwhile
				return
			}
			c.sess.answered(c.h.l.Now()) // idle from the end of the answer
		}
		switch {
		case c.closeAfter:
			c.finish()
			return
		case c.stalled:
			c.in = c.in[:copy(c.in, c.in[c.process(c.in):])]
			c.keepInput()
			continue
		case c.eof:
			c.close() // a request cut short by the FIN cannot be finished
			return
		case c.h.l.Stopping() && len(c.in) == 0:
			c.close() // draining: idle once more, so done
			return
		}
		c.h.l.Set(c.fd, &c.epoll, unix.EPOLLIN)
		return
	}
}

// flush writes pending output until done or the socket is full; false when
// the connection was closed.
func (c *asyncConn) flush() bool {
	out := c.sess.out[c.sent:]
	for len(out) > 0 || c.body != nil {
		var n int
		var err error
		if c.body != nil {
			n, err = rawsys.Writev(c.fd, out, c.body)
		} else {
			n, err = rawsys.Write(c.fd, out)
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			c.close()
			return false
		}
		c.active = c.h.l.Now()
		c.sent += min(n, len(out))
		if n -= len(out); n >= 0 && c.body != nil {
			c.body = c.body[n:]
			if len(c.body) == 0 {
				c.body = nil
			}
		}
		out = c.sess.out[c.sent:]
	}
	c.sess.out, c.sent = c.sess.out[:0], 0
	if c.stream != nil {
		return c.sendStream()
	}
	return true
}

// sendStream sends the file being served: sendfile until the socket is
// full, or, for another kind of stream, a piece at a time through out.
func (c *asyncConn) sendStream() bool {
	if c.file != nil && !c.chunked && c.left >= 0 {
		for c.left > 0 {
			n, err := unix.Sendfile(c.fd, int(c.file.Fd()), nil, int(min(c.left, 1<<20)))
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return true
			}
			if err != nil || n == 0 { // n == 0: the file shrank under us
				c.close()
				return false
			}
			c.active = c.h.l.Now()
			c.left -= int64(n)
		}
		c.endStream()
		return true
	}
	piece := c.h.l.Buf()
	if c.left >= 0 {
		piece = piece[:min(int64(len(piece)), c.left)]
	}
	n, err := io.ReadFull(c.stream, piece)
	if n > 0 {
		if c.chunked {
			c.sess.out = httpx.AppendChunk(c.sess.out, piece[:n])
		} else {
			c.sess.out = append(c.sess.out, piece[:n]...)
		}
		if c.left > 0 {
			c.left -= int64(n)
		}
	}
	switch {
	case c.left == 0, c.left < 0 && err != nil && (err == io.EOF || err == io.ErrUnexpectedEOF):
		if c.chunked {
			c.sess.out = append(c.sess.out, "0\r\n\r\n"...)
		}
		c.endStream()
	case err != nil:
		c.close()
		return false
	}
	return true
}

func (c *asyncConn) endStream() {
	c.stream.Close()
	c.stream, c.file = nil, nil
}

// finish ends a connection whose last answer is written: at once, or by a
// lingering close when the client may still be sending.
func (c *asyncConn) finish() {
	if !c.linger || c.eof {
		c.close()
		return
	}
	rawsys.ShutdownWrite(c.fd)
	c.active = c.h.l.Now()
	c.h.l.Set(c.fd, &c.epoll, unix.EPOLLIN)
}

// drop reads and drops what a lingering client sends, until its FIN.
func (c *asyncConn) drop() {
	n, err := rawsys.Read(c.fd, c.h.l.Buf())
	if n == 0 && err == nil || err != nil && err != unix.EAGAIN && err != unix.EINTR {
		c.close()
	}
}

// close ends the connection at once.
func (c *asyncConn) close() {
	h := c.h
	if c.fd < 0 {
		return
	}
	if c.stream != nil {
		c.endStream()
	}
	delete(h.conns, c)
	h.l.Disown(c.fd)
	h.l.Ended()
	h.s.open.Add(-1)
	h.s.core.inputs.Release(&c.held)
	c.fd = -1
	c.body = nil
	c.sess.out = c.sess.out[:0]
	h.s.core.putSession(c.sess)
	c.sess = nil
}

// Sweep ends connections past their deadline: a head not received in
// time is answered 408; an idle client, a body that stopped arriving, a
// client that does not take its answer, and a lingering close that ran
// out are closed. It returns the earliest deadline of those left, or zero
// when none is open: an idle keep-alive connection costs its loop no
// wake until its timeout, as in nginx's timer tree.
func (h *asyncLoop) Sweep() time.Time {
	cfg := &h.s.core.cfg
	now := h.l.Now()
	dl := h.l.Deadlines()
	for c := range h.conns {
		switch {
		case c.linger && c.closeAfter && !c.pending():
			if dl.Passed(c.active, lingerFor) {
				c.close()
			}
		case c.pending():
			if dl.Passed(c.active, cfg.WriteTimeout) {
				c.close()
			}
		case h.l.Stopping() && c.idleForStop(now):
			c.close()
		default: // waiting for input: the session says how long
			deadline, answer := c.sess.readDeadline(len(c.in))
			switch {
			case !now.After(deadline):
				dl.Due(deadline)
			case answer:
				c.refuse(timeoutError)
				c.advance()
				dl.Soon() // its answer and lingering close have deadlines of their own
			default:
				c.close()
			}
		}
	}
	if h.l.Stopping() && len(h.conns) > 0 {
		dl.Soon() // a fresh connection is closed once its grace is over
	}
	return dl.Next()
}

// Stopping closes the connections waiting for a request; the others
// finish what they are doing, answered with "Connection: close".
func (h *asyncLoop) Stopping() {
	for c := range h.conns {
		if c.idleForStop(h.l.Now()) {
			c.close()
		}
	}
}

// freshGrace is how long, once a stop has begun, a connection that has not
// sent its first request yet is given to send it: it was accepted (from
// the backlog, perhaps) with its request on the way, and closing it would
// lose that request. nginx closes it at once.
const freshGrace = 250 * time.Millisecond

// idleForStop reports whether a stop may close c now: it waits for a
// request between others (a kept-alive client, which retries on a new
// connection as HTTP allows), or has sent none within freshGrace.
func (c *asyncConn) idleForStop(now time.Time) bool {
	if c.pending() || len(c.in) > 0 || c.closeAfter {
		return false
	}
	return c.sess.served > 0 || now.Sub(c.active) > freshGrace
}

// CloseAll closes every connection: the grace is over.
func (h *asyncLoop) CloseAll() {
	for c := range h.conns {
		c.close()
	}
}
