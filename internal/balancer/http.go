package balancer

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"loadlab"
	"loadlab/internal/evloop"
	"loadlab/internal/httpx"
	"loadlab/internal/proxyproto"
	"loadlab/internal/rawsys"
)

// http mode: per request, on the loops of loop.go. A client's input goes
// through loadlab's own strict request parser, the one `serve` uses, so
// ambiguous framing is refused with 400 and never forwarded. A request
// goes to a backend over a kept-alive connection from the loop's pool, its
// body re-framed by Content-Length, and the response streams back as it
// comes — one read and one write per message, the head rewritten, the
// body passed on as it was framed (chunked to an HTTP/1.0 client is
// decoded and ended by the close). The client is not read while its
// response is on the way, beyond what it has already sent (pipelining).
type httpLoop struct {
	l       *evloop.Loop
	b       *Balancer
	clients map[*httpClient]struct{}
	idle    map[*Backend][]*backendConn
	free    []*httpClient // closed clients, their buffers kept for the next
	head    httpx.HeadOptions
}

func newHTTPLoop(b *Balancer, l *evloop.Loop) evloop.Handler {
	return &httpLoop{l: l, b: b, clients: map[*httpClient]struct{}{}, idle: map[*Backend][]*backendConn{},
		head: httpx.HeadOptions{Server: loadlab.ServerHeader}}
}

// clientState is where a client connection is in its life.
type clientState int

const (
	reading    clientState = iota // waiting for (the rest of) a request
	forwarding                    // its request is with a backend, or its response on the way
	closing                       // writing its last bytes, then shutting down
	lingering                     // shut down for writing; reading what the client still sends, then closing
)

// lingerFor bounds the read-and-discard after the last response, which
// keeps a request the client had already sent from turning the close
// into a reset that could destroy the response before it is read.
const lingerFor = 2 * time.Second

// httpClient is one client connection.
type httpClient struct {
	h      *httpLoop
	fd     int
	from   net.Addr
	ip     string // the client's address as forwarding headers give it
	epoll  evloop.Interest
	state  clientState
	parser *httpx.Parser
	in     []byte // input not yet parsed
	out    []byte // bytes the client could not take yet
	outBuf []byte // out's memory
	eof    bool   // the client sent FIN
	since  time.Time
	active time.Time // last byte either way
	ex     exchange
	// private are idle backend connections that began with a PROXY
	// header naming this client (--send-proxy): only it may use them, as
	// HAProxy keeps such connections to their client.
	private []*backendConn
}

// exchange is the request a client has under way.
type exchange struct {
	req            []byte // as the backend gets it; kept for a retry
	method, target string // for the access log, only when there is one
	received       int    // the request's bytes as the client sent them
	isHead         bool
	idempotent     bool
	keepAlive      bool // the client's wish; the answer may still close
	minor          int
	start          time.Time
	tried          []*Backend
	skipped        []string
	freshRetry     bool // a reused backend connection failed and the request went again on a new one
	bc             *backendConn
	status         int
	sent           int64 // response bytes, head and body, passed to the client
	answered       bool  // the response head has gone to the client: nothing can be retried
	done           bool  // the response is complete
	closeAfter     bool  // close once the response is written
	refused        bool  // the request was refused unread: the client may still be sending
}

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

	errResponseTimeout = &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}
)

func isIdempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

func (h *httpLoop) Take(fd int, from net.Addr) {
	var c *httpClient
	if n := len(h.free); n > 0 {
		c, h.free = h.free[n-1], h.free[:n-1]
	} else {
		c = &httpClient{h: h, parser: httpx.NewParser(frontLimits())}
	}
	c.fd, c.from, c.state, c.eof = fd, from, reading, false
	c.parser.Limits.MaxBody = h.b.Config().MaxBody // as of this connection's start, as a reload means it
	c.ip = "unknown"
	if a, ok := from.(*net.TCPAddr); ok {
		c.ip = a.IP.String()
	}
	c.since, c.active = h.l.Now(), h.l.Now()
	h.clients[c] = struct{}{}
	h.l.Own(fd, c)
	// The request is usually there already: read it before putting the
	// socket in the epoll set, which a client that closes after one
	// answer then never joins.
	c.read()
}

