package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http/httputil"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/budget"
	"loadlab/internal/httpx"
)

// blockingServer is the home of the two models that serve a connection with
// blocking reads and writes on its own goroutine: thread and pool. They
// differ only in who may handle a request: in the thread model every
// connection's goroutine at once; in the pool model at most Workers at a
// time, the others waiting in a queue of at most Queue (503 beyond it).
//
// A pool's connection holds a worker only while its request is handled,
// never while it waits for its client: a worker that kept a connection
// through its reads and writes, as Apache's prefork and worker MPMs keep
// theirs, is taken by as many idle keep-alive connections, slow bodies or
// slow readers as there are workers (four idle clients stalled a pool of
// four for its 60 s idle timeout). Waiting connections stay in Go's
// poller, as the event MPM's and Tomcat's NIO connector's stay in theirs.
type blockingServer struct {
	core     *core
	ln       net.Listener
	conns    connSet
	stopping atomic.Bool   // Shutdown has begun
	draining atomic.Bool   // the listener is closed: answers say close
	workers  chan struct{} // pool only: a token per request being handled
	queued   atomic.Int64  // pool only: requests waiting for a worker
	done     chan struct{}
}

func startBlocking(c *core) (Server, error) {
	ln := c.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = listen(c.cfg.Listen, c.cfg.ReusePort); err != nil {
			return nil, err
		}
	}
	if tl, ok := ln.(*net.TCPListener); ok { // connections as rawConns
		rl, err := newRawListener(tl, c.cfg.HeaderTimeout)
		if err != nil {
			return nil, err
		}
		ln = rl
	}
	s := &blockingServer{core: c, ln: ln, conns: connSet{m: map[*trackedConn]struct{}{}}, done: make(chan struct{})}
	if c.cfg.Model == "pool" {
		s.workers = make(chan struct{}, c.cfg.Workers)
	}
	go s.acceptLoop()
	return s, nil
}

func (s *blockingServer) Addr() net.Addr        { return s.ln.Addr() }
func (s *blockingServer) Done() <-chan struct{} { return s.done }

// AcceptLoop accepts connections on ln and hands each to handle until ln
// is closed. Errors such as running out of file descriptors are waited
// out with a growing pause, as net/http does, rather than spun on or
// taken as the end.
func AcceptLoop(ln net.Listener, handle func(net.Conn)) {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		handle(nc)
	}
}

func (s *blockingServer) acceptLoop() {
	AcceptLoop(s.ln, func(nc net.Conn) {
		if max := s.core.cfg.MaxConns; max > 0 && s.conns.count() >= max {
			go s.core.reject(nc, s.core.serviceUnavailable("too many open connections"))
			return
		}
		go s.serve(s.conns.add(nc))
	})
}

// job is an accepted connection ready for its requests: over TLS, with
// its handshake made.
type job struct {
	tc      *trackedConn // tc.nc is the socket
	conn    net.Conn     // what requests are read from: tc.nc, or TLS over it
	remote  net.Addr     // the client, from the PROXY header when there was one
	proxied bool         // the PROXY header is read already
}

// takeWorker waits for a pool's worker to handle a request, in the queue;
// it reports false, at once, when the queue is full. Outside the pool
// model every request has its own.
func (s *blockingServer) takeWorker() bool {
	if s.workers == nil {
		return true
	}
	select {
	case s.workers <- struct{}{}:
		return true
	default:
	}
	if s.queued.Add(1) > int64(s.core.cfg.Queue) {
		s.queued.Add(-1)
		return false
	}
	s.workers <- struct{}{}
	s.queued.Add(-1)
	return true
}

// handle answers req into sess with a worker; ok is false when none
// could be had (the pool's queue is full). The worker is free again
// before the answer is written: a slow reader holds none.
func (s *blockingServer) handle(sess *session, req *httpx.Request) (rep reply, ok bool) {
	if !s.takeWorker() {
		return reply{}, false
	}
	if s.workers != nil {
		defer func() { <-s.workers }() // even when the handler panics
	}
	return sess.respond(req, s.draining.Load()), true
}

// open makes the job of an accepted connection: the TLS handshake, when
// the server speaks TLS. A connection that fails it is closed.
func (s *blockingServer) open(tc *trackedConn) (job, bool) {
	j := job{tc: tc, conn: tc.nc, remote: tc.nc.RemoteAddr()}
	if s.core.cfg.TLS == nil {
		return j, true
	}
	tlc, remote, err := s.core.startTLS(tc.nc)
	if err != nil {
		s.conns.remove(tc)
		tc.nc.Close() // a failed handshake has nothing to answer
		return j, false
	}
	j.conn, j.remote, j.proxied = tlc, remote, s.core.cfg.AcceptProxy
	return j, true
}

