package server

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"loadlab/internal/httpx"
	"loadlab/internal/proxyproto"
	"loadlab/internal/rawsys"
)

// asyncServer is the event-loop model: gnet's epoll loops call OnTraffic
// with whatever arrived, and nothing on a loop ever blocks. Files are read
// off the loop; timeouts are kept by a ticker that wakes expired connections.
type asyncServer struct {
	gnet.BuiltinEventEngine
	core *core

	eng    gnet.Engine
	addr   net.Addr
	booted chan struct{}
	done   chan struct{}

	connsMu  sync.Mutex
	conns    map[*asyncConn]struct{} // for the ticker and the graceful stop
	open     atomic.Int64
	draining atomic.Bool
}

// asyncConn is one connection's state. Fields without atomics belong to the
// connection's event loop.
type asyncConn struct {
	c    gnet.Conn
	sess *session

	deadline atomic.Int64 // when the current wait times out, in Unix nanoseconds
	expired  atomic.Bool  // set by the ticker; the loop acts on it
	idle     atomic.Bool  // nothing buffered either way: a graceful stop may close it
	// closed is made, on the loop, before work leaves the loop, and is
	// closed by OnClose so that work stops waiting.
	closed chan struct{}

	busy      bool // a file or a final flush is being handled off the loop
	proxied   bool // the PROXY header is read, or none is expected
	buffered  int  // input left unparsed after the last OnTraffic
	served    int
	headStart time.Time
}

func startAsync(c *core) (Server, error) {
	s := &asyncServer{core: c, booted: make(chan struct{}), done: make(chan struct{}), conns: map[*asyncConn]struct{}{}}
	loops := c.cfg.Loops
	if loops <= 0 {
		loops = runtime.NumCPU()
	}
	addr := c.cfg.Listen
	if !c.cfg.ReusePort {
		var held io.Closer
		var err error
		if addr, held, err = claimPort(addr); err != nil {
			return nil, err
		}
		defer held.Close() // once gnet has bound the port too
	}
	runErr := make(chan error, 1)
	go func() {
		defer close(s.done)
		// With SO_REUSEPORT gnet gives each loop its own listening socket
		// and accepts on the loop itself, as nginx's workers do; without
		// it, a separate acceptor hands every connection across threads,
		// which halved the rate of new connections in our measurements.
		runErr <- gnet.Run(s, "tcp://"+addr,
			gnet.WithNumEventLoop(loops),
			gnet.WithMulticore(loops > 1),
			gnet.WithReusePort(true),
			gnet.WithReuseAddr(true), // as net.Listen does: rebind at once after a restart
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(silentLogger{}))
	}()
	select {
	case <-s.booted:
	case err := <-runErr:
		return nil, listenError(c.cfg.Listen, err)
	}
	go s.tick()
	return s, nil
}

// claimPort checks that addr is free, binding it once without
// SO_REUSEPORT (so another server on the port is an error, not a silent
// share). Port 0 becomes the free port the kernel chose, held (with
// SO_REUSEPORT, so gnet may bind it too) until the caller closes the
// returned Closer: released in between, the port could be taken as the
// source port of any outgoing connection, and was, in CI.
func claimPort(addr string) (string, io.Closer, error) {
	host, port, _ := net.SplitHostPort(addr)
	hold := port == "0"
	ln, err := listen(addr, hold)
	if err != nil {
		return "", nil, err
	}
	_, chosen, _ := net.SplitHostPort(ln.Addr().String())
	if !hold {
		ln.Close()
		return net.JoinHostPort(host, chosen), io.NopCloser(nil), nil
	}
	return net.JoinHostPort(host, chosen), ln, nil
}

func (s *asyncServer) Addr() net.Addr        { return s.addr }
func (s *asyncServer) Done() <-chan struct{} { return s.done }

