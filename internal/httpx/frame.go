package httpx

import "bytes"

// The framer: where a message's head ends, and where its body does. The
// request parser, the balancer and bench all frame with these, so that
// the same bytes end in the same place for every one of them.

// HeadScanner finds the blank line that ends a message head, in input
// that arrives in pieces. Lines may end in CRLF or, as some servers send
// them, a bare LF: a lenient reader (bench, like ab) takes both, a strict
// one (the request parser, the balancer for what it passes on) refuses
// what BareLF reports. It remembers how far it has looked, so a head that
// trickles in byte by byte costs linear work.
type HeadScanner struct {
	scanned int  // bytes already looked at
	firstLF int  // index+1 of the first line's LF; 0 until it is seen
	bareLF  bool // some line ended with an LF alone
}

// Reset readies s for a new head.
func (s *HeadScanner) Reset() { *s = HeadScanner{} }

// Scan looks at b, the input from the head's first byte — the bytes an
// earlier call saw unchanged, and more — and returns the head's length
// through its blank line, or -1 while it has not ended.
func (s *HeadScanner) Scan(b []byte) int {
	for i := s.scanned; ; i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			s.scanned = len(b)
			return -1
		}
		i += j
		prev := i - 1 // where the line before this one ended, if this one is empty
		if i > 0 && b[i-1] == '\r' {
			prev--
		} else {
			s.bareLF = true
		}
		if s.firstLF == 0 {
			s.firstLF = i + 1
		}
		if prev >= 0 && b[prev] == '\n' {
			s.scanned = i + 1
			return i + 1
		}
	}
}

// FirstLine returns the length of the first line without its line end,
// or -1 when its end has not come yet.
func (s *HeadScanner) FirstLine(b []byte) int {
	if s.firstLF == 0 {
		return -1
	}
	n := s.firstLF - 1
	if n > 0 && b[n-1] == '\r' {
		n--
	}
	return n
}

// BareLF reports whether a line scanned so far ended with an LF alone.
func (s *HeadScanner) BareLF() bool { return s.bareLF }

// Framing is how the end of a message body is found (RFC 9112 §6.3).
type Framing int

const (
	NoBody   Framing = iota // HEAD, 1xx, 204, 304: the head is the message
	ByLength                // Content-Length bytes
	ByChunks                // chunked, to its last chunk and trailer
	ByClose                 // everything until the connection closes
)

// ResponseFraming returns how the body of rh is framed; isHead when it
// answers a HEAD request. Chunked wins over a Content-Length, as RFC 9112
// §6.3 says.
func ResponseFraming(rh *ResponseHead, isHead bool) Framing {
	switch {
	case isHead || rh.Status < 200 || rh.Status == 204 || rh.Status == 304:
		return NoBody
	case rh.Chunked:
		return ByChunks
	case rh.ContentLength >= 0:
		return ByLength
	}
	return ByClose
}

// BodyReader follows a response body as it streams past, in whatever
// pieces reads return, to find where it ends.
type BodyReader struct {
	framing Framing
	remain  int64 // ByLength: bytes still to come
	chunks  ChunkedScanner
}

// Start readies r for a body framed by f; length is the Content-Length
// for ByLength.
func (r *BodyReader) Start(f Framing, length int64) {
	r.framing, r.remain = f, length
	if f == ByChunks {
		r.chunks.Reset()
	}
}

// Framing returns the framing r was started with.
func (r *BodyReader) Framing() Framing { return r.framing }

// Read takes p, the next bytes from the connection, and returns how many
// belong to the body (all of p unless the body ends inside it) and
// whether the body has ended. With data not nil, a chunked body's data
// is appended to it (the body without its framing). A body that needs no
// bytes (NoBody, a zero length) has ended before any.
func (r *BodyReader) Read(p []byte, data *[]byte) (int, bool, error) {
	switch r.framing {
	case ByLength:
		k := min(r.remain, int64(len(p)))
		r.remain -= k
		return int(k), r.remain == 0, nil
	case ByChunks:
		return r.chunks.Scan(p, data)
	case ByClose:
		return len(p), false, nil
	}
	return 0, true, nil
}

// Closed tells r the connection closed and reports whether that ends the
// body: for ByClose it does; any other body not yet ended is cut short.
func (r *BodyReader) Closed() bool { return r.framing == ByClose }