// refuse answers 503 to a client that waited too long for a slot.
func (h *httpLoop) Refuse(fd int, from net.Addr) {
	var r httpx.Response
	r.SetText(503, "503 Service Unavailable: too many connections\n")
	r.RetryAfter = "1"
	rawsys.Read(fd, h.l.Buf()) // what it sent, so the close does not reset the answer away
	rawsys.Write(fd, append(httpx.AppendHead(nil, &r, false, &h.head), r.Body...))
	rawsys.ShutdownWrite(fd)
	rawsys.Read(fd, h.l.Buf())
	rawsys.Close(fd)
	h.b.log.request(from, nil, "-", "-", 503, 0, 0, 0, []string{"over --max-conns"})
}

// Fail closes the client after a panic in Ready.
func (c *httpClient) Fail() { c.close() }

// Ready handles epoll's report for the client's socket.
func (c *httpClient) Ready(events uint32) {
	if events&unix.EPOLLERR != 0 || events&unix.EPOLLHUP != 0 && c.eof {
		c.close()
		return
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP) != 0 && len(c.out) > 0 && !c.flush() {
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP) != 0 && c.fd >= 0 {
		c.read()
	}
}

// read takes what the client sent: a request to parse, pipelined input
// to keep, or, while lingering, bytes to drop.
func (c *httpClient) read() {
	buf := c.h.l.Buf()
	n, err := rawsys.Read(c.fd, buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		c.watch()
		return
	case err != nil:
		c.close()
		return
	case n == 0:
		c.eof = true
		if c.state == reading || c.state == lingering {
			c.close() // a half-sent request is abandoned with its client
			return
		}
		c.watch() // its response is still owed
		return
	}
	c.active = c.h.l.Now()
	if c.state == lingering {
		return
	}
	if len(c.in) == 0 {
		c.since = c.h.l.Now() // a request head starts
	}
	c.in = append(c.in, buf[:n]...)
	if c.state == reading {
		c.parse()
	} else {
		c.watch()
	}
}

// maxPipelined is how much input is kept from a client whose response is
// still on the way; past it the client is not read until it is answered.
const maxPipelined = 64 << 10

// parse looks for a whole request in the client's input and sends it on.
func (c *httpClient) parse() {
	req, n, err := c.parser.Parse(c.in)
	if err != nil {
		var he *httpx.Error
		if !errors.As(err, &he) {
			he = &httpx.Error{Status: 400, Reason: err.Error()}
		}
		c.ex = exchange{start: c.h.l.Now()}
		c.replyError(he.Status, httpx.StatusText(he.Status)+": "+he.Reason+"\n", true)
		return
	}
	if req == nil {
		if c.eof { // the rest of the request will never come
			c.close()
			return
		}
		if c.parser.NeedsContinue() {
			c.send([]byte(httpx.Continue))
		}
		c.watch()
		return
	}
	if passedThrough(req, c.h.b.via) {
		c.ex = exchange{start: c.h.l.Now()}
		c.replyError(508, "508 Loop Detected: this request has passed through this balancer already (its Via); a backend points back at the balancer\n", true)
		return
	}
	c.begin(req, n)
	c.in = c.in[:copy(c.in, c.in[n:])]
	c.state = forwarding
	c.dispatch()
}

// begin sets up the exchange for req, n bytes of the client's input,
// writing it as the backend gets it.
func (c *httpClient) begin(req *httpx.Request, n int) {
	ex := &c.ex
	*ex = exchange{
		req: appendRequest(ex.req[:0], req, c.ip, c.h.b.via), received: n, isHead: req.IsHead(),
		idempotent: isIdempotent(req.Method), keepAlive: req.KeepAlive, minor: req.Minor, start: c.h.l.Now(),
		tried: ex.tried[:0], skipped: ex.skipped[:0],
	}
	if c.h.b.log.ch != nil {
		ex.method, ex.target = string(req.Method), string(req.Target)
	}
}

