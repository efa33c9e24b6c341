package balancer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"loadlab/internal/httpx"
	"loadlab/internal/server"
)

// httpProxy is the balancer's http mode: a handler behind loadlab's own
// server (thread model), so every request is parsed by the same strict
// parser as `loadlab serve` — ambiguous framing is refused with 400 and
// never forwarded — and then sent to a backend over a pooled keep-alive
// connection, with a body re-framed by Content-Length.
type httpProxy struct {
	b   *Balancer
	srv server.Server

	mu   sync.Mutex
	idle map[*Backend][]*backendConn
}

// backendConn is a kept-alive connection to a backend.
type backendConn struct {
	be     *Backend
	c      net.Conn
	r      *bufio.Reader
	head   []byte // the last response head, kept for its memory
	idleAt time.Time
}

// maxIdlePerBackend bounds the idle connections kept for each backend.
const maxIdlePerBackend = 256

func newHTTPProxy(b *Balancer) *httpProxy {
	return &httpProxy{b: b, idle: map[*Backend][]*backendConn{}}
}

// start serves http mode on the balancer's listener.
func (h *httpProxy) start() error {
	cfg := h.b.Config()
	srv, err := server.Start(server.Config{
		Model: "thread", Listener: h.b.ln, HeaderTimeout: cfg.HeadTimeout, IdleTimeout: cfg.ClientIdle,
		MaxConns: cfg.MaxConns,
	}, h)
	h.srv = srv
	return err
}

func (h *httpProxy) shutdown(ctx context.Context) error {
	if h.srv == nil {
		return nil
	}
	return h.srv.Shutdown(ctx)
}

// Serve forwards one request and fills resp with the backend's answer.
func (h *httpProxy) Serve(req *httpx.Request, resp *httpx.Response) {
	start := time.Now()
	cfg := h.b.Config()
	var tried []*Backend
	var skipped []string
	idempotent := isIdempotent(string(req.Method))
	for attempt := 0; attempt <= max(cfg.Retries, 0); attempt++ {
		be := h.b.pick(req.Remote, tried)
		if be == nil {
			break
		}
		tried = append(tried, be)
		// The request counts as active on be from now, not from its answer:
		// leastconn and p2c must see a slow backend's requests pile up.
		be.Active.Add(1)
		bres, bc, err := h.exchange(be, req)
		if err == nil {
			h.answer(req, resp, be, bc, bres, start, skipped) // the body's Close ends it
			return
		}
		be.Active.Add(-1)
		skipped = append(skipped, be.Name+": "+shortErr(err))
		be.Errors.Add(1)
		var timeout interface{ Timeout() bool }
		switch {
		case errors.As(err, &timeout) && timeout.Timeout():
			resp.SetText(504, "504 Gateway Timeout: the backend did not answer in time\n")
			h.b.log.request(req.Remote, be, string(req.Method), string(req.Target), 504, 0, 0, time.Since(start), skipped)
			return
		case errors.Is(err, errConnect):
			be.suspect(suspectFor)
			continue // nothing was sent: any request may go to another backend
		case idempotent && errors.Is(err, errNoResponse):
			continue // failed before any response byte: safe to repeat
		}
		resp.SetText(502, "502 Bad Gateway: "+shortErr(err)+"\n")
		h.b.log.request(req.Remote, be, string(req.Method), string(req.Target), 502, 0, 0, time.Since(start), skipped)
		return
	}
	status := 503
	if len(tried) > 0 {
		status = 502
	}
	if status == 503 {
		resp.SetText(503, "503 Service Unavailable: no backend is available\n")
		resp.RetryAfter = "1"
	} else {
		resp.SetText(502, "502 Bad Gateway: "+strings.Join(skipped, "; ")+"\n")
	}
	h.b.log.request(req.Remote, nil, string(req.Method), string(req.Target), status, 0, 0, time.Since(start), skipped)
}

var (
	errConnect    = errors.New("connect failed")
	errNoResponse = errors.New("no response")
)

func isIdempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// backendResponse is a backend's answer: its head, and its body as it
// comes off the connection.
type backendResponse struct {
	head     httpx.ResponseHead
	body     io.Reader // nil: no body
	reusable bool      // the body is framed, so the connection can carry another request
}

