package bench

import (
	"errors"

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
// gives it, with httpx's framer: the same head end and chunked decoder as
// the balancer's and the request parser's, lenient as ab is about line
// ends. It keeps its buffers between responses and allocates nothing once
// warm.
type parser struct {
	noBody     bool // answering HEAD: no body whatever the headers say
	wantServer bool

	res   response
	state parseState
	head  []byte // the head so far
	scan  httpx.HeadScanner
	body  httpx.BodyReader
}

type parseState int

const (
	inHead parseState = iota
	inBody
	complete
)

// reset readies the parser for the next response.
func (p *parser) reset(noBody, wantServer bool) {
	p.noBody, p.wantServer = noBody, wantServer
	p.res = response{}
	p.state, p.head = inHead, p.head[:0]
	p.scan.Reset()
}

// started reports whether any byte of the response has arrived.
func (p *parser) started() bool { return p.state != inHead || len(p.head) > 0 || p.res.head > 0 }

// feed takes bytes from the socket and reports whether the response is
// complete. Bytes after a complete response are ignored: the engine sends
// one request at a time.
func (p *parser) feed(b []byte) (bool, error) {
	if p.state == inHead {
		p.head = append(p.head, b...)
		var h httpx.ResponseHead
		at, end := 0, 0 // the head being read is p.head[at:], and ends at at+end
		for {
			if end = p.scan.Scan(p.head[at:]); end < 0 {
				// Interim answers read are dropped in one move, not one
				// by one: a server may send thousands in a read.
				p.head = append(p.head[:0], p.head[at:]...)
				if len(p.head) > maxHead {
					return false, errMalformed
				}
				return false, nil
			}
			var err error
			if h, err = httpx.ParseResponseHead(p.head[at : at+end]); err != nil {
				return false, errMalformed
			}
			// An interim answer (100 Continue, 103 Early Hints) comes
			// before the final one, which a client must read on to
			// (RFC 9110 §15.2); its bytes count as read. 101 is final:
			// no request here asks to switch protocols.
			if h.Status < 100 || h.Status > 199 || h.Status == 101 {
				break
			}
			p.res.head += int64(end)
			at += end
			p.scan.Reset()
		}
		r := &p.res
		r.status, r.length, r.chunked, r.keepAlive = h.Status, h.ContentLength, h.Chunked, h.KeepAlive
		if p.wantServer {
			r.server = string(h.Server)
		}
		r.head += int64(end)
		f := httpx.ResponseFraming(&h, p.noBody)
		if f == httpx.ByClose {
			r.keepAlive = false
		}
		p.body.Start(f, h.ContentLength)
		p.state = inBody
		b = p.head[at+end:] // still in p.head's memory; p.head is not appended to again for this response
	}
	if p.state != inBody {
		return true, nil
	}
	n, done, err := p.body.Read(b, nil)
	p.res.body += int64(n)
	if err != nil {
		return false, errMalformed
	}
	if done {
		p.state = complete
	}
	return done, nil
}

// eof tells the parser the connection closed: a close-delimited body ends
// there; any other unfinished response is short. Bytes that never made a
// head (a server that is not HTTP), or only interim answers, are the
// answer's head, as ab counts every byte it read; with no final status,
// it is not 2xx.
func (p *parser) eof() bool {
	if p.state == inHead && p.started() {
		p.res.head, p.res.keepAlive = p.res.head+int64(len(p.head)), false
		p.state = complete
	}
	if p.state == inBody {
		if !p.body.Closed() {
			p.res.short, p.res.keepAlive = true, false
		}
		p.state = complete
	}
	return p.state == complete
}
