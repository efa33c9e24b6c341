package balancer

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/evloop"
	"loadlab/internal/httpx"
	"loadlab/internal/proxyproto"
	"loadlab/internal/rawsys"
)

// http mode's backend side: the connections to backends, each serving one
// client's request at a time, their idle pool (per loop, or per client
// with --send-proxy), the response read and passed on, and what a failed
// backend means for the request.

// backendConn is a connection to a backend: serving one client's
// request, or idle in the loop's pool.
type backendConn struct {
	h          *httpLoop
	fd         int
	be         *Backend
	epoll      evloop.Interest
	client     *httpClient // nil while idle
	owner      *httpClient // with --send-proxy: the one client it may serve
	connecting bool
	reused     bool
	out        []byte // request bytes not written yet
	head       []byte // a response head not yet whole
	interim    int    // bytes of interim (1xx) heads before the final one
	gotByte    bool   // some of the response has come
	began      time.Time
	active     time.Time
	idleAt     time.Time

	scan     httpx.HeadScanner
	body     httpx.BodyReader
	decode   bool   // chunked to an HTTP/1.0 client: pass the data only
	data     []byte // the data decoded from one read
	reusable bool
}

var (
	errConnect    = errors.New("connect failed")
	errNoResponse = errors.New("no response")
	errClosed     = errors.New("backend closed the connection mid-response")
	// errInterimFlood: interim answers past maxResponseHead before the
	// final one. Go's client bounds their sum alike.
	errInterimFlood = errors.New("interim (1xx) answers past 64 KiB")

	errResponseTimeout = &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}
)

// send gives c's request to be: over a pooled connection when pooled is
// set and there is one, else a new one. An error is a connect that failed
// at once.
func (h *httpLoop) send(c *httpClient, be *Backend, pooled bool) error {
	proxyVersion := h.b.Config().SendProxy
	var bc *backendConn
	switch {
	case pooled && proxyVersion != "":
		bc = c.privateConn(be)
	case pooled:
		bc = h.pooled(be)
	}
	out := c.ex.req
	if c.ex.noHost {
		out = httpx.InsertHost(nil, out, be.Addr())
	}
	if bc == nil {
		fd, err := dial(h.l, h.b, be)
		if err != nil {
			return err
		}
		bc = &backendConn{h: h, fd: fd, be: be, connecting: true}
		h.l.Own(fd, bc)
		if proxyVersion != "" {
			bc.owner = c
			out = append(proxyproto.Append(nil, proxyVersion, clientAddr(c.from), localAddr(c.fd, c.from)), out...)
		}
	}
	bc.client, bc.out, bc.head, bc.gotByte, bc.interim = c, out, bc.head[:0], false, 0
	bc.scan.Reset()
	bc.began, bc.active = h.l.Now(), h.l.Now()
	c.ex.bc = bc
	if !bc.connecting {
		bc.write()
		return nil
	}
	bc.watch()
	return nil
}

// forget closes the idle connections kept to backends that left the pool.
func (h *httpLoop) forget(gone []*Backend) {
	for _, be := range gone {
		for _, bc := range h.idle[be] {
			bc.close()
		}
		delete(h.idle, be)
	}
}

// pooled takes be's most recently used idle connection, if any.
func (h *httpLoop) pooled(be *Backend) *backendConn {
	list := h.idle[be]
	if len(list) == 0 {
		return nil
	}
	bc := list[len(list)-1]
	h.idle[be] = list[:len(list)-1]
	bc.reused = true
	return bc
}

// privateConn takes an idle connection to be that only c may use.
func (c *httpClient) privateConn(be *Backend) *backendConn {
	for i, bc := range c.private {
		if bc.be == be {
			c.private = append(c.private[:i], c.private[i+1:]...)
			bc.reused = true
			return bc
		}
	}
	return nil
}

// maxIdlePerBackend bounds the idle connections a loop keeps per backend;
// maxPrivate those a client keeps (--send-proxy).
const (
	maxIdlePerBackend = 256
	maxPrivate        = 4
)

// put returns bc to the pool, or to its owner's, or closes it when that
// is full or the balancer is stopping.
func (h *httpLoop) put(bc *backendConn) {
	bc.client, bc.idleAt = nil, h.l.Now()
	if o := bc.owner; o != nil {
		if o.fd >= 0 && len(o.private) < maxPrivate && !h.l.Stopping() {
			o.private = append(o.private, bc)
			bc.watch()
		} else {
			bc.close()
		}
		return
	}
	if list := h.idle[bc.be]; len(list) < maxIdlePerBackend && !h.l.Stopping() && !bc.be.gone.Load() {
		h.idle[bc.be] = append(list, bc)
		bc.watch()
		return
	}
	bc.close()
}

