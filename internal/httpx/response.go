package httpx

import (
	"io/fs"
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

	// Body is the whole body in memory; or File, of ContentLength bytes, is
	// streamed from disk and closed by the server.
	Body          []byte
	File          fs.File
	ContentLength int64

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
	if r.File != nil {
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
	dst = append(dst, "\r\nServer: "...)
	dst = append(dst, o.Server...)
	dst = append(dst, "\r\nDate: "...)
	dst = AppendDate(dst)
	if r.ContentType != "" {
		dst = appendField(dst, "Content-Type", r.ContentType)
	}
	if bodyAllowed(r.Status) {
		dst = append(dst, "\r\nContent-Length: "...)
		dst = strconv.AppendInt(dst, r.Length(), 10)
	}
	if r.LastModified != "" {
		dst = appendField(dst, "Last-Modified", r.LastModified)
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
	if o.ServedBy != "" {
		dst = appendField(dst, "X-Served-By", o.ServedBy)
	}
	if keepAlive {
		dst = append(dst, "\r\nConnection: keep-alive\r\n\r\n"...)
	} else {
		dst = append(dst, "\r\nConnection: close\r\n\r\n"...)
	}
	return dst
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, "\r\n"...)
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	return append(dst, value...)
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
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
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
	}
	return "Status " + strconv.Itoa(code)
}
