package balancer

import (
	"errors"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"loadlab"
	"loadlab/internal/budget"
	"loadlab/internal/evloop"
	"loadlab/internal/httpx"
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
	queue   slotQueue // clients whose request waits for a backend's slot
}

func newHTTPLoop(b *Balancer, l *evloop.Loop) evloop.Handler {
	return &httpLoop{l: l, b: b, clients: map[*httpClient]struct{}{}, idle: map[*Backend][]*backendConn{},
		head: httpx.HeadOptions{Server: loadlab.ServerHeader}, queue: slotQueue{b: b}}
}

// Next and Tick serve the queue of requests waiting for a backend's slot.
func (h *httpLoop) Next() time.Time    { return h.queue.next(h.l.Now()) }
func (h *httpLoop) Tick(now time.Time) { h.queue.serve(now) }

// clientState is where a client connection is in its life.
type clientState int

const (
	reading    clientState = iota // waiting for (the rest of) a request
	forwarding                    // its request is with a backend, or its response on the way
	closing                       // writing its last bytes, then shutting down
	lingering                     // shut down for writing; reading what the client still sends, then closing
	tunneling                     // a 101 made it a tunnel to its backend (httptunnel.go)
)

// lingerFor bounds the read-and-discard after the last response, which
// keeps a request the client had already sent from turning the close
// into a reset that could destroy the response before it is read.
const lingerFor = 2 * time.Second

// httpClient is one client connection.
type httpClient struct {
	h      *httpLoop
	wire   // over TLS when the loop ends it
	from   net.Addr
	ip     string // the client's address as forwarding headers give it
	proto  string // http or https, as forwarding headers give it
	epoll  evloop.Interest
	state  clientState
	parser *httpx.Parser
	in     []byte // input not yet parsed
	held   int64  // of the balancer's input budget, for in
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
	upgrade        bool   // it asks to switch protocols: a 101 makes the connection a tunnel
	hashKey        string // hash_by uri or header:NAME: what the request gives the hash; "" for none
	cookie         string // the persistence cookie's value the request carries; "" for none
	noHost         bool   // the client sent no Host (HTTP/1.0): each backend's address is given instead
	idempotent     bool
	keepAlive      bool // the client's wish; the answer may still close
	minor          int
	start          time.Time
	attempts
	freshRetry bool // a reused backend connection failed and the request went again on a new one
	bc         *backendConn
	status     int
	sent       int64 // response bytes, head and body, passed to the client
	answered   bool  // the response head has gone to the client: nothing can be retried
	done       bool  // the response is complete
	closeAfter bool  // close once the response is written
	refused    bool  // the request was refused unread: the client may still be sending
}

func isIdempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