// dispatch sends the exchange's request to the next backend; with none
// left it answers 503 (none was available) or 502 (all failed).
func (c *httpClient) dispatch() {
	h, ex := c.h, &c.ex
	for len(ex.tried) <= max(h.b.Config().Retries, 0) {
		be := h.b.pick(c.from, ex.tried)
		if be == nil {
			break
		}
		ex.tried = append(ex.tried, be)
		// The request counts as active on be from now, not from its
		// answer: leastconn and p2c must see a slow backend's requests
		// pile up.
		be.Active.Add(1)
		if err := h.send(c, be, true); err != nil {
			be.Active.Add(-1)
			if localFailure(err) {
				c.replyError(503, "503 Service Unavailable: the balancer is out of "+shortErr(err)+"\n", true)
				return
			}
			be.suspect(suspectFor) // counts the error
			ex.skipped = append(ex.skipped, be.Name+": "+shortErr(err))
			continue
		}
		return
	}
	if len(ex.tried) == 0 {
		c.replyError(503, "503 Service Unavailable: no backend is available\n", false)
		return
	}
	c.replyError(502, "502 Bad Gateway: "+strings.Join(ex.skipped, "; ")+"\n", false)
}

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
	if bc == nil {
		fd, err := dial(h.l, be)
		if err != nil {
			return err
		}
		bc = &backendConn{h: h, fd: fd, be: be, connecting: true}
		h.l.Own(fd, bc)
		if proxyVersion != "" {
			bc.owner = c
			local, _ := rawsys.LocalAddr(c.fd)
			out = append(proxyproto.Append(nil, proxyVersion, c.from, local), out...)
		}
	}
	bc.client, bc.out, bc.head, bc.gotByte = c, out, bc.head[:0], false
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
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
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
	bc.connecting = false
	if err := rawsys.SocketError(bc.fd); err != nil {
		bc.client.backendFailed(fmt.Errorf("%w: %w", errConnect, &net.OpError{Op: "dial", Net: "tcp", Err: err}))
		return
	}
	bc.be.Total.Add(1)
	bc.began = bc.h.l.Now()
	bc.write()
}

// write sends the request bytes; false when the connection failed.
func (bc *backendConn) write() bool {
	rest, err := evloop.WriteSome(bc.fd, bc.out)
	if err != nil {
		bc.client.backendFailed(fmt.Errorf("%w: %w", errNoResponse, &net.OpError{Op: "write", Net: "tcp", Err: err}))
		return false
	}
	if len(rest) < len(bc.out) {
		bc.active = bc.h.l.Now()
	}
	bc.out = rest
	bc.watch()
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
	if !c.ex.answered {
		bc.readHead(buf[:n])
		return
	}
	bc.forward(buf[:n], nil)
}

// readHead gathers the response head from p; once it is whole, answer
// sends it on with the body bytes that came with it.
func (bc *backendConn) readHead(p []byte) {
	c := bc.client
	for {
		data := p
		if len(bc.head) > 0 {
			bc.head = append(bc.head, p...)
			data = bc.head
		}
		end := bc.scan.Scan(data)
		if end < 0 {
			if len(bc.head) == 0 {
				bc.head = append(bc.head, p...)
			}
			if len(bc.head) > maxResponseHead {
				c.backendFailed(httpx.ErrMalformedResponse)
			}
			return
		}
		rh, err := httpx.ParseResponseHeadStrict(data[:end])
		if err != nil || rh.Status == 101 {
			c.backendFailed(httpx.ErrMalformedResponse)
			return
		}
		rest := data[end:]
		if rh.Status < 200 { // 100 Continue and the like: the final answer follows
			bc.head = bc.head[:0]
			bc.scan.Reset()
			if len(rest) == 0 {
				return
			}
			p = append([]byte(nil), rest...)
			continue
		}
		bc.answer(&rh, rest)
		return
	}
}

