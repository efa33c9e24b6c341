package httpx

import (
	"bytes"
	"errors"
)

// ResponseHead is what a client or a proxy needs of a response head: the
// status, how the body is framed, and whether the connection stays open.
// Its Head slice points into the caller's bytes.
type ResponseHead struct {
	Status        int
	Minor         int   // 0 for HTTP/1.0, 1 for HTTP/1.1
	ContentLength int64 // -1 when absent
	Chunked       bool
	KeepAlive     bool   // by the version's default and the Connection header
	Server        []byte // the Server header's value
	CacheControl  bool   // the response says how it may be cached
	Head          []byte // the whole head, status line to blank line
}

// ErrMalformedResponse is a response head that cannot be read as HTTP/1.x.
var ErrMalformedResponse = errors.New("malformed response head")

// ParseResponseHead reads a complete response head (status line through
// the blank line, CRLF or bare LF as servers send it), as leniently as a
// client such as ab; two different Content-Lengths are refused all the
// same, since no reading of them is safe.
func ParseResponseHead(head []byte) (ResponseHead, error) { return parseResponseHead(head, false) }

// ParseResponseHeadStrict is ParseResponseHead for a proxy, which passes
// the head on to clients that may read it otherwise: as strict as the
// request parser, it also refuses a bare CR, a NUL or any other control
// byte in a field, a folded line, and a field name that is not a token
// (a space before the colon, say). HAProxy answers such a response 502.
func ParseResponseHeadStrict(head []byte) (ResponseHead, error) { return parseResponseHead(head, true) }

func parseResponseHead(head []byte, strict bool) (ResponseHead, error) {
	r := ResponseHead{ContentLength: -1, Head: head}
	nl := bytes.IndexByte(head, '\n')
	if nl < 0 {
		return r, ErrMalformedResponse
	}
	line := bytes.TrimRight(head[:nl], "\r")
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		!isDigit(line[7]) || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) {
		return r, ErrMalformedResponse
	}
	r.Minor = int(line[7] - '0')
	r.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.Status < 100 {
		return r, ErrMalformedResponse
	}
	var closeConn, keepAlive bool
	fields := head[nl+1:]
	if strict && !strictFields(fields) {
		return r, ErrMalformedResponse
	}
	err := EachField(fields, func(name, value []byte) error {
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseDecimal(value)
			if !ok || r.ContentLength >= 0 && n != r.ContentLength {
				return ErrMalformedResponse
			}
			r.ContentLength = n
		case equalFold(name, "transfer-encoding"):
			forEachToken(value, func(t []byte) { r.Chunked = r.Chunked || equalFold(t, "chunked") })
		case equalFold(name, "connection"):
			forEachToken(value, func(t []byte) {
				closeConn = closeConn || equalFold(t, "close")
				keepAlive = keepAlive || equalFold(t, "keep-alive")
			})
		case equalFold(name, "server"):
			r.Server = value
		case equalFold(name, "cache-control"):
			r.CacheControl = true
		}
		return nil
	})
	r.KeepAlive = !closeConn && (r.Minor >= 1 || keepAlive)
	return r, err
}

// strictFields reports whether every field line is name ":" value with a
// token for a name and no control byte but HTAB in the value; CR may only
// end a line.
func strictFields(fields []byte) bool {
	for len(fields) > 0 {
		nl := bytes.IndexByte(fields, '\n')
		if nl < 0 {
			nl = len(fields)
		}
		line := fields[:nl]
		fields = fields[min(nl+1, len(fields)):]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			return true
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false // a folded line starts with a space, so it has no name either
		}
		for _, c := range line[:colon] {
			if !isTokenChar(c) {
				return false
			}
		}
		for _, c := range line[colon+1:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return false
			}
		}
	}
	return true
}

// EachField calls fn with each header field of fields (the lines after a
// start line, up to the blank line), stopping at fn's first error.
func EachField(fields []byte, fn func(name, value []byte) error) error {
	for len(fields) > 0 {
		nl := bytes.IndexByte(fields, '\n')
		if nl < 0 {
			nl = len(fields)
		}
		line := bytes.TrimRight(fields[:nl], "\r")
		fields = fields[min(nl+1, len(fields)):]
		if len(line) == 0 {
			return nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 {
			return ErrMalformedResponse
		}
		if err := fn(name, trimOWS(value)); err != nil {
			return err
		}
	}
	return nil
}

// IsConnectionToken reports whether name is listed in a Connection
// header value: such a field belongs to the connection, not the message.
func IsConnectionToken(connection, name []byte) bool {
	found := false
	forEachToken(connection, func(t []byte) { found = found || bytes.EqualFold(t, name) })
	return found
}
