package httpx

import (
	"io"
	"strconv"
)

// Response is what a handler fills in; the server turns it into bytes with
// AppendHead and the body. A server keeps one per connection and resets it
// for each request, so filling it allocates nothing.
type Response struct {
	Status       int
	ContentType  string
	Location     string
	Allow        string
	RetryAfter   string
	LastModified string // already in IMF-fixdate
	ETag         string // quoted, as it goes on the wire
	ContentRange string // a 206's or 416's "bytes a-b/size"
	AcceptRanges bool   // "Accept-Ranges: bytes": a file, which ranges may be asked of

	// Body is the whole body in memory; or Stream, of ContentLength bytes
	// (-1: unknown until it ends), is copied out and closed by the server.
	Body          []byte
	Stream        io.ReadCloser
	ContentLength int64
	// Chunked is set by the server when it sends a Stream of unknown
	// length to an HTTP/1.1 client.
	Chunked bool

	// Fields are more header lines, each "Name: value\r\n", sent as they
	// are: a proxy passes a backend's headers here. With NoDefaults the
	// server adds no Server and Date of its own, since Fields carry them.
	Fields     []byte
	NoDefaults bool

	// Close asks the server to close the connection after this response.
	Close bool

	// Scratch is a buffer the handler may build Body in; it survives Reset.
	Scratch []byte
}

// Reset clears r for the next request, keeping Scratch's memory.
func (r *Response) Reset() {
	*r = Response{Scratch: r.Scratch[:0]}
}

// SetText sets a complete plain-text response.
func (r *Response) SetText(status int, body string) {
	r.Status = status
	r.ContentType = "text/plain; charset=utf-8"
	r.Scratch = append(r.Scratch[:0], body...)
	r.Body = r.Scratch
}

// SetError sets the plain-text response for a refused request.
func (r *Response) SetError(e *Error) {
	r.SetText(e.Status, StatusText(e.Status)+": "+e.Reason+"\n")
	r.Close = true
}

// Length is the body's length as sent in Content-Length.
func (r *Response) Length() int64 {
	if r.Stream != nil {
		return r.ContentLength
	}
	return int64(len(r.Body))
}

// HasBody reports whether the body goes on the wire: not for HEAD, and
// never for 1xx, 204 or 304.
func (r *Response) HasBody(req *Request) bool {
	return !req.IsHead() && bodyAllowed(r.Status)
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

// HeadOptions are the per-server parts of every head.
type HeadOptions struct {
	Server   string // Server header, e.g. loadlab/0.1.0
	ServedBy string // X-Served-By header when not empty
}

// AppendHead appends the status line and headers of r to dst. keepAlive is
// the server's decision for the connection after this response.
func AppendHead(dst []byte, r *Response, keepAlive bool, o *HeadOptions) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, StatusText(r.Status)...)
	dst = append(dst, "\r\n"...)
	if !r.NoDefaults {
		dst = appendField(dst, "Server", o.Server)
		dst = append(dst, "Date: "...)
		dst = AppendDate(dst)
		dst = append(dst, "\r\n"...)
	}
	if r.ContentType != "" {
		dst = appendField(dst, "Content-Type", r.ContentType)
	}
	if bodyAllowed(r.Status) {
		if r.Chunked {
			dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
		} else if n := r.Length(); n >= 0 {
			dst = append(dst, "Content-Length: "...)
			dst = strconv.AppendInt(dst, n, 10)
			dst = append(dst, "\r\n"...)
		}
	}
	if r.LastModified != "" {
		dst = appendField(dst, "Last-Modified", r.LastModified)
	}
	if r.ETag != "" {
		dst = appendField(dst, "ETag", r.ETag)
	}
	if r.ContentRange != "" {
		dst = appendField(dst, "Content-Range", r.ContentRange)
	}
	if r.AcceptRanges {
		dst = append(dst, "Accept-Ranges: bytes\r\n"...)
	}
	if r.Location != "" {
		dst = appendField(dst, "Location", r.Location)
	}
	if r.Allow != "" {
		dst = appendField(dst, "Allow", r.Allow)
	}
	if r.RetryAfter != "" {
		dst = appendField(dst, "Retry-After", r.RetryAfter)
	}
	dst = append(dst, r.Fields...)
	if o.ServedBy != "" {
		dst = appendField(dst, "X-Served-By", o.ServedBy)
	}
	if keepAlive {
		return append(dst, "Connection: keep-alive\r\n\r\n"...)
	}
	return append(dst, "Connection: close\r\n\r\n"...)
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// Continue is the interim response to "Expect: 100-continue".
const Continue = "HTTP/1.1 100 Continue\r\n\r\n"

// StatusText is the reason phrase for the codes loadlab sends.
func StatusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 200:
		return "OK"
	case 204:
		return "No Content"
	case 206:
		return "Partial Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 304:
		return "Not Modified"
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 412:
		return "Precondition Failed"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Range Not Satisfiable"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	case 508:
		return "Loop Detected"
	}
	return "Status " + strconv.Itoa(code)
}
