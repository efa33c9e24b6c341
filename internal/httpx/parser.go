// Package httpx speaks HTTP/1.x without touching a socket: an incremental
// request parser that takes bytes in whatever pieces a read returned, and a
// response writer that appends heads to a caller's buffer.
package httpx

import (
	"bytes"
)

// Limits bound what a client may send. Each has its own status code, so a
// client learns which limit it hit.
type Limits struct {
	MaxRequestLine int   // longest request line; longer is 414
	MaxHead        int   // longest head (request line and headers); longer is 431
	MaxHeaders     int   // most header fields; more is 431
	MaxBody        int64 // largest request body; larger is 413
}

// DefaultLimits are the limits nginx users expect: 8 KiB request line,
// 16 KiB head, 100 fields, 1 MiB body.
func DefaultLimits() Limits {
	return Limits{MaxRequestLine: 8 << 10, MaxHead: 16 << 10, MaxHeaders: 100, MaxBody: 1 << 20}
}

// Error is a request the parser refuses; Status is the response code to send
// before closing the connection.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return StatusText(e.Status) + ": " + e.Reason }

func fail(status int, reason string) *Error { return &Error{Status: status, Reason: reason} }

var errBareLF = fail(400, "bare LF in the request head; lines end with CRLF")

// Parser turns a connection's buffered input into requests. The caller keeps
// the unconsumed input at the start of its buffer and passes it again with
// whatever arrived since; the parser remembers how far it has looked, so a
// byte-by-byte client costs linear work. A Parser serves one connection.
type Parser struct {
	Limits Limits

	req      Request
	head     HeadScanner
	started  bool // the head's first byte (after empty lines) has been seen
	headEnd  int  // bytes in the head once it is parsed, else 0
	skip     int  // empty lines before the request line, ignored as RFC 9112 §2.2 allows
	chunks   ChunkedScanner
	bodyRead int // bytes of a chunked body the scanner has taken

	lineChecked  bool // the request line was checked before the head ended
	sentContinue bool

	pathBuf []byte
	bodyBuf []byte
	headers []Header
}

// NewParser returns a parser with the given limits.
func NewParser(l Limits) *Parser { return &Parser{Limits: l} }

// Reset readies p for a new connection, keeping its buffers.
func (p *Parser) Reset() {
	*p = Parser{Limits: p.Limits, pathBuf: p.pathBuf[:0], bodyBuf: p.bodyBuf[:0], headers: p.headers[:0]}
}

// Parse looks for one whole request at the start of buf. It returns the
// request and how many bytes it took; or nil, 0, nil when more input is
// needed; or an *Error when the input is bad, after which the connection
// must be answered with Error.Status and closed. The request points into buf
// and into the parser, and is valid until the next call. Between calls the
// caller may move its bytes to another buffer, as long as their order stays.
func (p *Parser) Parse(buf []byte) (*Request, int, error) {
	if p.headEnd == 0 {
		done, err := p.findHead(buf)
		if err != nil || !done {
			return nil, 0, err
		}
		if err := p.parseHead(buf[p.skip:p.headEnd]); err != nil {
			return nil, 0, err
		}
		if p.req.Chunked {
			p.chunks.Reset()
			p.chunks.Limit, p.bodyRead = p.Limits.MaxBody, 0
			p.bodyBuf = p.bodyBuf[:0]
		}
	} else if err := p.parseHead(buf[p.skip:p.headEnd]); err != nil {
		// The head came in an earlier call and the caller may since have
		// moved its buffer: parse it again so the request points at buf.
		return nil, 0, err
	}
	r := &p.req
	end := p.headEnd
	switch {
	case r.Chunked:
		n, done, err := p.chunks.Scan(buf[p.headEnd+p.bodyRead:], &p.bodyBuf)
		p.bodyRead += n
		if err != nil || !done {
			return nil, 0, err
		}
		r.Body = p.bodyBuf
		end += p.bodyRead
	case r.ContentLength > 0:
		if int64(len(buf)-p.headEnd) < r.ContentLength {
			return nil, 0, nil
		}
		end += int(r.ContentLength)
		r.Body = buf[p.headEnd:end]
	}
	p.head.Reset()
	p.started, p.headEnd, p.skip, p.lineChecked, p.sentContinue = false, 0, 0, false, false
	return r, end, nil
}

// NeedsContinue reports, once per request, that the head asked for
// "Expect: 100-continue" and the body has not arrived: the server should
// send "HTTP/1.1 100 Continue" so the client goes on.
func (p *Parser) NeedsContinue() bool {
	if p.headEnd == 0 || p.sentContinue || !p.req.ExpectContinue {
		return false
	}
	p.sentContinue = true
	return true
}