func (s *asyncServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	// gnet does not say which port it bound; ask the socket.
	if fd, err := eng.Dup(); err == nil {
		if a, err := rawsys.LocalAddr(fd); err == nil {
			s.addr = a
		}
		unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

func (s *asyncServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if s.draining.Load() {
		return nil, gnet.Close
	}
	if max := s.core.cfg.MaxConns; max > 0 && s.open.Load() >= int64(max) {
		return s.core.serviceUnavailable("too many open connections"), gnet.Close
	}
	s.open.Add(1)
	ac := &asyncConn{c: c, sess: s.core.getSession(c.RemoteAddr()), headStart: time.Now(), proxied: !s.core.cfg.AcceptProxy}
	ac.deadline.Store(ac.headStart.Add(s.core.cfg.HeaderTimeout).UnixNano())
	ac.idle.Store(true)
	c.SetContext(ac)
	s.connsMu.Lock()
	s.conns[ac] = struct{}{}
	s.connsMu.Unlock()
	return nil, gnet.None
}

func (s *asyncServer) OnClose(c gnet.Conn, _ error) gnet.Action {
	if ac, ok := c.Context().(*asyncConn); ok {
		if ac.closed != nil {
			close(ac.closed)
		}
		s.connsMu.Lock()
		delete(s.conns, ac)
		s.connsMu.Unlock()
		s.open.Add(-1)
		s.core.putSession(ac.sess)
		ac.sess = nil
	}
	return gnet.None
}

func (s *asyncServer) OnTraffic(c gnet.Conn) gnet.Action {
	ac := c.Context().(*asyncConn)
	if ac.busy {
		return gnet.None // input waits in gnet's buffer until the work off the loop is done
	}
	buf, _ := c.Peek(-1)
	if ac.expired.Load() {
		return s.expire(ac, len(buf))
	}
	now := time.Now()
	if ac.buffered == 0 && len(buf) > 0 {
		ac.headStart = now
	}
	sess := ac.sess
	draining := s.draining.Load()
	consumed := 0
	if !ac.proxied {
		addr, n, err := proxyproto.Parse(buf)
		switch {
		case err != nil:
			return gnet.Close // not from a proxy that speaks the protocol
		case n == 0:
			ac.buffered = len(buf)
			return s.arm(ac, now)
		}
		ac.proxied, consumed = true, n
		if addr != nil {
			sess.remote = addr
		}
	}
	for {
		req, n, err := sess.parser.Parse(buf[consumed:])
		if err != nil {
			c.Discard(len(buf))
			sess.refuse(err.(*httpx.Error))
			return s.finish(ac)
		}
		if req == nil {
			break
		}
		consumed += n
		ac.served++
		rep := sess.respond(req, draining)
		switch {
		case rep.stream != nil:
			c.Discard(consumed) // consumed > 0: a request was just taken
			s.streamFile(ac, rep)
			return gnet.None
		case rep.body != nil:
			c.Writev([][]byte{sess.out, rep.body}) // gnet copies only what the socket did not take
			sess.out = sess.out[:0]
		}
		if !rep.keepAlive {
			c.Discard(len(buf))
			return s.finish(ac)
		}
		ac.headStart = now
	}
	if consumed > 0 {
		c.Discard(consumed) // gnet's Discard(0) would drop everything buffered
	}
	if sess.parser.NeedsContinue() {
		sess.out = append(sess.out, httpx.Continue...)
	}
	if len(sess.out) > 0 {
		c.Write(sess.out)
		sess.out = sess.out[:0]
	}
	ac.buffered = len(buf) - consumed
	return s.arm(ac, now)
}

// arm sets the deadline for what the connection waits for next.
func (s *asyncServer) arm(ac *asyncConn, now time.Time) gnet.Action {
	cfg := &s.core.cfg
	var deadline time.Time
	switch {
	case ac.buffered == 0:
		if s.draining.Load() && ac.c.OutboundBuffered() == 0 {
			return gnet.Close
		}
		deadline = now.Add(cfg.IdleTimeout)
		if ac.served == 0 {
			deadline = ac.headStart.Add(cfg.HeaderTimeout)
		}
	case ac.sess.parser.InHead(ac.buffered):
		deadline = ac.headStart.Add(cfg.HeaderTimeout)
	default:
		deadline = now.Add(cfg.IdleTimeout) // between reads of a body
	}
	pending := ac.c.OutboundBuffered() > 0
	if w := now.Add(cfg.WriteTimeout); pending && w.After(deadline) {
		deadline = w
	}
	ac.deadline.Store(deadline.UnixNano())
	ac.idle.Store(ac.buffered == 0 && !pending)
	return gnet.None
}

// expire ends a connection whose deadline passed: a 408 when it was part
// way through a head, a plain close otherwise.
func (s *asyncServer) expire(ac *asyncConn, buffered int) gnet.Action {
	if buffered > 0 && ac.sess.parser.InHead(buffered) {
		ac.c.Discard(buffered)
		ac.sess.refuse(timeoutError)
		return s.finish(ac)
	}
	return gnet.Close
}

// finish writes the last response and closes the connection once gnet has
// flushed it: closing with bytes still in gnet's buffer would cut the
// response short, and gnet has no flush callback, so a goroutine asks.
func (s *asyncServer) finish(ac *asyncConn) gnet.Action {
	if len(ac.sess.out) > 0 {
		ac.c.Write(ac.sess.out)
		ac.sess.out = ac.sess.out[:0]
	}
	if ac.c.OutboundBuffered() == 0 {
		return gnet.Close
	}
	ac.leaveLoop()
	go s.closeWhenFlushed(ac)
	return gnet.None
}

// leaveLoop marks the connection as handled off the loop until that work
// is done; the loop then leaves its input alone and the ticker its deadline.
func (ac *asyncConn) leaveLoop() {
	ac.busy = true
	ac.deadline.Store(0)
	if ac.closed == nil {
		ac.closed = make(chan struct{})
	}
}

func (s *asyncServer) closeWhenFlushed(ac *asyncConn) {
	give := time.Now().Add(s.core.cfg.WriteTimeout)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		time.Sleep(wait)
		n, ok := s.outbound(ac)
		if !ok || n == 0 || time.Now().After(give) {
			ac.c.Close()
			return
		}
	}
}

// outbound asks the connection's loop how many bytes gnet still holds for it.
func (s *asyncServer) outbound(ac *asyncConn) (int, bool) {
	ch := make(chan int, 1)
	err := ac.c.Wake(func(c gnet.Conn, err error) error {
		ch <- c.OutboundBuffered()
		return nil
	})
	return s.await(ac, ch, err)
}

// asyncWrite hands b to the connection's loop and waits until gnet has
// written or buffered it, returning what gnet still holds.
func (s *asyncServer) asyncWrite(ac *asyncConn, b []byte) (int, bool) {
	ch := make(chan int, 1)
	err := ac.c.AsyncWrite(b, func(c gnet.Conn, err error) error {
		if err != nil {
			ch <- -1
		} else {
			ch <- c.OutboundBuffered()
		}
		return nil
	})
	return s.await(ac, ch, err)
}

func (s *asyncServer) await(ac *asyncConn, ch chan int, err error) (int, bool) {
	if err != nil {
		return 0, false
	}
	select {
	case n := <-ch:
		return n, n >= 0
	case <-ac.closed:
		return 0, false
	case <-time.After(s.core.cfg.WriteTimeout):
		return 0, false
	}
}

// streamFile sends a file from disk without blocking the loop: a goroutine
// reads it in pieces and queues each on the loop, pausing while gnet holds
// more than a megabyte for a slow reader.
func (s *asyncServer) streamFile(ac *asyncConn, rep reply) {
	ac.leaveLoop()
	head := append([]byte(nil), ac.sess.out...)
	ac.sess.out = ac.sess.out[:0]
	go func() {
		defer rep.stream.Close()
		_, ok := s.asyncWrite(ac, head)
		piece := make([]byte, 256<<10)
		// A stream of unknown length (never a file) is sent to its end and
		// the connection closed; the session chose that already.
		left := rep.size
		if left < 0 {
			left = math.MaxInt64
		}
		for ok && left > 0 {
			n, err := io.ReadFull(rep.stream, piece[:min(int64(len(piece)), left)])
			if n == 0 && err != nil {
				ok = rep.size < 0 && (err == io.EOF || err == io.ErrUnexpectedEOF)
				break
			}
			left -= int64(n)
			var held int
			held, ok = s.asyncWrite(ac, piece[:n])
			for ok && held > 1<<20 {
				time.Sleep(time.Millisecond)
				held, ok = s.outbound(ac)
			}
		}
		switch {
		case !ok:
			ac.c.Close()
		case !rep.keepAlive:
			s.closeWhenFlushed(ac)
		default:
			// Back to the loop: clear busy there, then wake it for any
			// pipelined input that waited.
			ac.c.Wake(func(gnet.Conn, error) error { ac.busy = false; return nil })
			ac.c.Wake(nil)
		}
	}()
}

// tick enforces timeouts: it marks connections whose deadline passed and
// wakes them, so their own loop answers or closes them.
func (s *asyncServer) tick() {
	cfg := &s.core.cfg
	every := min(cfg.HeaderTimeout, cfg.IdleTimeout, cfg.WriteTimeout) / 4
	every = max(10*time.Millisecond, min(every, time.Second))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			for _, ac := range s.connsWhere(func(ac *asyncConn) bool {
				d := ac.deadline.Load()
				return d != 0 && now.UnixNano() > d && !ac.expired.Swap(true)
			}) {
				ac.c.Wake(nil)
			}
		}
	}
}

// connsWhere lists the open connections for which pick is true.
func (s *asyncServer) connsWhere(pick func(*asyncConn) bool) []*asyncConn {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	var picked []*asyncConn
	for ac := range s.conns {
		if pick(ac) {
			picked = append(picked, ac)
		}
	}
	return picked
}

func (s *asyncServer) Shutdown(ctx context.Context) error {
	if s.draining.Swap(true) {
		<-s.done
		return nil
	}
	var err error
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.open.Load() > 0 && err == nil {
		for _, ac := range s.connsWhere(func(ac *asyncConn) bool { return ac.idle.Load() }) {
			ac.c.Close()
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if stopErr := s.eng.Stop(stopCtx); stopErr != nil && !errors.Is(stopErr, context.DeadlineExceeded) && err == nil {
		err = stopErr
	}
	<-s.done
	return err
}

// silentLogger keeps gnet's own logging off the terminal; loadlab reports
// what matters itself.
type silentLogger struct{}

func (silentLogger) Debugf(string, ...any) {}
func (silentLogger) Infof(string, ...any)  {}
func (silentLogger) Warnf(string, ...any)  {}
func (silentLogger) Errorf(string, ...any) {}
func (silentLogger) Fatalf(string, ...any) {}
