package httpx

import (
	"bytes"
	"testing"
)

// FuzzFraming is the framer's differential test: the same bytes, framed
// by each of its users, end in the same place. A chunked body goes to the
// request parser (as a POST's body) and to the ChunkedScanner, whole and
// in pieces, as the balancer and bench read responses; a head goes to the
// request parser's head finder and to the HeadScanner, whole and in
// pieces. Its corpus in testdata/fuzz is replayed by plain go test.
func FuzzFraming(f *testing.F) {
	f.Add([]byte("3\r\nabc\r\n0\r\n\r\n"), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("5;ext=1\r\nhello\r\n0\r\nT: v\r\n\r\nGET"), []byte("\r\nGET / HTTP/1.0\r\n\r\nrest"))
	f.Add([]byte("+5\r\nhello\r\n0\r\n\r\n"), []byte("HTTP/1.1 200 OK\nA: b\n\n"))
	f.Add([]byte("3\nabc\r\n0\r\n\r\n"), []byte("GET / HTTP/1.1\r\nA: b\n\r\n"))
	f.Fuzz(func(t *testing.T, body, head []byte) {
		whole, pieces := scanChunked(body, len(body)+1), scanChunked(body, 3)
		if whole != pieces {
			t.Fatalf("chunked body %q: whole %+v, in pieces %+v", body, whole, pieces)
		}
		const reqHead = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		req, n, err := NewParser(DefaultLimits()).Parse(append([]byte(reqHead), body...))
		switch {
		case err != nil:
			if !whole.failed {
				t.Fatalf("chunked body %q: the parser refused it (%v), the scanner took it: %+v", body, err, whole)
			}
		case req == nil:
			if whole.done || whole.failed {
				t.Fatalf("chunked body %q: the parser waits for more, the scanner says %+v", body, whole)
			}
		default:
			if !whole.done || whole.end != n-len(reqHead) || whole.data != string(req.Body) {
				t.Fatalf("chunked body %q: the parser took %d bytes, body %q; the scanner %+v", body, n-len(reqHead), req.Body, whole)
			}
		}

		end := scanHead(head, len(head)+1)
		if p := scanHead(head, 2); p != end {
			t.Fatalf("head %q: whole ends at %d, in pieces at %d", head, end, p)
		}
		p := NewParser(DefaultLimits())
		found, err := p.findHead(head)
		if err != nil {
			return // refused for what the scanner does not judge: bare LF, limits, no method
		}
		want := -1
		if found {
			want = p.headEnd - p.skip
		}
		var s HeadScanner
		if got := s.Scan(head[p.skip:]); got != want {
			t.Fatalf("head %q: the parser's head ends at %d, the scanner's at %d", head, want, got)
		}
	})
}

type chunkedOutcome struct {
	end          int
	done, failed bool
	data         string
}

// scanChunked frames a chunked body with the ChunkedScanner, given to it
// piece bytes at a time.
func scanChunked(in []byte, piece int) chunkedOutcome {
	s := ChunkedScanner{Limit: DefaultLimits().MaxBody} // the parser's, which it is compared with
	var data []byte
	var o chunkedOutcome
	for i := 0; i < len(in); i += piece {
		n, done, err := s.Scan(in[i:min(i+piece, len(in))], &data)
		o.end += n
		if err != nil {
			return chunkedOutcome{failed: true}
		}
		if done {
			o.done, o.data = true, string(data)
			return o
		}
	}
	return chunkedOutcome{end: o.end, data: string(data)}
}

// scanHead finds the end of a head with the HeadScanner, the input
// growing piece bytes at a time.
func scanHead(in []byte, piece int) int {
	var s HeadScanner
	for i := min(piece, len(in)); ; i = min(i+piece, len(in)) {
		if end := s.Scan(in[:i]); end >= 0 || i == len(in) {
			return end
		}
	}
}

func TestHeadScanner(t *testing.T) {
	for _, tc := range []struct {
		in     string
		end    int
		bareLF bool
		first  int
	}{
		{"GET / HTTP/1.1\r\n\r\nbody", 18, false, 14},
		{"HTTP/1.1 200 OK\nA: b\n\nbody", 22, true, 15},
		{"HTTP/1.1 200 OK\r\nA: b\n\r\n", 24, true, 15},
		{"HTTP/1.1 200 OK\r\nA: b\r\n", -1, false, 15},
		{"no line end yet", -1, false, -1},
		{"\r\n\r\n", 4, false, 0}, // an empty first line, then the blank one
	} {
		var s HeadScanner
		in := []byte(tc.in)
		if end := s.Scan(in); end != tc.end || s.BareLF() != tc.bareLF || s.FirstLine(in) != tc.first {
			t.Errorf("%q: end %d bare LF %v first line %d; want %d %v %d", tc.in, end, s.BareLF(), s.FirstLine(in), tc.end, tc.bareLF, tc.first)
		}
	}
}

func TestBodyReader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		head   string
		isHead bool
		in     string
		n      int
		done   bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false, "abcGET", 3, true},
		{"zero length", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, "", 0, true},
		{"chunked wins over length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", false, "3\r\nabc\r\n0\r\n\r\nX", 13, true},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true, "abc", 0, true},
		{"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", false, "abc", 0, true},
		{"until close", "HTTP/1.0 200 OK\r\n\r\n", false, "abc", 3, false},
	} {
		rh, err := ParseResponseHead([]byte(tc.head))
		if err != nil {
			t.Fatal(err)
		}
		var r BodyReader
		r.Start(ResponseFraming(&rh, tc.isHead), rh.ContentLength)
		n, done, err := r.Read([]byte(tc.in), nil)
		if err != nil || n != tc.n || done != tc.done {
			t.Errorf("%s: read %d done %v err %v; want %d %v", tc.name, n, done, err, tc.n, tc.done)
		}
		if r.Closed() != (r.Framing() == ByClose) {
			t.Errorf("%s: a close ends only a close-delimited body", tc.name)
		}
	}
}

func TestChunkedScannerLimit(t *testing.T) {
	body := []byte("5\r\nhello\r\n0\r\n\r\n") // 15 bytes on the wire
	for _, tc := range []struct {
		limit int64
		ok    bool
	}{{15, true}, {14, false}, {9, false}} {
		s := ChunkedScanner{Limit: tc.limit}
		var data []byte
		_, done, err := s.Scan(body, &data)
		if ok := err == nil && done && bytes.Equal(data, []byte("hello")); ok != tc.ok {
			t.Errorf("limit %d: done %v err %v data %q", tc.limit, done, err, data)
		}
		if !tc.ok && err != errBodyTooLarge {
			t.Errorf("limit %d: %v, want the 413", tc.limit, err)
		}
	}
}
