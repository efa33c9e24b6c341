package bench

import (
	"bytes"
	"errors"
	"strconv"

	"loadlab/internal/httpx"
)

// response is what the engine needs of one answer: enough to frame it,
// count it and decide whether the connection can carry the next request.
type response struct {
	status    int
	head      int64 // bytes of the status line and headers
	body      int64 // bytes after the head, as they came on the wire
	keepAlive bool  // the connection may carry another request
	short     bool  // the connection closed before the body's end
	length    int64 // Content-Length, or -1
	chunked   bool  // Transfer-Encoding: chunked
	server    string
}

// errMalformed is a response whose head cannot be read as HTTP; ab counts
// these as Exceptions.
var errMalformed = errors.New("malformed response")

// maxHead bounds a response head, as ab's buffer does.
const maxHead = 64 << 10

// parser reads one response at a time from whatever pieces the socket
// gives it. It keeps its buffers between responses and allocates nothing
// once warm.
type parser struct {
	noBody     bool // answering HEAD: no body whatever the headers say
	wantServer bool

	res    response
	state  parseState
	head   []byte // the head so far
	remain int64  // body bytes still expected in a sized part
	line   []byte // a chunk-size or trailer line so far
}

type parseState int

const (
	inHead      parseState = iota
	inSized                // Content-Length body, or a chunk's data and CRLF
	inChunkLine            // a chunk-size line
	inTrailer              // trailer lines after the last chunk
	toClose                // body delimited by the connection's close
	complete
)

// reset readies the parser for the next response.
func (p *parser) reset(noBody, wantServer bool) {
	p.noBody, p.wantServer = noBody, wantServer
	p.res = response{}
	p.state, p.head, p.remain, p.line = inHead, p.head[:0], 0, p.line[:0]
}

// started reports whether any byte of the response has arrived.
func (p *parser) started() bool { return p.state != inHead || len(p.head) > 0 }

// feed takes bytes from the socket and reports whether the response is
// complete. Bytes after a complete response are ignored: the engine sends
// one request at a time.
func (p *parser) feed(b []byte) (bool, error) {
	for len(b) > 0 {
		switch p.state {
		case inHead:
			from := max(0, len(p.head)-3)
			p.head = append(p.head, b...)
			i := bytes.Index(p.head[from:], []byte("\r\n\r\n"))
			if i < 0 {
				if len(p.head) > maxHead {
					return false, errMalformed
				}
				return false, nil
			}
			end := from + i + 4
			rest := p.head[end:]
			if err := parseHead(p.head[:end], &p.res, p.wantServer); err != nil {
				return false, err
			}
			p.res.head = int64(end)
			p.startBody()
			b = rest // still in p.head's memory; p.head is not appended to again for this response
		case inSized:
			take := min(int64(len(b)), p.remain)
			p.remain -= take
			p.res.body += take
			b = b[take:]
			if p.remain == 0 {
				if p.res.chunked {
					p.state = inChunkLine
				} else {
					p.state = complete
				}
			}
		case inChunkLine, inTrailer:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				p.line = append(p.line, b...)
				p.res.body += int64(len(b))
				if len(p.line) > 4096 {
					return false, errMalformed
				}
				return false, nil
			}
			p.line = append(p.line, b[:i+1]...)
			p.res.body += int64(i + 1)
			b = b[i+1:]
			line := bytes.TrimRight(p.line, "\r\n")
			p.line = p.line[:0]
			if err := p.endLine(line); err != nil {
				return false, err
			}
		case toClose:
			p.res.body += int64(len(b))
			return false, nil
		case complete:
			return true, nil
		}
	}
	return p.state == complete, nil
}

// startBody chooses how the body ends, once the head is read.
func (p *parser) startBody() {
	r := &p.res
	switch {
	case p.noBody || r.status < 200 || r.status == 204 || r.status == 304:
		p.state = complete
	case r.chunked:
		p.state = inChunkLine
	case r.length >= 0:
		p.state, p.remain = inSized, r.length
		if r.length == 0 {
			p.state = complete
		}
	default:
		p.state, r.keepAlive = toClose, false
	}
}

func (p *parser) endLine(line []byte) error {
	if p.state == inTrailer {
		if len(line) == 0 {
			p.state = complete
		}
		return nil
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
	if err != nil || size < 0 {
		return errMalformed
	}
	if size == 0 {
		p.state = inTrailer
		return nil
	}
	p.state, p.remain = inSized, size+2 // the data and its CRLF
	return nil
}

// eof tells the parser the connection closed: a close-delimited body ends
// there; any other unfinished response is short.
func (p *parser) eof() bool {
	switch p.state {
	case toClose:
		p.state = complete
	case inSized, inChunkLine, inTrailer:
		p.res.short, p.res.keepAlive = true, false
		p.state = complete
	}
	return p.state == complete
}

// parseHead reads the status line and the headers that frame the body.
func parseHead(head []byte, res *response, wantServer bool) error {
	h, err := httpx.ParseResponseHead(head)
	if err != nil {
		return errMalformed
	}
	res.status, res.length, res.chunked, res.keepAlive = h.Status, h.ContentLength, h.Chunked, h.KeepAlive
	if wantServer {
		res.server = string(h.Server)
	}
	return nil
}
