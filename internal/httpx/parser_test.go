package httpx

import (
	"strings"
	"testing"
)

// parseAll feeds input to a parser in pieces of the given size, as reads
// would hand it over, and returns the requests' summaries or the error.
func parseAll(t *testing.T, input string, piece int) ([]string, *Error) {
	t.Helper()
	return parseAllQuiet([]byte(input), piece)
}

func summary(r *Request) string {
	ka := "close"
	if r.KeepAlive {
		ka = "keep"
	}
	return string(r.Method) + " " + string(r.Path) + " 1." + string(rune('0'+r.Minor)) + " " + ka + " body=" + string(r.Body)
}

func TestParseRequests(t *testing.T) {
	cases := []struct {
		name, input string
		want        []string
	}{
		{"HTTP/1.0 closes by default", "GET / HTTP/1.0\r\n\r\n", []string{"GET / 1.0 close body="}},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", []string{"GET / 1.0 keep body="}},
		{"HTTP/1.1 keeps by default", "GET /santai HTTP/1.1\r\nHost: x\r\n\r\n", []string{"GET /santai 1.1 keep body="}},
		{"HTTP/1.1 close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n", []string{"GET / 1.1 close body="}},
		{"query dropped from path", "GET /a.txt?x=1&y=%2f HTTP/1.0\r\n\r\n", []string{"GET /a.txt 1.0 close body="}},
		{"percent-decoded once", "GET /a%2520b HTTP/1.0\r\n\r\n", []string{"GET /a%20b 1.0 close body="}},
		{"slashes merged, dots resolved, as nginx",
			"GET //images/./x/../../testing.txt HTTP/1.0\r\n\r\nGET /%2e/images%2f HTTP/1.0\r\n\r\nGET /a/b/.. HTTP/1.0\r\n\r\nGET /a/. HTTP/1.0\r\n\r\nGET /.hidden/..a/... HTTP/1.0\r\n\r\n",
			[]string{"GET /testing.txt 1.0 close body=", "GET /images/ 1.0 close body=", "GET /a/ 1.0 close body=", "GET /a/ 1.0 close body=", "GET /.hidden/..a/... 1.0 close body="}},
		{"absolute form", "GET http://example.test/page.html HTTP/1.1\r\nHost: example.test\r\n\r\n", []string{"GET /page.html 1.1 keep body="}},
		{"leading empty line ignored", "\r\nGET / HTTP/1.0\r\n\r\n", []string{"GET / 1.0 close body="}},
		{"content-length body", "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", []string{"POST /form 1.1 keep body=hello"}},
		{"identical duplicate content-length", "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", []string{"POST /form 1.1 keep body=hi"}},
		{"chunked body", "POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
			[]string{"POST /form 1.1 keep body=hello world"}},
		{"pipelined three", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"GET /a 1.1 keep body=", "GET /b 1.1 keep body=", "GET /c 1.1 close body="}},
		{"HEAD", "HEAD / HTTP/1.0\r\n\r\n", []string{"HEAD / 1.0 close body="}},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", []string{"OPTIONS * 1.1 keep body="}},
		{"Hosts RFC 3986 allows", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\nGET / HTTP/1.1\r\nHost: a-b.c_d~e%41:80\r\n\r\nGET / HTTP/1.1\r\nHost:\r\n\r\n",
			[]string{"GET / 1.1 keep body=", "GET / 1.1 keep body=", "GET / 1.1 keep body="}},
	}
	for _, c := range cases {
		for _, piece := range []int{1, 2, 7, len(c.input)} {
			got, err := parseAll(t, c.input, piece)
			if err != nil {
				t.Errorf("%s (pieces of %d): unexpected error %v", c.name, piece, err)
				continue
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("%s (pieces of %d):\n got %q\nwant %q", c.name, piece, got, c.want)
			}
		}
	}
}