// Expected is how many bytes of input the request under way takes, head
// and body, once its head is parsed and its body has a Content-Length;
// 0 while that is not known. A server that holds requests whole reserves
// it up front (internal/budget), so that a request it has begun to take
// is not refused halfway for want of memory.
func (p *Parser) Expected() int {
	if p.headEnd == 0 || p.req.Chunked || p.req.ContentLength <= 0 {
		return 0
	}
	return p.headEnd + int(p.req.ContentLength)
}

// InHead reports whether part of a request head has arrived but not all of
// it; a server uses it to choose between its header and idle timeouts.
func (p *Parser) InHead(buffered int) bool { return p.headEnd == 0 && buffered > 0 }

// findHead searches buf for the blank line that ends the head, refusing bare
// LFs and over-long lines as it goes.
func (p *Parser) findHead(buf []byte) (bool, error) {
	if !p.started {
		for p.skip+1 < len(buf) && buf[p.skip] == '\r' && buf[p.skip+1] == '\n' {
			p.skip += 2
			if p.skip > 8 {
				return false, fail(400, "empty lines before the request line")
			}
		}
		if len(buf) == p.skip || len(buf) == p.skip+1 && buf[p.skip] == '\r' {
			return false, nil // the start of another empty line, or of nothing
		}
		p.started = true
	}
	b := buf[p.skip:]
	if err := checkMethodPrefix(b); err != nil {
		return false, err
	}
	end := p.head.Scan(b)
	first := p.head.FirstLine(b)
	line := first
	if line < 0 { // not ended yet: as long as it is, less a CR whose LF may follow
		line = len(b) - boolInt(b[len(b)-1] == '\r')
	}
	if line > p.Limits.MaxRequestLine {
		return false, fail(414, "request line longer than the limit")
	}
	if first >= 0 && !p.lineChecked && (end < 0 || end > p.Limits.MaxHead || p.head.BareLF()) {
		// A bad request line is answered as soon as it ends, as nginx
		// does, not at the header timeout: an HTTP/0.9 request ("GET /"
		// and nothing more) never sends the blank line. Checked here only
		// when the head cannot be parsed yet, so that errors come in the
		// order their bytes do however the input is split; a whole, good
		// head has its line parsed once, in parseHead.
		if b[first] == '\n' {
			return false, errBareLF
		}
		if err := p.parseRequestLine(b[:first]); err != nil {
			return false, err
		}
		p.lineChecked = true
	}
	if p.head.BareLF() {
		return false, errBareLF
	}
	if end < 0 {
		if len(b) > p.Limits.MaxHead {
			return false, fail(431, "request head larger than the limit")
		}
		return false, nil
	}
	if end > p.Limits.MaxHead {
		return false, fail(431, "request head larger than the limit")
	}
	p.headEnd = p.skip + end
	return true, nil
}

// checkMethodPrefix refuses input that cannot start a request as soon as the
// first bytes show it, so garbage is answered at once instead of after a
// timeout.
func checkMethodPrefix(b []byte) error {
	for i, c := range b {
		if c == ' ' && i > 0 {
			return nil
		}
		if !isTokenChar(c) || i >= 32 {
			return fail(400, "malformed request line")
		}
	}
	return nil
}

