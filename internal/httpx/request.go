package httpx

import "net"

// Header is one header field as it arrived; both slices point into the
// connection's input.
type Header struct {
	Name, Value []byte
}

// Request is one parsed request. Its slices point into the caller's buffer
// and the parser's, so it is valid only until the next Parse.
type Request struct {
	Method []byte
	Target []byte // the request-target as sent
	Path   []byte // the target's path, percent-decoded once
	Query  []byte // after '?', still encoded
	Minor  int    // 0 for HTTP/1.0, 1 for HTTP/1.1

	Headers         []Header
	Host            []byte
	ContentType     []byte
	IfModifiedSince []byte
	ContentLength   int64 // -1 when absent
	Chunked         bool
	ExpectContinue  bool

	// KeepAlive follows the version's default and the Connection header:
	// HTTP/1.0 closes unless "keep-alive", HTTP/1.1 keeps unless "close".
	KeepAlive bool

	Body []byte

	// Remote is the client's address, set by the server, for handlers that
	// need it (a proxy's X-Forwarded-For).
	Remote net.Addr
}

// IsHead reports whether the response must have no body.
func (r *Request) IsHead() bool { return string(r.Method) == "HEAD" }

// Header returns the first value of the named field, matched without regard
// to case, or nil.
func (r *Request) Header(name string) []byte {
	for _, h := range r.Headers {
		if equalFold(h.Name, name) {
			return h.Value
		}
	}
	return nil
}