func TestParseRefuses(t *testing.T) {
	long := strings.Repeat("a", 9000)
	cases := []struct {
		name, input string
		status      int
	}{
		{"request line over 8 KiB", "GET /" + long + " HTTP/1.1\r\n\r\n", 414},
		{"request line over 8 KiB, unterminated", "GET /" + long, 414},
		{"head over 16 KiB", "GET / HTTP/1.1\r\nHost: x\r\nA: " + long + "\r\nB: " + long + "\r\n\r\n", 431},
		{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("A: b\r\n", 101) + "\r\n", 431},
		{"body over limit", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413},
		{"chunked body over limit", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n", 413},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400},
		{"two different content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"content-length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
		{"negative content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"plus content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400},
		{"bare LF in head", "GET / HTTP/1.1\nHost: x\r\n\r\n", 400},
		{"bare LF ending head", "GET / HTTP/1.1\r\nHost: x\n\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
		{"control byte in name", "GET / HTTP/1.1\r\nHost: x\r\nX\x01A: b\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"missing host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"unknown transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE chunked not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
		{"TE without chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"Host with a slash", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n", 400},
		{"Host with a bad port", "GET / HTTP/1.1\r\nHost: x:8o\r\n\r\n", 400},
		{"asterisk for GET", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400},
		{"chunk data without CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400},
		{"NUL in chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;\x00\r\nhello\r\n0\r\n\r\n", 400},
		{"CR in chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n", 400},
		{"bare LF in chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 505},
		{"bad version", "GET / HTTX/1.1\r\n\r\n", 400},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"relative target", "GET page.html HTTP/1.0\r\n\r\n", 400},
		{"dot-dot", "GET /../etc/passwd HTTP/1.0\r\n\r\n", 400},
		{"encoded dot-dot", "GET /%2e%2e/etc/passwd HTTP/1.0\r\n\r\n", 400},
		{"encoded slash", "GET /..%2fetc/passwd HTTP/1.0\r\n\r\n", 400},
		{"dot-dot past the root after a segment", "GET /a/../../etc/passwd HTTP/1.0\r\n\r\n", 400},
		{"dot-dot alone", "GET /.. HTTP/1.0\r\n\r\n", 400},
		{"backslash", "GET /..\\etc\\passwd HTTP/1.0\r\n\r\n", 400},
		{"encoded NUL", "GET /page.html%00.txt HTTP/1.0\r\n\r\n", 400},
		{"bad escape", "GET /%zz HTTP/1.0\r\n\r\n", 400},
		// Refused once the request line ends, with no blank line to come.
		{"HTTP/0.9", "GET /testing.txt\r\n", 400},
		{"HTTP/2.0, head unfinished", "GET / HTTP/2.0\r\n", 505},
		{"bad version, head unfinished", "GET / HTTX/1.1\r\nHost: x\r\n", 400},
		{"dot-dot, head unfinished", "GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n", 400},
	}
	for _, c := range cases {
		for _, piece := range []int{1, len(c.input)} {
			got, err := parseAll(t, c.input, piece)
			if err == nil {
				t.Errorf("%s (pieces of %d): accepted, got %q; want %d", c.name, piece, got, c.status)
			} else if err.Status != c.status {
				t.Errorf("%s (pieces of %d): status %d (%s), want %d", c.name, piece, err.Status, err.Reason, c.status)
			}
		}
	}
}

func TestNeedsContinueOnce(t *testing.T) {
	p := NewParser(DefaultLimits())
	head := []byte("POST /form HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	if req, _, err := p.Parse(head); req != nil || err != nil {
		t.Fatalf("parsed a request without its body: %v %v", req, err)
	}
	if !p.NeedsContinue() || p.NeedsContinue() {
		t.Fatal("NeedsContinue should be true exactly once while the body is missing")
	}
	req, n, err := p.Parse(append(head, "abc"...))
	if err != nil || req == nil || string(req.Body) != "abc" || n != len(head)+3 {
		t.Fatalf("got %v %d %v", req, n, err)
	}
}

func TestAppendHead(t *testing.T) {
	var r Response
	r.SetText(200, "hello")
	got := string(AppendHead(nil, &r, true, &HeadOptions{Server: "loadlab/test", ServedBy: "b1"}))
	date := got[strings.Index(got, "Date: ")+6:]
	date = date[:strings.Index(date, "\r\n")]
	want := "HTTP/1.1 200 OK\r\nServer: loadlab/test\r\nDate: " + date + "\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: 5\r\nX-Served-By: b1\r\nConnection: keep-alive\r\n\r\n"
	if got != want {
		t.Errorf("head:\n%q\nwant\n%q", got, want)
	}
	if len(date) != 29 || !strings.HasSuffix(date, " GMT") {
		t.Errorf("Date %q is not IMF-fixdate", date)
	}
	r.Status = 304
	if h := string(AppendHead(nil, &r, false, &HeadOptions{Server: "s"})); strings.Contains(h, "Content-Length") || !strings.Contains(h, "Connection: close") {
		t.Errorf("304 head: %q", h)
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	p := NewParser(DefaultLimits())
	in := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ab\r\nAccept: */*\r\n\r\n")
	var r Response
	out := make([]byte, 0, 512)
	o := &HeadOptions{Server: "loadlab/test"}
	allocs := testing.AllocsPerRun(1000, func() {
		req, _, _ := p.Parse(in)
		r.Reset()
		r.SetText(200, "Ini Adalah web Server percobaan")
		out = AppendHead(out[:0], &r, req.KeepAlive, o)
	})
	if allocs != 0 {
		t.Errorf("parse and head of GET / allocate %.1f times per request, want 0", allocs)
	}
}

// TestParseAfterBufferMoves sends a head, then the body in a new buffer
// with the old one overwritten, as an event loop reusing its read buffer
// does: the request must describe the new bytes.
func TestParseAfterBufferMoves(t *testing.T) {
	p := NewParser(DefaultLimits())
	first := []byte("POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
	if req, _, _ := p.Parse(first); req != nil {
		t.Fatal("request without its body")
	}
	second := append(append([]byte(nil), first...), "abc"...)
	for i := range first {
		first[i] = 'X'
	}
	req, _, err := p.Parse(second)
	if err != nil || req == nil || string(req.Method) != "POST" || string(req.Path) != "/form" || string(req.Body) != "abc" {
		t.Fatalf("got %+v, %v", req, err)
	}
}

// Every byte of a chunked body's framing counts toward MaxBody: floods of
// extensions or of 1-byte chunks end in 413 once they pass the limit,
// however little data they carry. Trailer lines end sooner, in 431, once
// they pass the trailer section's own 16 KiB.
func TestChunkedFramingCountsTowardMaxBody(t *testing.T) {
	const head = "POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	ext := ";" + strings.Repeat("e", 4000)
	floods := map[string]string{
		"extensions":       strings.Repeat("1"+ext+"\r\nA\r\n", 300),
		"one-byte chunks":  strings.Repeat("1\r\nA\r\n", 200000),
		"data at the edge": "100000\r\n" + strings.Repeat("d", 1<<20) + "\r\n0\r\n\r\n",
	}
	for name, body := range floods {
		for _, piece := range []int{1 << 20, 4096} {
			p := NewParser(DefaultLimits())
			buf := []byte(head + body)
			var err error
			for end := min(piece, len(buf)); ; end = min(end+piece, len(buf)) {
				var req *Request
				if req, _, err = p.Parse(buf[:end]); err != nil || req != nil || end == len(buf) {
					break
				}
			}
			e, ok := err.(*Error)
			if !ok || e.Status != 413 {
				t.Errorf("%s in pieces of %d: %v, want 413", name, piece, err)
			}
		}
	}
	trailers := head + "0\r\n" + strings.Repeat("X-Trailer: "+strings.Repeat("t", 1000)+"\r\n", 1200)
	for _, piece := range []int{1 << 20, 4096} {
		if _, err := parseAll(t, trailers, piece); err == nil || err.Status != 431 {
			t.Errorf("trailer lines in pieces of %d: %v, want 431", piece, err)
		}
	}
	// Within the limit, framing and all, the body is taken.
	if got, err := parseAll(t, head+strings.Repeat("1;e\r\nA\r\n", 1000)+"0\r\n\r\n", 100); err != nil || len(got) != 1 {
		t.Errorf("a body of 8 KB of framing: %v %v", got, err)
	}
}

// A request line of exactly MaxRequestLine bytes (without its CRLF) is
// taken; one byte more is 414, whether the line is whole or still coming.
func TestRequestLineLimitIsInclusive(t *testing.T) {
	limit := DefaultLimits().MaxRequestLine
	line := func(n int) string { return "GET /" + strings.Repeat("a", n-len("GET / HTTP/1.1")) + " HTTP/1.1" }
	if len(line(limit)) != limit {
		t.Fatalf("test line is %d bytes", len(line(limit)))
	}
	for _, piece := range []int{1 << 20, 1000} {
		if _, err := parseAll(t, line(limit)+"\r\nHost: x\r\n\r\n", piece); err != nil {
			t.Errorf("a line of exactly %d bytes, in pieces of %d: %v", limit, piece, err)
		}
		if _, err := parseAll(t, line(limit+1)+"\r\nHost: x\r\n\r\n", piece); err == nil || err.Status != 414 {
			t.Errorf("a line of %d bytes, in pieces of %d: %v, want 414", limit+1, piece, err)
		}
	}
}
