package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"loadlab/internal/httpx"
	"loadlab/internal/proxyproto"
)

// session is one connection's HTTP state, the same for every model: it parses
// input, runs the handler and leaves response bytes in out for the model to
// write. It never touches the socket.
type session struct {
	core   *core
	parser *httpx.Parser
	resp   httpx.Response
	out    []byte
	in     []byte // input buffer of the blocking models
	remote net.Addr

	proxied   bool      // the PROXY header is read, or none is expected
	served    int       // requests answered on this connection
	headStart time.Time // when the head being read (or awaited) began
	active    time.Time // the last input, or the last answer written
}

// getSession takes a session from the server's pool: a connection's
// buffers are worth keeping, since a load test opens thousands a second.
func (c *core) getSession(remote net.Addr) *session {
	s, _ := c.sessions.Get().(*session)
	if s == nil {
		s = &session{core: c, parser: httpx.NewParser(c.cfg.Limits), out: make([]byte, 0, 1024)}
	}
	s.remote, s.proxied, s.served = remote, !c.cfg.AcceptProxy, 0
	s.headStart, s.active = time.Now(), time.Now()
	return s
}

// putSession returns s to the pool once its connection is closed.
func (c *core) putSession(s *session) {
	if cap(s.out) > 64<<10 || cap(s.resp.Scratch) > 64<<10 || cap(s.in) > 64<<10 {
		return // let an unusually large buffer go
	}
	s.parser.Reset()
	s.resp.Reset()
	s.out, s.remote = s.out[:0], nil
	c.sessions.Put(s)
}

// errNotProxied is a connection that should have begun with a PROXY
// header and did not: it is closed without a word, as HAProxy's
// accept-proxy does.
var errNotProxied = errors.New("no PROXY header")

// next finds the next request at the start of data, the connection's
// unread input: the PROXY header first, when the server expects one. It
// returns the request (nil while more input is needed) and the bytes it
// used, which may be the header alone. An error is an *httpx.Error to
// answer before closing, or errNotProxied.
func (s *session) next(data []byte) (*httpx.Request, int, error) {
	used := 0
	if !s.proxied {
		addr, n, err := proxyproto.Parse(data)
		if err != nil {
			return nil, 0, errNotProxied
		}
		if n == 0 {
			return nil, 0, nil
		}
		s.proxied, used = true, n
		if addr != nil {
			s.remote = addr
		}
	}
	req, n, err := s.parser.Parse(data[used:])
	if err != nil || req == nil {
		return nil, used, err
	}
	s.served++
	return req, used + n, nil
}

// arrived records input that came at now; buffered is what was waiting
// unread before it.
func (s *session) arrived(now time.Time, buffered int) {
	if buffered == 0 {
		s.headStart = now // a head starts
	}
	s.active = now
}

// answered records that an answer was written (or, for the async model,
// queued) at now: the next head, and idleness, count from then.
func (s *session) answered(now time.Time) { s.headStart, s.active = now, now }

// readDeadline is when a connection waiting for input, with buffered
// bytes of a request unread, gives up, and whether it is then answered
// 408 (a request under way) or closed in silence (none is). A new
// connection owes its first head within the header timeout, as does a
// head under way; between requests, and between a body's reads, the
// idle timeout counts from the last byte, as nginx's keepalive_timeout
// and client_body_timeout do.
func (s *session) readDeadline(buffered int) (time.Time, bool) {
	cfg := &s.core.cfg
	switch {
	case buffered == 0 && s.served == 0:
		return s.headStart.Add(cfg.HeaderTimeout), false
	case s.parser.InHead(buffered):
		return s.headStart.Add(cfg.HeaderTimeout), true
	}
	return s.active.Add(cfg.IdleTimeout), buffered > 0
}

// inlineBody is the largest body copied into out; a larger one is written
// from where it lies (an embedded file, say) after out.
const inlineBody = 16 << 10