// exchange sends req to be and reads the response head. A pooled
// connection that turns out closed is replaced once, transparently.
func (h *httpProxy) exchange(be *Backend, req *httpx.Request) (*backendResponse, *backendConn, error) {
	out := h.requestBytes(req)
	for try := 0; ; try++ {
		bc, reused, err := h.get(be)
		if err != nil {
			return nil, nil, errors.Join(errConnect, err)
		}
		began := time.Now()
		bc.c.SetDeadline(began.Add(h.b.Config().ServerIdle))
		_, err = bc.c.Write(out)
		var res *backendResponse
		if err == nil {
			res, err = readResponse(bc, req.IsHead())
		}
		if err != nil {
			bc.c.Close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, nil, err
			}
			if reused && try == 0 && !errors.Is(err, httpx.ErrMalformedResponse) {
				continue // the backend had closed the idle connection
			}
			return nil, nil, errors.Join(errNoResponse, err)
		}
		be.observe(time.Since(began))
		return res, bc, nil
	}
}

// maxResponseHead bounds a backend's response head.
const maxResponseHead = 64 << 10

// readResponse reads a response head from bc and frames its body.
func readResponse(bc *backendConn, head bool) (*backendResponse, error) {
	bc.head = bc.head[:0]
	for {
		line, err := bc.r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return nil, err
		}
		bc.head = append(bc.head, line...)
		if len(bc.head) > maxResponseHead {
			return nil, httpx.ErrMalformedResponse
		}
		if err == nil && (len(line) == 2 && line[0] == '\r' || len(line) == 1) && len(bc.head) > len(line) {
			break // the blank line that ends the head
		}
	}
	rh, err := httpx.ParseResponseHead(bc.head)
	if err != nil {
		return nil, err
	}
	res := &backendResponse{head: rh, reusable: rh.KeepAlive}
	switch {
	case head || rh.Status < 200 || rh.Status == 204 || rh.Status == 304:
	case rh.Chunked:
		res.body = httputil.NewChunkedReader(bc.r)
	case rh.ContentLength >= 0:
		res.body = io.LimitReader(bc.r, rh.ContentLength)
	default:
		res.body, res.reusable = bc.r, false // to the close
	}
	return res, nil
}

// hopByHop are the headers that belong to one connection, not the message.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "te": true, "trailer": true,
	"transfer-encoding": true, "upgrade": true, "proxy-authenticate": true, "proxy-authorization": true,
	"content-length": true, // re-framed by the proxy
}

// requestBytes writes the request as the backend gets it: HTTP/1.1, the
// client's end-to-end headers, forwarding headers added, the body by
// Content-Length.
func (h *httpProxy) requestBytes(req *httpx.Request) []byte {
	connTokens := map[string]bool{}
	var xff, fwd, via string
	for _, f := range req.Headers {
		name := strings.ToLower(string(f.Name))
		switch name {
		case "connection":
			for t := range strings.SplitSeq(string(f.Value), ",") {
				connTokens[strings.ToLower(strings.TrimSpace(t))] = true
			}
		case "x-forwarded-for":
			xff = string(f.Value)
		case "forwarded":
			fwd = string(f.Value)
		case "via":
			via = string(f.Value)
		}
	}
	client := "unknown"
	if a, ok := req.Remote.(*net.TCPAddr); ok {
		client = a.IP.String()
	}
	b := make([]byte, 0, 512+len(req.Body))
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.Target...)
	b = append(b, " HTTP/1.1\r\n"...)
	for _, f := range req.Headers {
		name := strings.ToLower(string(f.Name))
		if hopByHop[name] || connTokens[name] || name == "x-forwarded-for" || name == "x-forwarded-proto" ||
			name == "forwarded" || name == "via" {
			continue
		}
		b = append(append(append(append(b, f.Name...), ": "...), f.Value...), "\r\n"...)
	}
	b = appendList(b, "X-Forwarded-For", xff, client)
	b = append(b, "X-Forwarded-Proto: http\r\n"...)
	forwardedFor := client
	if strings.Contains(client, ":") {
		forwardedFor = `"[` + client + `]"`
	}
	b = appendList(b, "Forwarded", fwd, "for="+forwardedFor+";proto=http")
	b = appendList(b, "Via", via, "1."+strconv.Itoa(req.Minor)+" loadlab")
	if len(req.Body) > 0 || req.ContentLength >= 0 || req.Chunked {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(req.Body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Connection: keep-alive\r\n\r\n"...)
	return append(b, req.Body...)
}

// appendList appends a list header, adding value to what came.
func appendList(b []byte, name, came, value string) []byte {
	if came != "" {
		value = came + ", " + value
	}
	return append(append(append(append(b, name...), ": "...), value...), "\r\n"...)
}

// answer fills resp from the backend's response; the body streams through
// and the backend connection goes back to the pool when it is read.
func (h *httpProxy) answer(req *httpx.Request, resp *httpx.Response, be *Backend, bc *backendConn, res *backendResponse, start time.Time, skipped []string) {
	rh := &res.head
	resp.Status = rh.Status
	resp.NoDefaults = true
	var connection, via []byte
	httpx.EachField(fieldsOf(rh.Head), func(name, value []byte) error {
		switch {
		case bytes.EqualFold(name, []byte("connection")):
			connection = value
		case bytes.EqualFold(name, []byte("via")):
			via = value
		}
		return nil
	})
	fields := resp.Scratch[:0]
	httpx.EachField(fieldsOf(rh.Head), func(name, value []byte) error {
		lower := strings.ToLower(string(name))
		if !hopByHop[lower] && lower != "via" && !httpx.IsConnectionToken(connection, name) {
			fields = append(append(append(append(fields, name...), ": "...), value...), "\r\n"...)
		}
		return nil
	})
	fields = appendList(fields, "Via", string(via), "1."+strconv.Itoa(rh.Minor)+" loadlab")
	resp.Scratch, resp.Fields = fields, fields
	be.Requests.Add(1)
	be.BytesIn.Add(int64(len(req.Body)))
	body := &backendBody{h: h, bc: bc, res: res, be: be}
	resp.Stream, resp.ContentLength = body, rh.ContentLength
	switch {
	case res.body == nil:
		resp.ContentLength = max(rh.ContentLength, 0) // HEAD, 204, 304: the length, no body
		if rh.Status == 204 || rh.Status == 304 {
			resp.ContentLength = 0
		}
	case rh.Chunked:
		resp.ContentLength = -1 // re-framed by the server: chunked to HTTP/1.1, to the close for 1.0
	}
	body.logged = func(n int64) {
		h.b.log.request(req.Remote, be, string(req.Method), string(req.Target), rh.Status, int64(len(req.Body)), n, time.Since(start), skipped)
	}
}

// fieldsOf is the part of a head after its start line.
func fieldsOf(head []byte) []byte {
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		return head[i+1:]
	}
	return nil
}