// dropIdle takes an idle connection out of its pool and closes it.
func (h *httpLoop) dropIdle(bc *backendConn) {
	if o := bc.owner; o != nil {
		o.private = without(o.private, bc)
	} else {
		h.idle[bc.be] = without(h.idle[bc.be], bc)
	}
	bc.close()
}

func without(list []*backendConn, bc *backendConn) []*backendConn {
	for i, x := range list {
		if x == bc {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

func (bc *backendConn) close() {
	bc.h.l.Disown(bc.fd)
	bc.fd, bc.epoll, bc.client = -1, evloop.Interest{}, nil
}

// Fail closes the backend connection, and its client, after a panic in
// Ready.
func (bc *backendConn) Fail() {
	if c := bc.client; c != nil {
		c.close()
	}
	bc.h.dropIdle(bc)
	bc.close()
}

// Ready handles epoll's report for a backend connection.
func (bc *backendConn) Ready(events uint32) {
	c := bc.client
	if c == nil { // idle: the backend closed it, or said what it should not
		bc.h.dropIdle(bc)
		return
	}
	if bc.connecting {
		if events != 0 {
			bc.connected()
		}
		return
	}
	if events&unix.EPOLLOUT != 0 && len(bc.out) > 0 && !bc.write() {
		return
	}
	// Read while the client can take more; or, when the backend hung up,
	// at once: epoll reports a hang-up until it is read, and the socket
	// holds no more than its buffer.
	if events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 || events&unix.EPOLLIN != 0 && len(c.out) == 0 {
		bc.read()
	}
}

// connected finishes a connect: on success the request goes out; on
// failure the backend is suspect and the request goes to the next.
func (bc *backendConn) connected() {
	pending, err := bc.h.b.connectResult(bc.fd)
	if pending {
		return
	}
	bc.connecting = false
	if err != nil {
		bc.client.backendFailed(fmt.Errorf("%w: %w", errConnect, err))
		return
	}
	bc.be.Total.Add(1)
	bc.began = bc.h.l.Now()
	bc.write()
}

// write sends the request bytes; false when the connection failed.
func (bc *backendConn) write() bool {
	rest, err := evloop.WriteSome(bc.fd, bc.out)
	if err != nil && bc.client.state == tunneling {
		bc.client.close()
		return false
	}
	if err != nil {
		bc.client.backendFailed(fmt.Errorf("%w: %w", errNoResponse, &net.OpError{Op: "write", Net: "tcp", Err: err}))
		return false
	}
	if len(rest) < len(bc.out) {
		bc.active = bc.h.l.Now()
	}
	bc.out = rest
	bc.watch()
	if c := bc.client; c.state == tunneling && len(rest) == 0 {
		if c.eof {
			unix.Shutdown(bc.fd, unix.SHUT_WR) // the client's FIN, behind what it sent
		} else {
			c.watch() // the client may send more
		}
	}
	return true
}

// maxResponseHead bounds a backend's response head.
const maxResponseHead = 64 << 10

// read takes what the backend sent: the response head, then its body,
// each piece passed to the client as it comes.
func (bc *backendConn) read() {
	c := bc.client
	buf := bc.h.l.Buf()
	n, err := rawsys.Read(bc.fd, buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return
	case err != nil || n == 0:
		switch {
		case c.state == tunneling:
			c.backendEnded()
		case err == nil && c.ex.answered && bc.body.Closed():
			bc.reusable = false
			bc.complete()
		case c.ex.answered: // cut off mid-body: the client's copy is cut off too
			c.close()
		case !bc.gotByte:
			if err == nil {
				err = errors.New("connection closed")
			}
			c.backendFailed(fmt.Errorf("%w: %w", errNoResponse, err))
		default:
			c.backendFailed(errClosed)
		}
		return
	}
	bc.gotByte, bc.active = true, bc.h.l.Now()
	if c.state == tunneling {
		bc.toClient(buf[:n])
		return
	}
	if !c.ex.answered {
		bc.readHead(buf[:n])
		return
	}
	bc.forward(buf[:n], nil)
}

// readHead gathers the response head from p; once it is whole, answer
// sends it on with the body bytes that came with it. Interim answers (1xx)
// before it go to the client as they come, as HAProxy passes them; they
// share the head's bound, so a backend that sends them without end gets a
// 502, not the balancer's CPU for as long as it likes.
func (bc *backendConn) readHead(p []byte) {
	c := bc.client
	data := p
	if len(bc.head) > 0 {
		bc.head = append(bc.head, p...)
		data = bc.head
	}
	for {
		end := bc.scan.Scan(data)
		if end < 0 {
			break
		}
		rh, err := httpx.ParseResponseHeadStrict(data[:end])
		if err != nil || rh.Status == 101 && !c.ex.upgrade {
			c.backendFailed(httpx.ErrMalformedResponse)
			return
		}
		if rh.Status == 101 {
			bc.startTunnel(&rh, data[end:])
			return
		}
		if rh.Status >= 200 {
			bc.answer(&rh, data[end:])
			return
		}
		if bc.interim += end; bc.interim > maxResponseHead {
			c.backendFailed(errInterimFlood)
			return
		}
		if !bc.passInterim(&rh) {
			return
		}
		data = data[end:]
		bc.scan.Reset()
	}
	bc.head = append(bc.head[:0], data...) // data may be head's tail: append moves it down
	if bc.interim+len(bc.head) > maxResponseHead {
		c.backendFailed(httpx.ErrMalformedResponse)
	}
}

// passInterim sends an interim answer on to the client, unless the client
// speaks HTTP/1.0, which must not get one (RFC 9110 §15.2); false when
// the client is gone.
func (bc *backendConn) passInterim(rh *httpx.ResponseHead) bool {
	c := bc.client
	bc.be.codes.count(rh.Status)
	if c.ex.minor == 0 {
		return true
	}
	c.h.b.fe.codes.count(rh.Status)
	head := httpx.AppendProxyInterimHead(c.scratch(), rh, "loadlab")
	c.outBuf = head
	c.ex.sent += int64(len(head))
	return c.send(head)
}

// answer starts the client's response: the head rewritten, and the body
// bytes that came with it.
func (bc *backendConn) answer(rh *httpx.ResponseHead, rest []byte) {
	c := bc.client
	ex := &c.ex
	bc.answered(rh)
	bc.reusable = rh.KeepAlive
	f := httpx.ResponseFraming(rh, ex.isHead)
	bc.body.Start(f, rh.ContentLength)
	bc.decode = f == httpx.ByChunks && ex.minor == 0
	switch f {
	case httpx.ByChunks:
		bc.reusable = bc.reusable && rh.ContentLength < 0 // both framings: not to be trusted again
	case httpx.ByClose:
		bc.reusable = false
	}
	keepAlive := ex.keepAlive && !bc.h.l.Stopping() && f != httpx.ByClose && !bc.decode
	ex.closeAfter = !keepAlive
	head := httpx.AppendProxyResponseHead(c.scratch(), rh, f, bc.decode, ex.isHead, keepAlive, "loadlab")
	if name := c.h.b.Config().Cookie; name != "" && ex.cookie != bc.be.cookie {
		head = insertCookie(head, rh, name, bc.be.cookie)
	}
	c.outBuf = head
	ex.sent += int64(len(head))
	if f == httpx.NoBody {
		bc.reusable = bc.reusable && len(rest) == 0
		if c.send(head) {
			bc.complete()
		}
		return
	}
	bc.forward(rest, head)
}

// insertCookie adds to a response head the persistence cookie that keeps
// the client to the backend that answered, as HAProxy's cookie insert
// does, with "Cache-Control: private" (its nocache) unless the answer
// says how it is cached: a shared cache must not give one client's
// cookie to others.
func insertCookie(head []byte, rh *httpx.ResponseHead, name, value string) []byte {
	head = head[:len(head)-2] // the blank line
	head = append(append(append(append(head, "Set-Cookie: "...), name...), '='), value...)
	head = append(head, "; path=/\r\n"...)
	if !rh.CacheControl {
		head = append(head, "Cache-Control: private\r\n"...)
	}
	return append(head, "\r\n"...)
}

// answered counts the final answer rh of the backend's exchange: its
// time to the head, its class, the request's bytes.
func (bc *backendConn) answered(rh *httpx.ResponseHead) {
	ex, be := &bc.client.ex, bc.be
	be.observe(bc.h.l.Now().Sub(bc.began))
	be.Requests.Add(1)
	be.codes.count(rh.Status)
	be.BytesIn.Add(int64(len(ex.req)))
	ex.status, ex.answered = rh.Status, true
}

// malformedBody says what is wrong with a response's body framing, by
// the reason the chunked scanner gives ("trailer section over 16 KiB"),
// not by the status a request's would get.
func malformedBody(err error) error {
	var he *httpx.Error
	if errors.As(err, &he) {
		return errors.New("malformed response body: " + he.Reason)
	}
	return fmt.Errorf("malformed response body: %w", err)
}

// forward sends the client head (if any) and the part of p that belongs
// to the body, and completes the exchange at the body's end.
func (bc *backendConn) forward(p, head []byte) {
	c := bc.client
	var data *[]byte
	if bc.decode {
		bc.data = bc.data[:0]
		data = &bc.data
	}
	n, done, err := bc.body.Read(p, data)
	if err != nil && head != nil { // nothing has gone to the client yet
		c.backendFailed(malformedBody(err))
		return
	}
	if err != nil { // the body is broken: so is what the client got of it
		c.close()
		return
	}
	bc.reusable = bc.reusable && n == len(p)
	part := p[:n]
	if bc.decode {
		part = bc.data
	}
	c.ex.sent += int64(len(part))
	if head != nil {
		c.outBuf = append(head, part...)
		part = c.outBuf
	}
	if !c.send(part) {
		return
	}
	if done {
		bc.complete()
		return
	}
	bc.watch()
}

// complete ends the exchange at the end of its response: the backend
// connection goes back to the pool (or is closed), the client goes on to
// its next request once the response is written.
func (bc *backendConn) complete() {
	c := bc.client
	ex := &c.ex
	be := bc.be
	bc.h.b.release(bc.h.l, be)
	be.BytesOut.Add(ex.sent)
	ex.bc, ex.done = nil, true
	if bc.reusable {
		bc.h.put(bc)
	} else {
		bc.close()
	}
	c.h.logRequest(c, be, ex.status, ex.sent)
	if len(c.out) == 0 {
		c.next()
	}
}

// abandon closes a backend connection whose exchange ended without its
// response complete.
func (bc *backendConn) abandon() {
	bc.h.b.release(bc.h.l, bc.be)
	bc.be.Errors.Add(1)
	bc.close()
}

// backendFailed handles a failure of the exchange's backend connection
// before the client was answered: the request goes again where that is
// safe, else the client gets 502, or 504 when the backend took too long.
func (c *httpClient) backendFailed(err error) {
	ex := &c.ex
	bc := ex.bc
	be := bc.be
	bc.close()
	ex.bc = nil
	var timeout interface{ Timeout() bool }
	isTimeout := errors.As(err, &timeout) && timeout.Timeout()
	switch {
	case errors.Is(err, errNoResponse) && bc.reused && !ex.freshRetry:
		// The backend had closed the idle connection: once more on a new one.
		ex.freshRetry = true
		if c.h.send(c, be, false) == nil {
			return
		}
	}
	c.h.b.release(c.h.l, be)
	if errors.Is(err, errConnect) {
		ex.connectFailed(be, err)
	} else {
		ex.failed(be, err)
		be.Errors.Add(1)
	}
	switch {
	case errors.Is(err, errConnect):
		c.dispatch() // nothing was sent: any request may go to another backend
	case isTimeout:
		c.replyError(504, "504 Gateway Timeout: the backend did not answer in time\n", false)
	case ex.idempotent && errors.Is(err, errNoResponse):
		c.dispatch() // failed before any response byte: safe to repeat
	default:
		c.replyError(502, "502 Bad Gateway: "+shortErr(err)+"\n", false)
	}
}

// watch tells epoll what a backend connection waits for: its connect, to
// write its request, and to read while the client can take more (or,
// pooled, to learn that the backend closed it).
func (bc *backendConn) watch() {
	if bc.fd < 0 {
		return
	}
	var want uint32
	switch {
	case bc.connecting:
		want = bc.h.b.connectWant()
	case bc.client == nil:
		want = unix.EPOLLIN
	default:
		if len(bc.client.out) == 0 {
			want |= unix.EPOLLIN
		}
		if len(bc.out) > 0 {
			want |= unix.EPOLLOUT
		}
	}
	bc.h.l.Set(bc.fd, &bc.epoll, want)
}

// closeIdle closes every pooled backend connection.
func (h *httpLoop) closeIdle() {
	for be, list := range h.idle {
		for _, bc := range list {
			bc.close()
		}
		delete(h.idle, be)
	}
}