// reply is the part of a response that respond did not put into out.
type reply struct {
	body      []byte        // a large in-memory body
	stream    io.ReadCloser // to copy out after out: size bytes, or to its end when size < 0
	size      int64
	chunked   bool // send stream in chunked encoding
	keepAlive bool
}

// respond runs req through the handler and appends the response to out.
// draining asks for "Connection: close", as during a graceful stop.
func (s *session) respond(req *httpx.Request, draining bool) reply {
	var start time.Time
	if s.core.cfg.Log != nil {
		start = time.Now()
	}
	r := &s.resp
	r.Reset()
	req.Remote = s.remote
	s.serve(req)
	rep := reply{keepAlive: req.KeepAlive && !r.Close && !draining}
	if r.Stream != nil && r.ContentLength < 0 && r.HasBody(req) {
		// A body of unknown length: chunked to HTTP/1.1, ended by the close
		// for HTTP/1.0.
		if req.Minor >= 1 {
			r.Chunked, rep.chunked = true, true
		} else {
			rep.keepAlive = false
		}
	}
	s.out = httpx.AppendHead(s.out, r, rep.keepAlive, &s.core.head)
	var sent int64
	switch {
	case !r.HasBody(req):
		if r.Stream != nil {
			r.Stream.Close()
		}
	case r.Stream != nil:
		rep.stream, rep.size, sent = r.Stream, r.ContentLength, max(r.ContentLength, 0)
	case len(r.Body) > inlineBody:
		rep.body, sent = r.Body, int64(len(r.Body))
	default:
		s.out = append(s.out, r.Body...)
		sent = int64(len(r.Body))
	}
	if s.core.cfg.Log != nil {
		s.log(string(req.Method), string(req.Target), r.Status, sent, time.Since(start))
	}
	return rep
}

// serve calls the handler; a panic becomes a 500 and a closed connection,
// never a crash of the server.
func (s *session) serve(req *httpx.Request) {
	defer func() {
		if p := recover(); p != nil {
			s.core.panicked("handler for "+string(req.Path), p, debug.Stack())
			s.resp.Reset()
			s.resp.SetText(500, "500 Internal Server Error\n")
			s.resp.Close = true
		}
	}()
	s.core.handler.Serve(req, &s.resp)
}

// refuse appends the answer to a request the parser refused; the model
// closes the connection after writing it.
func (s *session) refuse(e *httpx.Error) {
	s.resp.Reset()
	s.resp.SetError(e)
	s.out = httpx.AppendHead(s.out, &s.resp, false, &s.core.head)
	s.out = append(s.out, s.resp.Body...)
	if s.core.cfg.Log != nil {
		s.log("-", "-", e.Status, int64(len(s.resp.Body)), 0)
	}
}

// panicked logs a recovered panic in one line, with its stack, and
// counts it; the connection it happened on is answered 500 or closed, and
// serving goes on.
func (c *core) panicked(where string, p any, stack []byte) {
	n := c.panics.Add(1)
	slog.Error("panic recovered; serving goes on", "in", where, "panic", fmt.Sprint(p), "panics", n, "stack", string(stack))
}

// timeoutError is the 408 sent to a client too slow to send its request.
var timeoutError = &httpx.Error{Status: 408, Reason: "request not received in time"}

// serviceUnavailable is the whole answer to a connection over a limit.
func (c *core) serviceUnavailable(why string) []byte {
	var r httpx.Response
	r.SetText(503, "503 Service Unavailable: "+why+"\n")
	r.RetryAfter = "1"
	return append(httpx.AppendHead(nil, &r, false, &c.head), r.Body...)
}

func (s *session) log(method, target string, status int, bytes int64, d time.Duration) {
	s.core.cfg.Log.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("client", addrString(s.remote)),
		slog.String("method", method),
		slog.String("path", target),
		slog.Int("status", status),
		slog.Int64("bytes", bytes),
		slog.Duration("duration", d),
		slog.String("model", s.core.cfg.Model),
		slog.String("name", s.core.cfg.Name))
}

func addrString(a net.Addr) string {
	if a == nil {
		return "-"
	}
	return a.String()
}
