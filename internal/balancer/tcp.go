package balancer

import (
	"net"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/evloop"
	"loadlab/internal/proxyproto"
	"loadlab/internal/rawsys"
	"loadlab/internal/tlsx"
)

// tcp mode: each client connection is paired with a connection to a
// backend, and the loop (loop.go) moves bytes between the two with one
// read and one write per message, holding what a side cannot take yet.
type tcpLoop struct {
	l     *evloop.Loop
	b     *Balancer
	pairs map[*tcpPair]struct{}
	queue slotQueue // pairs waiting for a backend's slot
}

func newTCPLoop(b *Balancer, l *evloop.Loop) evloop.Handler {
	return &tcpLoop{l: l, b: b, pairs: map[*tcpPair]struct{}{}, queue: slotQueue{b: b}}
}

// Next and Tick serve the queue of pairs waiting for a backend's slot.
func (t *tcpLoop) Next() time.Time    { return t.queue.next(t.l.Now()) }
func (t *tcpLoop) Tick(now time.Time) { t.queue.serve(now) }

// tcpSide is one socket of a proxied pair.
type tcpSide struct {
	wire    // the client's over TLS when the loop ends it
	pair    *tcpPair
	peer    *tcpSide
	pending []byte // for this socket: bytes it could not take yet
	eof     bool   // the other end sent FIN: nothing more to read
	shut    bool   // we passed the peer's FIN on (shutdown SHUT_WR)
	epoll   evloop.Interest
}

// tcpPair is a client connection and its backend connection.
type tcpPair struct {
	t              *tcpLoop
	client, server tcpSide
	from           net.Addr
	be             *Backend
	attempts
	connecting bool
	peeking    bool // reading the client's TLS hello for its server name, before a backend is chosen
	start      time.Time
	dialed     time.Time // when the current connect began
	active     time.Time // last data either way
	up, down   int64
}

func (t *tcpLoop) Take(fd int, from net.Addr) {
	t.b.fe.open()
	t.b.fe.total.Add(1)
	t.b.fe.requests.Add(1)
	p := &tcpPair{t: t, from: from, start: t.l.Now()}
	p.client = tcpSide{wire: wireFor(fd, from), pair: p, peer: &p.server}
	p.server = tcpSide{wire: wire{fd: -1}, pair: p, peer: &p.client}
	t.l.Own(fd, &p.client)
	t.pairs[p] = struct{}{}
	if t.b.Config().HashBy == "sni" && !viaTLS(from) {
		p.peeking = true
		t.peek(p)
		return
	}
	t.dial(p)
}

// peek reads the client's first bytes until its TLS hello is whole, to
// choose the backend by the server name it asks for (HAProxy's
// req.ssl_sni), then dials with those bytes waiting for the backend,
// unchanged. A client that sends no hello, or none that parses, is
// placed by its address: the bytes go on as they came.
func (t *tcpLoop) peek(p *tcpPair) {
	c, s := &p.client, &p.server
	buf := t.l.Buf()
	for {
		n, err := rawsys.Read(c.fd, buf[:min(len(buf), tlsx.MaxHello-len(s.pending))])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.finish(p, "client error")
			return
		}
		if n == 0 {
			c.eof = true
			break
		}
		p.up += int64(n)
		s.pending = append(s.pending, buf[:n]...)
		if _, more, _ := tlsx.ServerName(s.pending); !more || len(s.pending) >= tlsx.MaxHello {
			break
		}
	}
	name, more, _ := tlsx.ServerName(s.pending)
	if more && !c.eof && len(s.pending) < tlsx.MaxHello {
		t.watch(c)
		return
	}
	t.routeByName(p, name)
}

// routeByName ends the peek: the pair is dialed with the name known.
func (t *tcpLoop) routeByName(p *tcpPair, name string) {
	p.peeking = false
	if name != "" {
		p.from = &helloClient{TCPAddr: clientAddr(p.from), serverName: name}
	}
	t.l.Set(p.client.fd, &p.client.epoll, 0)
	t.dial(p)
}

// refuse turns a client away at once with a reset, as a closed port would.
func (t *tcpLoop) Refuse(fd int, from net.Addr) {
	resetOnClose(fd)
	rawsys.Close(fd)
	t.b.fe.total.Add(1)
	t.b.log.connection(from, nil, 0, 0, 0, "refused", nil)
}