// backendBody is a response body on its way to the client; closing it
// returns the backend connection to the pool if the body was read whole.
type backendBody struct {
	h      *httpProxy
	bc     *backendConn
	res    *backendResponse
	be     *Backend
	n      int64
	eof    bool
	logged func(int64)
	once   sync.Once
}

func (b *backendBody) Read(p []byte) (int, error) {
	if b.res.body == nil {
		b.eof = true
		return 0, io.EOF
	}
	n, err := b.res.body.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *backendBody) Close() error {
	b.once.Do(func() {
		if !b.eof && b.res.body != nil { // not read to its end (the client went away): drain a little
			if _, err := io.CopyN(io.Discard, b.res.body, 64<<10); err == io.EOF {
				b.eof = true
			}
		}
		if b.res.body == nil {
			b.eof = true
		}
		b.be.Active.Add(-1)
		b.be.BytesOut.Add(b.n)
		if b.eof && b.res.reusable {
			b.h.put(b.bc)
		} else {
			b.bc.c.Close()
		}
		b.logged(b.n)
	})
	return nil
}

// get returns an idle connection to be, or a new one.
func (h *httpProxy) get(be *Backend) (*backendConn, bool, error) {
	h.mu.Lock()
	for list := h.idle[be]; len(list) > 0; list = h.idle[be] {
		bc := list[len(list)-1]
		h.idle[be] = list[:len(list)-1]
		if time.Since(bc.idleAt) < h.b.Config().ServerIdle {
			h.mu.Unlock()
			return bc, true, nil
		}
		bc.c.Close()
	}
	h.mu.Unlock()
	d := h.b.dialer(h.b.Config())
	c, err := d.Dial("tcp", be.Addr())
	if err != nil {
		return nil, false, err
	}
	be.Total.Add(1)
	return &backendConn{be: be, c: c, r: bufio.NewReaderSize(c, 16<<10)}, false, nil
}

func (h *httpProxy) put(bc *backendConn) {
	bc.idleAt = time.Now()
	bc.c.SetDeadline(time.Time{})
	h.mu.Lock()
	defer h.mu.Unlock()
	if list := h.idle[bc.be]; len(list) < maxIdlePerBackend && !h.b.draining.Load() {
		h.idle[bc.be] = append(list, bc)
		return
	}
	bc.c.Close()
}

// closeIdle closes every pooled backend connection.
func (h *httpProxy) closeIdle() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for be, list := range h.idle {
		for _, bc := range list {
			bc.c.Close()
		}
		delete(h.idle, be)
	}
}