// answer starts the client's response: the head rewritten, and the body
// bytes that came with it.
func (bc *backendConn) answer(rh *httpx.ResponseHead, rest []byte) {
	c := bc.client
	ex := &c.ex
	be := bc.be
	be.observe(bc.h.l.Now().Sub(bc.began))
	be.Requests.Add(1)
	be.BytesIn.Add(int64(len(ex.req)))
	ex.status, ex.answered = rh.Status, true
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
	// The backend is read only while the client has nothing pending, so
	// outBuf is free.
	head := appendResponseHead(c.outBuf[:0], rh, f, bc.decode, ex.isHead, keepAlive)
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
		c.backendFailed(httpx.ErrMalformedResponse)
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
	be.Active.Add(-1)
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
	bc.be.Active.Add(-1)
	bc.be.Errors.Add(1)
	bc.close()
}

func (h *httpLoop) logRequest(c *httpClient, be *Backend, status int, sent int64) {
	ex := &c.ex
	h.b.log.request(c.from, be, ex.method, ex.target, status, int64(ex.received), sent, h.l.Now().Sub(ex.start), ex.skipped)
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
	be.Active.Add(-1)
	ex.skipped = append(ex.skipped, be.Name+": "+shortErr(err))
	if !errors.Is(err, errConnect) {
		be.Errors.Add(1) // suspect, below, counts a failed connect
	}
	switch {
	case errors.Is(err, errConnect):
		be.suspect(suspectFor)
		c.dispatch() // nothing was sent: any request may go to another backend
	case isTimeout:
		c.replyError(504, "504 Gateway Timeout: the backend did not answer in time\n", false)
	case ex.idempotent && errors.Is(err, errNoResponse):
		c.dispatch() // failed before any response byte: safe to repeat
	default:
		c.replyError(502, "502 Bad Gateway: "+shortErr(err)+"\n", false)
	}
}

// replyError answers the exchange with the balancer's own response;
// closeAfter for a request that cannot be followed by another.
func (c *httpClient) replyError(status int, body string, closeAfter bool) {
	ex := &c.ex
	var r httpx.Response
	r.SetText(status, body)
	if status == 503 {
		r.RetryAfter = "1"
	}
	if ex.isHead {
		r.Body = nil
		r.ContentLength = int64(len(body))
	}
	keepAlive := ex.keepAlive && !closeAfter && !c.h.l.Stopping()
	ex.status, ex.answered, ex.done, ex.closeAfter, ex.refused = status, true, true, !keepAlive, closeAfter
	buf := c.outBuf[:0]
	if len(c.out) > 0 { // a 100 Continue not yet written: outBuf holds it
		buf = nil
	}
	buf = append(httpx.AppendHead(buf, &r, keepAlive, &c.h.head), r.Body...)
	c.state = forwarding
	c.h.logRequest(c, nil, status, int64(len(r.Body)))
	if c.send(buf) && len(c.out) == 0 {
		c.next()
	}
}

// send writes p to the client, keeping what it cannot take yet; false
// when the client is gone.
func (c *httpClient) send(p []byte) bool {
	if len(c.out) > 0 {
		c.out = append(c.out, p...)
		return true
	}
	rest, err := evloop.WriteSome(c.fd, p)
	if err != nil {
		c.close()
		return false
	}
	if len(rest) < len(p) {
		c.active = c.h.l.Now()
	}
	if p = rest; len(p) > 0 {
		c.out = append(c.outBuf[:0], p...) // p may be outBuf's tail: append moves it down
		c.outBuf = c.out
		c.watch()
		if bc := c.ex.bc; bc != nil {
			bc.watch() // not read until the client has taken this
		}
	}
	return true
}