// resetOnClose makes fd's close a reset, as a closed port answers.
func resetOnClose(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

// dial connects p to the next backend, without blocking; a failed
// connect comes back here to try another, up to Retries. When every
// backend is at its maxconn, p waits in the loop's queue.
func (t *tcpLoop) dial(p *tcpPair) {
	for {
		be, full := p.next(t.b, p.from)
		if full {
			t.queue.add(p, t.l.Now())
			return
		}
		if be == nil {
			break
		}
		fd, err := dial(t.l, t.b, be)
		if err != nil {
			t.b.release(t.l, be)
			p.connectFailed(be, err)
			if localFailure(err) {
				break // no other backend would fare better
			}
			continue
		}
		p.be, p.connecting, p.dialed = be, true, t.l.Now()
		p.server.fd = fd
		t.l.Own(fd, &p.server)
		// With a PROXY header, that goes first; over TLS, the bytes wait
		// for the handshake's outcome, or a failed one could not be
		// redispatched.
		if t.b.Config().SendProxy == "" && t.b.backendTLS.Load() == nil && t.speculate(p) {
			return
		}
		t.watch(&p.server)
		return
	}
	if p.none() {
		p.skipped = append(p.skipped, "no backend available")
	}
	resetOnClose(p.client.fd)
	t.finish(p, "refused")
}

// speculate tries, right after the connect is started, what would
// otherwise wait for two rounds of epoll: the client has usually sent its
// first bytes by now, and a connect over loopback or a fast network has
// usually finished, so the bytes can go at once (HAProxy's speculative
// I/O does the same). It reports whether it took p on: connected, or
// gone; if not, p waits for its connect as usual.
func (t *tcpLoop) speculate(p *tcpPair) bool {
	c, s := &p.client, &p.server
	if len(s.pending) > 0 || c.eof { // a retry: what was read goes first, once connected
		return false
	}
	buf := t.l.Buf()
	n, err := c.read(buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return false
	case err != nil:
		t.broken(c)
		return true
	case n == 0:
		c.eof = true
		return false
	}
	p.up += int64(n)
	w, err := rawsys.Write(s.fd, buf[:n])
	switch {
	case err == unix.EAGAIN || err == unix.EINTR: // still connecting
		s.pending = append([]byte(nil), buf[:n]...)
		return false
	case err != nil: // refused at once: the bytes wait for the next backend
		s.pending = append([]byte(nil), buf[:n]...)
		t.retry(p, &net.OpError{Op: "dial", Net: "tcp", Err: err})
		return true
	}
	if w < n {
		s.pending = append([]byte(nil), buf[w:n]...)
	}
	// Connected, and the backend has the client's first bytes: from here a
	// failure ends the pair; redispatching now would send the next backend
	// a request without its start.
	t.established(p)
	return true
}

// connected finishes p's connect: on success the pair starts moving
// bytes; on failure the backend is suspect and the next one is tried.
func (t *tcpLoop) connected(p *tcpPair) {
	pending, err := t.b.connectResult(p.server.fd)
	switch {
	case pending:
	case err != nil:
		t.retry(p, err)
	default:
		t.established(p)
	}
}

// established starts moving p's bytes once its backend connection is up.
func (t *tcpLoop) established(p *tcpPair) {
	be := p.be
	p.connecting = false
	p.active = t.l.Now()
	be.observe(t.l.Now().Sub(p.dialed))
	be.Total.Add(1)
	be.Requests.Add(1)
	if v := t.b.Config().SendProxy; v != "" {
		// Before whatever waits for the backend already: the client's
		// hello, or bytes read before a redispatch.
		p.server.pending = append(proxyproto.Append(nil, v, clientAddr(p.from), localAddr(p.client.fd, p.from)), p.server.pending...)
	}
	t.watch(&p.client)
	t.flush(&p.server) // the PROXY header, if any; and it watches the server
}

// retry gives up on p's current backend and dials the next.
func (t *tcpLoop) retry(p *tcpPair, err error) {
	p.connectFailed(p.be, err)
	t.b.release(t.l, p.be)
	t.l.Disown(p.server.fd)
	p.server.fd, p.server.epoll, p.connecting, p.be = -1, evloop.Interest{}, false, nil
	t.dial(p)
}

// redispatch tries the backends again for a pair that waited for a slot.
func (p *tcpPair) redispatch() { p.t.dial(p) }

// queueTimedOut resets a client that waited queue_timeout for a slot, as
// one refused for want of a backend.
func (p *tcpPair) queueTimedOut() {
	p.skipped = append(p.skipped, "no backend slot free within queue_timeout")
	resetOnClose(p.client.fd)
	p.t.finish(p, "refused")
}

// Fail ends the pair after a panic in Ready.
func (s *tcpSide) Fail() { s.pair.t.finish(s.pair, "panic") }

// broken ends a pair whose socket s failed (a reset, mostly): an error of
// the backend's when s is the backend's side, else the client's, which is
// not held against the backend.
func (t *tcpLoop) broken(s *tcpSide) {
	if s == &s.pair.server {
		t.finish(s.pair, "error")
	} else {
		t.finish(s.pair, "client error")
	}
}

// Ready handles epoll's report for one socket.
func (s *tcpSide) Ready(events uint32) {
	p := s.pair
	t := p.t
	if p.peeking {
		t.peek(p)
		return
	}
	if p.connecting {
		if s == &p.server && events != 0 {
			t.connected(p)
		}
		return
	}
	if events&unix.EPOLLERR != 0 { // a reset, or worse: the pair is broken
		t.broken(s)
		return
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP) != 0 && len(s.pending) > 0 {
		if !t.flush(s) {
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP) != 0 {
		t.pump(s)
	}
}

// pump moves what src has to its peer: one read and one write per
// message. A read shorter than the buffer drained the socket; epoll says
// when there is more.
func (t *tcpLoop) pump(src *tcpSide) {
	dst := src.peer
	p := src.pair
	buf := t.l.Buf()
	for !src.eof && len(dst.pending) == 0 {
		n, err := src.read(buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.broken(src)
			return
		}
		if n == 0 { // FIN: pass it on once what is pending is written
			src.eof = true
			if !t.flush(dst) {
				return
			}
			break
		}
		p.active = t.l.Now()
		if src == &p.client {
			p.up += int64(n)
		} else {
			p.down += int64(n)
		}
		dst.pending = buf[:n]
		if !t.flush(dst) {
			return
		}
		if len(dst.pending) > 0 { // dst is full: keep the rest, stop reading src
			dst.pending = append([]byte(nil), dst.pending...)
			break
		}
		if n < len(buf) {
			break
		}
	}
	t.watch(src)
	t.watch(dst)
}

// flush writes s.pending to s, and passes its peer's FIN on once nothing
// is pending; false if the pair is gone.
func (t *tcpLoop) flush(s *tcpSide) bool {
	rest, err := s.writeSome(s.pending)
	if err != nil {
		t.broken(s)
		return false
	}
	s.pending = rest
	if len(s.pending) == 0 {
		s.pending = nil
		if s.peer.eof && !s.shut {
			// Pass the FIN on; if s has sent its own already, the close
			// that follows sends it.
			if !s.eof {
				s.shutdownWrite()
			}
			s.shut = true
		}
	}
	p := s.pair
	if p.client.shut && p.server.shut {
		t.finish(p, "done")
		return false
	}
	t.watch(s)
	t.watch(s.peer)
	return true
}

// watch tells epoll what s waits for now: to read while its peer can
// take more, to write while it has bytes pending (or its connect is under
// way).
func (t *tcpLoop) watch(s *tcpSide) {
	if s.fd < 0 {
		return
	}
	if s.eof && s.shut { // done both ways: nothing more to wait for on it
		t.l.Unset(s.fd, &s.epoll)
		return
	}
	var want uint32
	p := s.pair
	switch {
	case p.peeking:
		if s == &p.client {
			want = unix.EPOLLIN
		}
	case p.connecting:
		if s == &p.server {
			want = t.b.connectWant()
		}
	default:
		if !s.eof && len(s.peer.pending) == 0 {
			want |= unix.EPOLLIN
		}
		if len(s.pending) > 0 {
			want |= unix.EPOLLOUT
		}
	}
	t.l.Set(s.fd, &s.epoll, want)
}

// finish closes both sockets of p and accounts for it.
func (t *tcpLoop) finish(p *tcpPair, status string) {
	if _, ok := t.pairs[p]; !ok {
		return
	}
	delete(t.pairs, p)
	t.queue.remove(p)
	if p.be != nil { // connected or connecting, it holds a slot
		t.b.release(t.l, p.be)
	}
	t.l.Ended()
	t.b.fe.close()
	for _, s := range []*tcpSide{&p.client, &p.server} {
		s.release()
		t.l.Disown(s.fd)
		s.fd = -1
	}
	if status == "refused" {
		t.b.log.connection(p.from, nil, 0, 0, t.l.Now().Sub(p.start), status, p.skipped)
		return
	}
	if p.be == nil || p.connecting { // closed by a shutdown before it was joined
		return
	}
	be := p.be
	be.BytesIn.Add(p.up)
	be.BytesOut.Add(p.down)
	if status == "error" {
		be.Errors.Add(1)
	}
	t.b.log.connection(p.from, be, p.up, p.down, t.l.Now().Sub(p.start), status, p.skipped)
}

// Sweep ends connects past their timeout (and tries the next backend) and
// idle connections, and returns the earliest deadline of those left (zero:
// none open).
func (t *tcpLoop) Sweep() time.Time {
	cfg := t.b.Config()
	idleAfter := min(cfg.ClientIdle, cfg.ServerIdle)
	dl := t.l.Deadlines()
	for p := range t.pairs {
		switch {
		case p.peeking && dl.Passed(p.start, cfg.HeadTimeout):
			// No whole hello in time: placed by address with what came,
			// as HAProxy goes on at the end of its inspect-delay.
			name, _, _ := tlsx.ServerName(p.server.pending)
			t.routeByName(p, name)
			dl.Soon() // connecting now
		case p.connecting && dl.Passed(p.dialed, cfg.ConnectTimeout):
			t.retry(p, errConnectTimeout)
			dl.Soon()
		case !p.connecting && p.be != nil && dl.Passed(p.active, idleAfter):
			t.finish(p, "idle")
		case p.be == nil && !p.peeking:
			dl.Soon() // between backends
		}
	}
	return dl.Next()
}

// stopping: tcp connections run until their ends close them.
func (t *tcpLoop) Stopping() {}

func (t *tcpLoop) CloseAll() {
	for p := range t.pairs {
		t.finish(p, "closed")
	}
}