// parseHead fills p.req from a complete head (request line through the blank line).
func (p *Parser) parseHead(head []byte) error {
	if p.headers == nil {
		p.headers = make([]Header, 0, 16)
	}
	p.req = Request{Headers: p.headers[:0], ContentLength: -1}
	r := &p.req
	nl := bytes.IndexByte(head, '\n')
	if err := p.parseRequestLine(head[:nl-1]); err != nil {
		return err
	}
	var hosts int
	var clSeen, otherCoding bool
	var keepAlive, closeConn bool
	rest := head[nl+1:]
	for len(rest) > 2 {
		nl := bytes.IndexByte(rest, '\n')
		line := rest[:nl-1]
		rest = rest[nl+1:]
		if line[0] == ' ' || line[0] == '\t' {
			return fail(400, "obsolete line folding in a header")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fail(400, "header line without a name and colon")
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return fail(400, "invalid character in a header name")
			}
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return fail(400, "control character in a header value")
			}
		}
		if len(r.Headers) >= p.Limits.MaxHeaders {
			return fail(431, "too many header fields")
		}
		r.Headers = append(r.Headers, Header{Name: name, Value: value})
		switch {
		case equalFold(name, "host"):
			hosts++
			r.Host = value
			if !validHost(value) {
				return fail(400, "invalid Host header")
			}
		case equalFold(name, "content-length"):
			n, ok := parseDecimal(value)
			if !ok {
				return fail(400, "invalid Content-Length")
			}
			if clSeen && n != r.ContentLength {
				return fail(400, "two different Content-Length values")
			}
			clSeen, r.ContentLength = true, n
		case equalFold(name, "transfer-encoding"):
			// RFC 9112 §6.3: chunked must be the final coding, once, or the
			// body's length cannot be known: 400. Another coding before
			// it is one this server does not decode: 501.
			var bad bool
			forEachToken(value, func(t []byte) {
				switch {
				case r.Chunked:
					bad = true // something after chunked, or chunked twice
				case equalFold(t, "chunked"):
					r.Chunked = true
				default:
					otherCoding = true
				}
			})
			if bad || !r.Chunked {
				return fail(400, "chunked is not the final transfer coding")
			}
		case equalFold(name, "connection"):
			forEachToken(value, func(t []byte) {
				if equalFold(t, "close") {
					closeConn = true
				} else if equalFold(t, "keep-alive") {
					keepAlive = true
				}
			})
		case equalFold(name, "expect"):
			r.ExpectContinue = equalFold(value, "100-continue")
		case equalFold(name, "content-type"):
			r.ContentType = value
		case equalFold(name, "if-modified-since"):
			r.IfModifiedSince = value
		}
	}
	p.headers = r.Headers
	switch {
	case otherCoding:
		return fail(501, "only the chunked transfer coding is supported")
	case r.Chunked && clSeen:
		return fail(400, "both Content-Length and Transfer-Encoding")
	case r.Chunked && r.Minor == 0:
		return fail(400, "Transfer-Encoding in an HTTP/1.0 request")
	case hosts > 1:
		return fail(400, "more than one Host header")
	case hosts == 0 && r.Minor >= 1:
		return fail(400, "HTTP/1.1 request without a Host header")
	case r.ContentLength > p.Limits.MaxBody:
		return fail(413, "request body larger than the limit")
	}
	if r.Minor >= 1 {
		r.KeepAlive = !closeConn
	} else {
		r.KeepAlive = keepAlive && !closeConn
	}
	return nil
}

// parseRequestLine reads "METHOD SP request-target SP HTTP/1.x".
func (p *Parser) parseRequestLine(line []byte) error {
	r := &p.req
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return fail(400, "malformed request line")
	}
	r.Method = line[:sp1]
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 && len(rest) > 0 {
		return fail(400, "request line without an HTTP version (HTTP/0.9 is not served; end it with HTTP/1.1)")
	}
	if sp2 <= 0 {
		return fail(400, "malformed request line")
	}
	r.Target = rest[:sp2]
	proto := rest[sp2+1:]
	if len(proto) != 8 || string(proto[:5]) != "HTTP/" || proto[6] != '.' ||
		!isDigit(proto[5]) || !isDigit(proto[7]) {
		return fail(400, "malformed HTTP version")
	}
	if proto[5] != '1' {
		return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported")
	}
	r.Minor = int(proto[7] - '0')
	if r.Minor > 1 {
		r.Minor = 1
	}
	for _, c := range r.Target {
		if c <= ' ' || c == 0x7f {
			return fail(400, "invalid character in the request target")
		}
	}
	return p.parseTarget()
}

// parseTarget splits the target into path and query, decodes the path's
// percent-escapes once and normalizes it as nginx does (merge_slashes,
// "." and ".." resolved; an encoded slash is a slash). It refuses what
// could name a file outside a document root: ".." above the root,
// backslashes and NUL bytes.
func (p *Parser) parseTarget() error {
	r := &p.req
	t := r.Target
	switch {
	case t[0] == '/':
	case len(t) == 1 && t[0] == '*':
		if string(r.Method) != "OPTIONS" {
			return fail(400, "the request target * is for OPTIONS only")
		}
		r.Path = t
		return nil
	case hasPrefixFold(t, "http://") || hasPrefixFold(t, "https://"):
		t = t[bytes.Index(t, []byte("//"))+2:]
		slash := bytes.IndexByte(t, '/')
		if slash < 0 {
			t = []byte("/")
		} else {
			t = t[slash:]
		}
	default:
		return fail(400, "request target is not a path")
	}
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		r.Query = t[q+1:]
		t = t[:q]
	}
	if i := bytes.IndexByte(t, '#'); i >= 0 {
		t = t[:i]
	}
	out := p.pathBuf[:0]
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c == '%' {
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return fail(400, "malformed percent-escape in the path")
			}
			c = unhex(t[i+1])<<4 | unhex(t[i+2])
			i += 2
		}
		if c == 0 || c == '\\' {
			return fail(400, "NUL or backslash in the path")
		}
		out = append(out, c)
	}
	p.pathBuf = out
	clean, ok := cleanPath(out)
	if !ok {
		return fail(400, "the path climbs above the root with ..")
	}
	r.Path = clean
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