// flush writes what the client could not take before; false when the
// client is gone.
func (c *httpClient) flush() bool {
	rest, err := evloop.WriteSome(c.fd, c.out)
	if err != nil {
		c.close()
		return false
	}
	if len(rest) < len(c.out) {
		c.active = c.h.l.Now()
	}
	if c.out = rest; len(c.out) > 0 {
		c.watch()
		return true
	}
	c.out = nil
	switch {
	case c.ex.done && c.state == forwarding:
		c.next()
	case c.state == closing:
		c.linger()
	case c.ex.bc != nil:
		c.ex.bc.watch()
		c.watch()
	}
	return c.fd >= 0
}

// next follows a complete, written response: the next request, or the
// close.
func (c *httpClient) next() {
	// A client that sent its FIN after pipelined requests still gets
	// every answer, as nginx and HAProxy give them.
	if c.ex.closeAfter || c.eof && len(c.in) == 0 {
		c.state = closing
		c.linger()
		return
	}
	c.state, c.since = reading, c.h.l.Now()
	if len(c.in) > 0 {
		c.parse() // a pipelined request
		return
	}
	c.watch()
}

// linger shuts the connection down for writing once its last bytes are
// out, and reads until the client closes (or lingerFor passes): for a
// client that may have sent more than was read — a refused request, or
// one that wanted to go on — as nginx's lingering close does.
func (c *httpClient) linger() {
	if len(c.out) > 0 {
		c.state = closing
		c.watch()
		return
	}
	if c.eof || len(c.in) == 0 && !c.ex.keepAlive && !c.ex.refused {
		// The client said it sends nothing more, and nothing more came:
		// a plain close sends the FIN after the answer, as HAProxy does.
		c.close()
		return
	}
	rawsys.ShutdownWrite(c.fd)
	c.state, c.since = lingering, c.h.l.Now()
	c.in = c.in[:0]
	c.watch()
}