func (h *httpLoop) Take(fd int, from net.Addr) {
	h.b.fe.open()
	h.b.fe.total.Add(1)
	var c *httpClient
	if n := len(h.free); n > 0 {
		c, h.free = h.free[n-1], h.free[:n-1]
	} else {
		c = &httpClient{h: h, parser: httpx.NewParser(frontLimits())}
	}
	c.wire, c.from, c.state, c.eof = wireFor(fd, from), from, reading, false
	c.parser.Limits.MaxBody = h.b.Config().MaxBody // as of this connection's start, as a reload means it
	c.ip, c.proto = "unknown", "http"
	if a := clientAddr(from); a != nil {
		c.ip = a.IP.String()
	}
	if viaTLS(from) {
		c.proto = "https"
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
	w := wireFor(fd, from)
	w.read(h.l.Buf()) // what it sent, so the close does not reset the answer away
	w.writeSome(append(httpx.AppendHead(nil, &r, false, &h.head), r.Body...))
	w.shutdownWrite()
	w.read(h.l.Buf())
	w.release()
	rawsys.Close(fd)
	h.b.fe.total.Add(1)
	h.b.fe.requests.Add(1)
	h.b.fe.codes.count(503)
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
	n, err := c.wire.read(buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		c.watch()
		return
	case err != nil:
		c.close()
		return
	case n == 0:
		c.eof = true
		if c.state == tunneling {
			c.clientEnded()
			return
		}
		if c.state == reading || c.state == lingering {
			c.close() // a half-sent request is abandoned with its client
			return
		}
		c.watch() // its response is still owed
		return
	}
	c.active = c.h.l.Now()
	switch c.state {
	case lingering:
		return
	case tunneling:
		c.toBackend(buf[:n])
		return
	}
	if len(c.in) == 0 {
		c.since = c.h.l.Now() // a request head starts
	}
	if c.state == reading && !c.h.b.inputs.Hold(&c.held, max(len(c.in)+n, c.parser.Expected())) {
		c.ex = exchange{start: c.h.l.Now()}
		c.replyError(503, "503 Service Unavailable: too many large requests coming in at once; try again\n", true)
		return
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
	if !httpx.HostsAgree(req) {
		c.ex = exchange{start: c.h.l.Now()}
		c.replyError(400, "400 Bad Request: the request target names another host than Host\n", true)
		return
	}
	if httpx.PassedThrough(req, c.h.b.via) {
		c.ex = exchange{start: c.h.l.Now()}
		c.replyError(508, "508 Loop Detected: this request has passed through this balancer already (its Via); a backend points back at the balancer\n", true)
		return
	}
	c.begin(req, n)
	c.in = c.in[:copy(c.in, c.in[n:])]
	if cap(c.in) > budget.Free && len(c.in) <= budget.Free { // a large request is taken: let its buffer go
		c.in = append([]byte(nil), c.in...)
	}
	c.h.b.inputs.Hold(&c.held, len(c.in)) // less than before: never refused
	c.state = forwarding
	c.dispatch()
}

// begin sets up the exchange for req, n bytes of the client's input,
// writing it as the backend gets it.
func (c *httpClient) begin(req *httpx.Request, n int) {
	ex := &c.ex
	cfg := c.h.b.Config()
	hashKey := requestHashKey(req, cfg.HashBy)
	var cookie string
	if cfg.Cookie != "" {
		cookie = string(req.Cookie(cfg.Cookie))
		req.DropCookie(cfg.Cookie) // the balancer's, not the backend's
	}
	*ex = exchange{
		req: httpx.AppendProxyRequest(ex.req[:0], req, c.ip, c.proto, c.h.b.via), received: n, isHead: req.IsHead(), noHost: req.Host == nil,
		upgrade:    httpx.UpgradeWanted(req) != nil,
		idempotent: isIdempotent(req.Method), keepAlive: req.KeepAlive, minor: req.Minor, start: c.h.l.Now(),
		attempts: ex.attempts, hashKey: hashKey, cookie: cookie,
	}
	ex.reset()
	if c.h.b.log.ch != nil {
		ex.method, ex.target = string(req.Method), string(req.Target)
	}
}

// dispatch sends the exchange's request to the next backend; with none
// left it answers 503 (none was available) or 502 (all failed). When
// every backend is at its maxconn, the request waits in the loop's queue.
func (c *httpClient) dispatch() {
	h, ex := c.h, &c.ex
	from := c.from
	if ex.hashKey != "" || ex.cookie != "" {
		from = &requestClient{Addr: c.from, key: ex.hashKey, cookie: ex.cookie}
	}
	for {
		// The request holds its slot on be, and counts as active, from
		// now, not from its answer: leastconn and p2c must see a slow
		// backend's requests pile up.
		be, full := ex.next(h.b, from)
		if full {
			h.queue.add(c, h.l.Now())
			return
		}
		if be == nil {
			break
		}
		if err := h.send(c, be, true); err != nil {
			h.b.release(h.l, be)
			ex.connectFailed(be, err)
			if localFailure(err) {
				c.replyError(503, "503 Service Unavailable: the balancer is out of "+shortErr(err)+"\n", true)
				return
			}
			continue
		}
		return
	}
	if ex.none() {
		c.replyError(503, "503 Service Unavailable: no backend is available\n", false)
		return
	}
	c.replyError(502, "502 Bad Gateway: "+strings.Join(ex.skipped, "; ")+"\n", false)
}

// redispatch tries the backends again for a request that waited for a
// slot.
func (c *httpClient) redispatch() { c.dispatch() }

// queueTimedOut answers 503 to a request that waited queue_timeout for a
// slot, as HAProxy's timeout queue does.
func (c *httpClient) queueTimedOut() {
	c.ex.skipped = append(c.ex.skipped, "no backend slot free within queue_timeout")
	c.replyError(503, "503 Service Unavailable: every backend is at its maxconn; no slot came free in time\n", false)
}

// requestHashKey is what hash_by takes from req: its path (uri, as
// HAProxy's balance uri hashes the part before the query), or a header's
// value (header:NAME, as its balance hdr). "" when hash_by takes nothing
// from requests, or the header is absent: the client's address decides.
func requestHashKey(req *httpx.Request, hashBy string) string {
	if hashBy == "uri" {
		return string(req.Path)
	}
	if name, ok := strings.CutPrefix(hashBy, "header:"); ok {
		return string(req.Header(name)) // the parser trimmed it
	}
	return ""
}

func (h *httpLoop) logRequest(c *httpClient, be *Backend, status int, sent int64) {
	ex := &c.ex
	h.b.fe.requests.Add(1)
	h.b.fe.codes.count(status)
	h.b.log.request(c.from, be, ex.method, ex.target, status, int64(ex.received), sent, h.l.Now().Sub(ex.start), ex.skipped)
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
	buf := append(httpx.AppendHead(c.scratch(), &r, keepAlive, &c.h.head), r.Body...)
	c.state = forwarding
	c.h.logRequest(c, nil, status, int64(len(r.Body)))
	if c.send(buf) && len(c.out) == 0 {
		c.next()
	}
}

// scratch is where the client's next bytes are built: outBuf, unless
// bytes wait in it (a 100 Continue, an interim answer), and then a new
// buffer. The backend is read only while nothing waits, so a response
// head usually finds outBuf free; an interim answer in the same read may
// not.
func (c *httpClient) scratch() []byte {
	if len(c.out) > 0 {
		return nil
	}
	return c.outBuf[:0]
}

// send writes p to the client, keeping what it cannot take yet; false
// when the client is gone.
func (c *httpClient) send(p []byte) bool {
	if len(c.out) > 0 {
		c.out = append(c.out, p...)
		return true
	}
	rest, err := c.writeSome(p)
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
	rest, err := c.writeSome(c.out)
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
	c.shutdownWrite()
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
	if !c.eof && (c.state != forwarding || len(c.in) < maxPipelined) && c.state != closing &&
		(c.state != tunneling || c.ex.bc != nil && len(c.ex.bc.out) == 0) {
		want |= unix.EPOLLIN
	}
	if len(c.out) > 0 {
		want |= unix.EPOLLOUT
	}
	c.h.l.Set(c.fd, &c.epoll, want)
}

// close ends the client connection, and the exchange it had under way.
func (c *httpClient) close() {
	if c.fd < 0 {
		return
	}
	h := c.h
	h.queue.remove(c)
	if c.state == tunneling && c.ex.bc != nil {
		c.finishTunnel()
	}
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
	h.b.inputs.Release(&c.held)
	c.release()
	h.l.Disown(c.fd)
	h.l.Ended()
	h.b.fe.close()
	c.fd, c.epoll, c.out, c.in = -1, evloop.Interest{}, nil, c.in[:0]
	c.parser.Reset()
	if cap(c.outBuf) <= 64<<10 && cap(c.in) <= 64<<10 {
		h.free = append(h.free, c)
	}
}

// frontLimits are the limits on what clients send: the defaults, less
// room for the headers the balancer adds, so that a request the front
// takes is never one a backend with the same limits refuses (431).
func frontLimits() httpx.Limits {
	l := httpx.DefaultLimits()
	l.MaxHeaders -= httpx.ProxyAddedHeaders
	l.MaxHead -= 512
	return l
}
