package httpx

import (
	"bytes"
	"strconv"
)

// maxChunkLine bounds a chunk-size or trailer line.
const maxChunkLine = 4 << 10

// maxTrailerSection bounds the trailer section as a whole, as HAProxy's
// 16 KiB buffer does: without it a peer could send trailer lines without
// end, each short enough, and a reader would follow them for ever.
const maxTrailerSection = 16 << 10

var (
	errBodyTooLarge    = fail(413, "request body larger than the limit")
	errTrailerTooLarge = fail(431, "trailer section over 16 KiB")
)

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

// ChunkedScanner follows a chunked body (RFC 9112 §7.1) as it streams
// past, in whatever pieces reads return, to find where it ends: the
// request parser collects the chunks' data with it, a proxy passes the
// bytes on as they are or asks for the data alone, bench counts them. It
// keeps no more than a partial size or trailer line. Its errors are the
// request parser's (400, 413); a reader of responses calls any of them a
// malformed response.
type ChunkedScanner struct {
	// Limit, when above 0, bounds the body's wire form: sizes,
	// extensions, CRLFs and trailers count as well as data, so that no
	// framing, however wasteful, makes a client cost more than the limit.
	Limit int64

	inData    bool   // inside a chunk's data, remain bytes of it left
	remain    int64  // data bytes left in the current chunk
	crlf      int    // bytes of the CRLF after a chunk's data seen so far, while expecting it
	trailer   bool   // past the last chunk: reading trailer lines
	trailerAt int64  // where the trailer section starts, counted as wire is
	line      []byte // a size or trailer line not yet whole
	wire      int64  // bytes of the body taken by earlier calls
}

// Reset readies s for a new body.
func (s *ChunkedScanner) Reset() { *s = ChunkedScanner{Limit: s.Limit, line: s.line[:0]} }

// Scan reads b, the next bytes of the body, and returns how many belong
// to it (all of b, unless the body ends inside it) and whether it has
// ended, trailer and all. When data is not nil the chunks' data is
// appended to it.
func (s *ChunkedScanner) Scan(b []byte, data *[]byte) (int, bool, error) {
	n, done, err := s.scan(b, data)
	s.wire += int64(n)
	if err == nil && s.Limit > 0 && s.wire > s.Limit {
		return n, false, errBodyTooLarge
	}
	return n, done, err
}

func (s *ChunkedScanner) scan(b []byte, data *[]byte) (int, bool, error) {
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
				return i, false, fail(400, "chunk data not followed by CRLF")
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
				return i, false, fail(400, "bare LF in chunked body")
			}
			line = line[:len(line)-2]
			if s.trailer {
				if len(line) == 0 {
					return i, true, nil
				}
				if s.wire+int64(i)-s.trailerAt > maxTrailerSection {
					return i, false, errTrailerTooLarge
				}
				continue
			}
			size, err := parseChunkSize(line)
			if err != nil {
				return i, false, err
			}
			if s.Limit > 0 && s.wire+int64(i)+size+2 > s.Limit {
				return i, false, errBodyTooLarge // refused before its data is read
			}
			if size == 0 {
				s.trailer, s.trailerAt = true, s.wire+int64(i)
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