// watch tells epoll what the client waits for: input while it is read
// (and, while its response is on the way, until maxPipelined has come),
// output while bytes are pending.
func (c *httpClient) watch() {
	if c.fd < 0 {
		return
	}
	var want uint32
	if !c.eof && (c.state != forwarding || len(c.in) < maxPipelined) && c.state != closing {
		want |= unix.EPOLLIN
	}
	if len(c.out) > 0 {
		want |= unix.EPOLLOUT
	}
	c.h.l.Set(c.fd, &c.epoll, want)
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
		want = unix.EPOLLOUT
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

// close ends the client connection, and the exchange it had under way.
func (c *httpClient) close() {
	if c.fd < 0 {
		return
	}
	h := c.h
	if bc := c.ex.bc; bc != nil {
		if !c.ex.answered {
			h.logRequest(c, bc.be, 499, 0) // the client went away before its answer, as nginx logs it
		}
		bc.abandon()
		c.ex.bc = nil
	}
	for _, bc := range c.private {
		bc.close()
	}
	c.private = c.private[:0]
	delete(h.clients, c)
	h.l.Disown(c.fd)
	h.l.Ended()
	c.fd, c.epoll, c.out, c.in = -1, evloop.Interest{}, nil, c.in[:0]
	c.parser.Reset()
	if cap(c.outBuf) <= 64<<10 && cap(c.in) <= 64<<10 {
		h.free = append(h.free, c)
	}
}

// sweep ends what waited too long: requests too slow to arrive (408),
// idle clients, connects (the next backend is tried), backends slow to
// answer (504), clients that do not take their response, lingering
// closes, and pooled connections idle past the server timeout.
func (h *httpLoop) Sweep() {
	cfg := h.b.Config()
	now := h.l.Now()
	for c := range h.clients {
		if len(c.private) > 0 && now.Sub(c.private[0].idleAt) > cfg.ServerIdle {
			for _, bc := range c.private {
				bc.close()
			}
			c.private = c.private[:0]
		}
		switch c.state {
		case reading:
			switch {
			case c.parser.InHead(len(c.in)) && now.Sub(c.since) > cfg.HeadTimeout:
				c.ex = exchange{start: now}
				c.replyError(408, "408 Request Timeout: request head not received in time\n", true)
			case len(c.in) == 0 && now.Sub(c.since) > cfg.ClientIdle,
				len(c.in) > 0 && now.Sub(c.active) > cfg.ClientIdle:
				c.close()
			}
		case forwarding:
			bc := c.ex.bc
			switch {
			case bc != nil && bc.connecting && now.Sub(bc.began) > cfg.ConnectTimeout:
				c.backendFailed(fmt.Errorf("%w: %w", errConnect, errConnectTimeout))
			case bc != nil && len(c.out) == 0 && now.Sub(bc.active) > cfg.ServerIdle:
				if c.ex.answered {
					c.close() // the body stopped coming
				} else {
					c.backendFailed(errResponseTimeout)
				}
			case len(c.out) > 0 && now.Sub(c.active) > cfg.ClientIdle:
				c.close() // the client stopped taking its response
			}
		case closing:
			if now.Sub(c.active) > cfg.ClientIdle {
				c.close()
			}
		case lingering:
			if now.Sub(c.since) > lingerFor {
				c.close()
			}
		}
	}
	for be, list := range h.idle {
		kept := list[:0]
		for _, bc := range list {
			if now.Sub(bc.idleAt) > cfg.ServerIdle {
				bc.close()
			} else {
				kept = append(kept, bc)
			}
		}
		if len(kept) == 0 {
			delete(h.idle, be)
		} else {
			h.idle[be] = kept
		}
	}
}

// stopping closes the clients waiting for a request; the others are
// answered with "Connection: close".
func (h *httpLoop) Stopping() {
	for c := range h.clients {
		if c.state == reading && len(c.in) == 0 {
			c.close()
		}
	}
	h.closeIdle()
}

func (h *httpLoop) CloseAll() {
	for c := range h.clients {
		c.close()
	}
	h.closeIdle()
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

// hopByHop are the headers that belong to one connection, not the
// message; Content-Length too, since the proxy frames what it sends.
var hopByHop = []string{"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization", "content-length"}

func isHopByHop(name []byte) bool {
	for _, h := range hopByHop {
		if len(name) == len(h) && bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

// proxyWrites are the request headers the proxy writes itself, adding to
// what came; and Expect, answered by the proxy, which has the body already.
func proxyWrites(name []byte) bool {
	return bytes.EqualFold(name, []byte("x-forwarded-for")) || bytes.EqualFold(name, []byte("x-forwarded-proto")) ||
		bytes.EqualFold(name, []byte("forwarded")) || bytes.EqualFold(name, []byte("via")) ||
		bytes.EqualFold(name, []byte("expect")) // the proxy has the whole body already
}

// appendRequest writes req as the backend gets it: HTTP/1.1, the client's
// end-to-end headers, forwarding headers added, the body by
// Content-Length, the connection kept alive.
func appendRequest(b []byte, req *httpx.Request, client, self string) []byte {
	var connection [][]byte
	var xff, fwd, via []byte
	for _, f := range req.Headers {
		switch {
		case bytes.EqualFold(f.Name, []byte("connection")):
			connection = append(connection, f.Value)
		case bytes.EqualFold(f.Name, []byte("x-forwarded-for")):
			xff = f.Value
		case bytes.EqualFold(f.Name, []byte("forwarded")):
			fwd = f.Value
		case bytes.EqualFold(f.Name, []byte("via")):
			via = f.Value
		}
	}
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.Target...)
	b = append(b, " HTTP/1.1\r\n"...)
	for _, f := range req.Headers {
		if isHopByHop(f.Name) || proxyWrites(f.Name) || listed(connection, f.Name) {
			continue
		}
		b = append(append(append(append(b, f.Name...), ": "...), f.Value...), "\r\n"...)
	}
	b = append(appendList(b, "X-Forwarded-For", xff, client), "\r\n"...)
	b = append(b, "X-Forwarded-Proto: http\r\n"...)
	b = appendList(b, "Forwarded", fwd, "for=")
	if strings.IndexByte(client, ':') >= 0 {
		b = append(append(append(b, `"[`...), client...), `]"`...)
	} else {
		b = append(b, client...)
	}
	b = append(b, ";proto=http\r\n"...)
	b = appendList(b, "Via", via, "1.")
	b = strconv.AppendInt(b, int64(req.Minor), 10)
	b = append(append(append(b, ' '), self...), "\r\n"...)
	if len(req.Body) > 0 || req.ContentLength >= 0 || req.Chunked {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(req.Body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Connection: keep-alive\r\n\r\n"...)
	return append(b, req.Body...)
}

// addedHeaders is how many header fields appendRequest may add to what
// the client sent (X-Forwarded-For, X-Forwarded-Proto, Forwarded, Via,
// Content-Length, Connection, Host), less the ones it replaces.
const addedHeaders = 7

// frontLimits are the limits on what clients send: the defaults, less
// room for the headers the balancer adds, so that a request the front
// takes is never one a backend with the same limits refuses (431).
func frontLimits() httpx.Limits {
	l := httpx.DefaultLimits()
	l.MaxHeaders -= addedHeaders
	l.MaxHead -= 512
	return l
}

// passedThrough reports whether req carries this balancer's own Via
// pseudonym: it came back round a loop of backends pointing at the
// balancer, and would go round again until a limit stopped it.
func passedThrough(req *httpx.Request, self string) bool {
	for _, f := range req.Headers {
		if bytes.EqualFold(f.Name, []byte("via")) && bytes.Contains(f.Value, []byte(self)) {
			return true
		}
	}
	return false
}

// listed reports whether name is a token of one of the Connection values.
func listed(connection [][]byte, name []byte) bool {
	for _, v := range connection {
		if httpx.IsConnectionToken(v, name) {
			return true
		}
	}
	return false
}

// appendList starts a list header, adding to what came: the caller
// appends the new value and ends the line (appendField does both).
func appendList(b []byte, name string, came []byte, value string) []byte {
	b = append(append(b, name...), ": "...)
	if len(came) > 0 {
		b = append(append(b, came...), ", "...)
	}
	return append(b, value...)
}

// appendResponseHead writes the client's response head: the backend's
// status line and end-to-end headers, Via added, the body's framing as
// the client gets it, and the connection's fate.
func appendResponseHead(b []byte, rh *httpx.ResponseHead, f httpx.Framing, decode, isHead, keepAlive bool) []byte {
	line, fields, _ := bytes.Cut(rh.Head, []byte("\n"))
	b = append(b, "HTTP/1.1 "...)
	b = append(b, bytes.TrimRight(line[9:], "\r")...)
	b = append(b, "\r\n"...)
	var connection [][]byte
	var via []byte
	httpx.EachField(fields, func(name, value []byte) error {
		switch {
		case bytes.EqualFold(name, []byte("connection")):
			connection = append(connection, value)
		case bytes.EqualFold(name, []byte("via")):
			via = value
		}
		return nil
	})
	httpx.EachField(fields, func(name, value []byte) error {
		if !isHopByHop(name) && !bytes.EqualFold(name, []byte("via")) && !listed(connection, name) {
			b = append(append(append(append(b, name...), ": "...), value...), "\r\n"...)
		}
		return nil
	})
	b = appendList(b, "Via", via, "1.")
	b = strconv.AppendInt(b, int64(rh.Minor), 10)
	b = append(b, " loadlab\r\n"...)
	switch {
	case f == httpx.ByLength || isHead && rh.ContentLength >= 0 && !rh.Chunked:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, rh.ContentLength, 10)
		b = append(b, "\r\n"...)
	case f == httpx.ByChunks && !decode, isHead && rh.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if keepAlive {
		return append(b, "Connection: keep-alive\r\n\r\n"...)
	}
	return append(b, "Connection: close\r\n\r\n"...)
}