// reject answers a connection the server has no room for and closes it
// without a reset, so the client reads the answer (over TLS, once the
// handshake is made, as nginx answers its 503s).
func (c *core) reject(conn net.Conn, answer []byte) {
	defer conn.Close()
	if _, isTLS := conn.(*tls.Conn); c.cfg.TLS != nil && !isTLS {
		tlc, _, err := c.startTLS(conn)
		if err != nil {
			return
		}
		conn = tlc
	}
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write(answer); err != nil {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
}

// serve is the goroutine of one connection.
func (s *blockingServer) serve(tc *trackedConn) {
	if s.core.cfg.OSThreads {
		// Never unlocked: the thread ends with the goroutine, so each
		// connection costs a real OS thread, as in a C thread-per-connection server.
		runtime.LockOSThread()
	}
	if j, ok := s.open(tc); ok {
		s.work(j)
	}
}

// work serves a job's requests until the client or the server closes.
func (s *blockingServer) work(j job) {
	defer s.conns.remove(j.tc)
	// Over TLS, the close sends close_notify first, as nginx's
	// SSL_shutdown does: OpenSSL 3 clients (ab) take a bare EOF for an
	// error ("unexpected eof while reading").
	defer j.conn.Close()
	defer func() {
		if p := recover(); p != nil {
			s.core.panicked("connection", p, debug.Stack())
		}
	}()
	s.serveConn(j.conn, j.tc, j.remote, j.proxied) // even when draining: its request may be on the way
}

// maxInput bounds a connection's input buffer: the largest head and body the
// limits allow, and room for chunked framing.
func (c *core) maxInput() int {
	return c.cfg.Limits.MaxHead + int(c.cfg.Limits.MaxBody) + 64<<10
}

// serveConn reads requests from nc and answers them in order until the
// client or the server closes.
// remote is the client; proxied says its PROXY header is already read.
func (s *blockingServer) serveConn(nc net.Conn, tc *trackedConn, remote net.Addr, proxied bool) {
	sess := s.core.getSession(remote)
	sess.proxied = sess.proxied || proxied
	defer s.core.putSession(sess)
	if cap(sess.in) < 4096 {
		sess.in = make([]byte, 4096)
	}
	buf := sess.in[:cap(sess.in)]
	var held int64 // of the server's input budget, for buf
	defer func() { sess.in = buf; s.core.inputs.Release(&held) }()
	start, end := 0, 0 // unconsumed input is buf[start:end]
	for {
		req, n, err := sess.next(buf[start:end])
		start += n
		if err == errNotProxied {
			return // not from a proxy that speaks the protocol: nothing to answer
		}
		if err != nil {
			sess.refuse(err.(*httpx.Error))
			s.writeOut(nc, sess)
			return
		}
		if req != nil {
			rep, ok := s.handle(sess, req)
			if !ok {
				sess.out = append(sess.out, s.core.serviceUnavailable("all workers are busy and the queue is full")...)
				s.writeOut(nc, sess)
				return
			}
			if !s.send(nc, sess, rep, start < end) || !rep.keepAlive {
				return
			}
			if rc, ok := tc.nc.(*rawConn); ok && sess.served == 1 {
				rc.keptAlive()
			}
			sess.answered(time.Now())
			continue
		}
		// More input is needed: first send what is ready. A body of
		// known length is reserved whole now, so that once begun it is not
		// refused halfway; the buffer grows into the reservation.
		if len(sess.out) > 0 && !s.writeOut(nc, sess) {
			return
		}
		if !s.core.inputs.Hold(&held, max(len(buf), start+sess.parser.Expected())) {
			sess.refuse(errInputBudget)
			s.writeOut(nc, sess)
			return
		}
		if sess.parser.NeedsContinue() {
			sess.out = append(sess.out, httpx.Continue...)
			if !s.writeOut(nc, sess) {
				return
			}
		}
		fresh := false
		if start == end {
			start, end = 0, 0
			if len(buf) > budget.Free { // a large request is served: let its buffer go
				buf = make([]byte, 4096)
				s.core.inputs.Hold(&held, len(buf))
			}
			// A connection that has had no request yet is not idle: its
			// request may be on the way (async's freshGrace).
			tc.idle.Store(sess.served > 0)
			if s.draining.Load() && sess.served > 0 {
				return
			}
			fresh = s.draining.Load()
		}
		deadline, answer := sess.readDeadline(end - start)
		if fresh {
			deadline = time.Now().Add(freshGrace)
		}
		if end == len(buf) {
			if start > 0 {
				end = copy(buf, buf[start:end])
				start = 0
			} else if len(buf) >= s.core.maxInput() {
				sess.refuse(&httpx.Error{Status: 413, Reason: "request larger than the limit"})
				s.writeOut(nc, sess)
				return
			} else {
				size := 2 * len(buf)
				if exp := sess.parser.Expected(); exp > len(buf) {
					size = exp // the body's length is known, and reserved: no more
				}
				if !s.core.inputs.Hold(&held, size) {
					sess.refuse(errInputBudget)
					s.writeOut(nc, sess)
					return
				}
				buf = append(buf, make([]byte, size-len(buf))...)
			}
		}
		nc.SetReadDeadline(deadline)
		m, err := nc.Read(buf[end:])
		if m > 0 {
			sess.arrived(time.Now(), end-start)
			end += m
			tc.idle.Store(false)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && answer {
				sess.refuse(timeoutError)
				s.writeOut(nc, sess)
			}
			return
		}
	}
}

// inlineStream is the largest streamed body read into the output buffer
// to share a write with its head.
const inlineStream = 64 << 10

// send writes a response. When more pipelined input is waiting and the
// response is small, it waits so that the answers go out in one write.
func (s *blockingServer) send(nc net.Conn, sess *session, rep reply, more bool) bool {
	if rep.stream == nil && rep.body == nil {
		if more && len(sess.out) < 64<<10 {
			return true
		}
		return s.writeOut(nc, sess)
	}
	nc.SetWriteDeadline(time.Now().Add(s.core.cfg.WriteTimeout))
	if rep.body != nil {
		// One writev, no copy of the body.
		var err error
		if rc, ok := nc.(*rawConn); ok {
			err = rc.writev(sess.out, rep.body)
		} else {
			bufs := net.Buffers{sess.out, rep.body}
			_, err = bufs.WriteTo(nc)
		}
		sess.out = sess.out[:0]
		return err == nil
	}
	defer rep.stream.Close()
	if !rep.chunked && rep.size >= 0 && rep.size <= inlineStream {
		// A small body of known length (a proxied response, typically)
		// goes out with its head in one write.
		n := len(sess.out)
		sess.out = slices.Grow(sess.out, int(rep.size))[:n+int(rep.size)]
		if _, err := io.ReadFull(rep.stream, sess.out[n:]); err != nil {
			sess.out = sess.out[:0]
			return false
		}
		return s.writeOut(nc, sess)
	}
	if !s.writeOut(nc, sess) {
		return false
	}
	switch {
	case rep.chunked:
		cw := httputil.NewChunkedWriter(nc)
		if _, err := io.Copy(cw, rep.stream); err != nil {
			return false
		}
		cw.Close()
		_, err := io.WriteString(nc, "\r\n")
		return err == nil
	case rep.size < 0:
		_, err := io.Copy(nc, rep.stream) // to its end; the connection closes after
		return err == nil
	}
	// io.Copy from an *os.File to a *net.TCPConn or a rawConn is sendfile(2).
	n, err := io.Copy(nc, io.LimitReader(rep.stream, rep.size))
	return err == nil && n == rep.size
}

func (s *blockingServer) writeOut(nc net.Conn, sess *session) bool {
	nc.SetWriteDeadline(time.Now().Add(s.core.cfg.WriteTimeout))
	_, err := nc.Write(sess.out)
	sess.out = sess.out[:0]
	return err == nil
}

func (s *blockingServer) Shutdown(ctx context.Context) error {
	if s.stopping.Swap(true) {
		<-s.done
		return nil
	}
	// The listener first, then "Connection: close" and the idle closes:
	// a client told to reconnect before the close would land in the
	// backlog, to be reset by it.
	s.ln.Close()
	if s.core.cfg.ListenerClosed != nil {
		s.core.cfg.ListenerClosed()
	}
	s.draining.Store(true)
	err := s.conns.drain(ctx)
	close(s.done)
	return err
}

// connSet tracks a server's open connections so that a graceful stop can
// close the idle ones at once and wait for the busy ones.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

type trackedConn struct {
	nc   net.Conn
	idle atomic.Bool // waiting for the next request on a keep-alive connection
}

func (cs *connSet) add(nc net.Conn) *trackedConn {
	tc := &trackedConn{nc: nc}
	cs.mu.Lock()
	cs.m[tc] = struct{}{}
	cs.mu.Unlock()
	return tc
}

func (cs *connSet) remove(tc *trackedConn) {
	cs.mu.Lock()
	delete(cs.m, tc)
	cs.mu.Unlock()
}

func (cs *connSet) count() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.m)
}

// closeWhere closes the connections for which pick is true and reports how
// many remain open.
func (cs *connSet) closeWhere(pick func(*trackedConn) bool) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for tc := range cs.m {
		if pick(tc) {
			if rc, ok := tc.nc.(*rawConn); ok {
				rc.abort() // its goroutine closes it
			} else {
				tc.nc.Close()
			}
		}
	}
	return len(cs.m)
}

// drain closes idle connections until none is left open, or closes all of
// them when ctx ends.
func (cs *connSet) drain(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for cs.closeWhere(func(tc *trackedConn) bool { return tc.idle.Load() }) > 0 {
		select {
		case <-ctx.Done():
			cs.closeWhere(func(*trackedConn) bool { return true })
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// listen binds a TCP listener, with SO_REUSEPORT when several processes are
// to share the port.
func listen(addr string, reusePort bool) (net.Listener, error) {
	// No TCP keep-alive probes on accepted connections: the idle timeout
	// ends dead ones, and Go's default costs four setsockopt calls per
	// connection, a tenth of the work of a one-request connection.
	lc := net.ListenConfig{KeepAlive: -1}
	if reusePort {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, listenError(addr, err)
	}
	return ln, nil
}
