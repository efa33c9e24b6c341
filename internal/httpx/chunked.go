package httpx

import (
	"bytes"
	"strconv"
)

// chunkState decodes a chunked body (RFC 9112 §7.1) incrementally: it keeps
// its place between calls, so a body that trickles in is read once.
type chunkState struct {
	pos     int   // bytes of the body's wire form consumed so far
	remain  int64 // data bytes left in the current chunk; -1 while reading a size line
	trailer bool  // past the last chunk, reading trailer lines
	started bool
}

const maxChunkLine = 4 << 10

// decode appends the data of complete chunks in b to body and reports how
// many bytes of b the whole body took once it is complete. Every byte of
// the body's wire form counts toward maxBody — sizes, extensions, CRLFs
// and trailers as well as data — so that no framing, however wasteful,
// makes a client cost more than the limit.
func (s *chunkState) decode(b []byte, body *[]byte, maxBody int64) (int, bool, error) {
	if !s.started {
		s.started, s.remain = true, -1
	}
	for {
		rest := b[s.pos:]
		if s.remain < 0 && int64(s.pos)+int64(min(len(rest), maxChunkLine)) > maxBody {
			if nl := bytes.IndexByte(rest, '\n'); nl < 0 || int64(s.pos+nl+1) > maxBody {
				return 0, false, errBodyTooLarge
			}
		}
		switch {
		case s.trailer:
			nl := bytes.IndexByte(rest, '\n')
			if nl < 0 {
				return 0, false, lineTooLong(rest)
			}
			if nl == 0 || rest[nl-1] != '\r' {
				return 0, false, fail(400, "bare LF in chunked body")
			}
			s.pos += nl + 1
			if nl == 1 {
				return s.pos, true, nil
			}
		case s.remain < 0:
			nl := bytes.IndexByte(rest, '\n')
			if nl < 0 {
				return 0, false, lineTooLong(rest)
			}
			if nl == 0 || rest[nl-1] != '\r' {
				return 0, false, fail(400, "bare LF in chunked body")
			}
			size, err := parseChunkSize(rest[:nl-1])
			if err != nil {
				return 0, false, err
			}
			if int64(s.pos+nl+1)+size+2 > maxBody {
				return 0, false, errBodyTooLarge
			}
			s.pos += nl + 1
			if size == 0 {
				s.trailer = true
			} else {
				s.remain = size
			}
		default:
			if int64(len(rest)) < s.remain+2 {
				return 0, false, nil
			}
			n := int(s.remain)
			if rest[n] != '\r' || rest[n+1] != '\n' {
				return 0, false, fail(400, "chunk data not followed by CRLF")
			}
			*body = append(*body, rest[:n]...)
			s.pos += n + 2
			s.remain = -1
		}
	}
}

var errBodyTooLarge = fail(413, "request body larger than the limit")

func lineTooLong(rest []byte) error {
	if len(rest) > maxChunkLine {
		return fail(400, "chunk size line too long")
	}
	return nil
}

// parseChunkSize reads the hex size before any chunk extension; it allows
// at most 15 hex digits so the size cannot overflow. Extensions are
// ignored, but one with a control byte in it (a NUL, a lone CR) is
// refused: a proxy after us might end the line there and read the rest
// as a request.
func parseChunkSize(line []byte) (int64, error) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		for _, c := range line[i:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, fail(400, "control byte in a chunk extension")
			}
		}
		line = line[:i]
	}
	line = trimOWS(line)
	if len(line) == 0 || len(line) > 15 {
		return 0, fail(400, "invalid chunk size")
	}
	var n int64
	for _, c := range line {
		if !isHex(c) {
			return 0, fail(400, "invalid chunk size")
		}
		n = n<<4 | int64(unhex(c))
	}
	return n, nil
}

// ChunkedScanner follows a chunked body as it streams past, in whatever
// pieces reads return, to find where it ends; a proxy passes the bytes on
// as they are, or asks for the chunks' data alone. Unlike the request
// parser's decoder it keeps no more than a partial size or trailer line.
type ChunkedScanner struct {
	inData  bool   // inside a chunk's data, remain bytes of it left
	remain  int64  // data bytes left in the current chunk
	crlf    int    // bytes of the CRLF after a chunk's data seen so far, while expecting it
	trailer bool   // past the last chunk: reading trailer lines
	line    []byte // a size or trailer line not yet whole
}

// Reset readies s for a new body.
func (s *ChunkedScanner) Reset() { *s = ChunkedScanner{line: s.line[:0]} }

// Scan reads b, the next bytes of the body, and returns how many belong
// to it (all of b, unless the body ends inside it) and whether it has
// ended, trailer and all. When data is not nil the chunks' data is
// appended to it.
func (s *ChunkedScanner) Scan(b []byte, data *[]byte) (int, bool, error) {
	i := 0
	for i < len(b) {
		switch {
		case s.inData:
			k := int(min(s.remain, int64(len(b)-i)))
			if data != nil {
				*data = append(*data, b[i:i+k]...)
			}
			i += k
			if s.remain -= int64(k); s.remain == 0 {
				s.inData, s.crlf = false, 1
			}
		case s.crlf > 0: // the CRLF that ends a chunk's data
			if b[i] != "\r\n"[s.crlf-1] {
				return i, false, fail(502, "chunk data not followed by CRLF")
			}
			i++
			if s.crlf++; s.crlf == 3 {
				s.crlf = 0
			}
		default: // a size line, or a trailer line
			nl := bytes.IndexByte(b[i:], '\n')
			if nl < 0 {
				s.line = append(s.line, b[i:]...)
				return len(b), false, lineTooLong(s.line)
			}
			line := b[i : i+nl+1]
			if len(s.line) > 0 {
				line = append(s.line, line...)
				s.line = s.line[:0]
			}
			i += nl + 1
			if len(line) < 2 || line[len(line)-2] != '\r' {
				return i, false, fail(502, "bare LF in chunked body")
			}
			line = line[:len(line)-2]
			if s.trailer {
				if len(line) == 0 {
					return i, true, nil
				}
				continue
			}
			size, err := parseChunkSize(line)
			if err != nil {
				return i, false, err
			}
			if size == 0 {
				s.trailer = true
			} else {
				s.inData, s.remain = true, size
			}
		}
	}
	return i, false, nil
}

// AppendChunk appends p to dst as one chunk of a chunked body; an empty p
// appends nothing, since a zero-size chunk ends the body.
func AppendChunk(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	dst = strconv.AppendInt(dst, int64(len(p)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, p...)
	return append(dst, '\r', '\n')
}
