package balancer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/budget"
	"loadlab/internal/testutil"
)

// echoBackend answers every request with its own head as the body, over
// keep-alive, and counts connections, requests and bytes. A path may name
// a misbehaviour instead (serve, below).
type echoBackend struct {
	addr     string
	conns    atomic.Int64
	closed   atomic.Int64 // connections the backend has closed
	requests atomic.Int64
	in, out  atomic.Int64 // bytes read and written
	mu       sync.Mutex
	heads    []string
}

func startEcho(t *testing.T) *echoBackend {
	e := &echoBackend{}
	e.addr = serveEach(t, func(c net.Conn) {
		e.conns.Add(1)
		e.serve(countingConn{c, &e.in, &e.out})
		c.Close()
		e.closed.Add(1)
	})
	return e
}

// countingConn counts the bytes read and written through it.
type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (e *echoBackend) serve(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		e.requests.Add(1)
		var head strings.Builder
		req.Header.Write(&head)
		e.mu.Lock()
		e.heads = append(e.heads, req.Method+" "+req.RequestURI+"\n"+head.String())
		e.mu.Unlock()
		switch req.URL.Path {
		case "/hang":
			time.Sleep(2 * time.Second)
			return
		case "/garbage":
			io.WriteString(c, "this is not http\r\n\r\n")
			return
		case "/slow": // within httpBalancer's 300 ms server timeout
			time.Sleep(150 * time.Millisecond)
		case "/cut": // promises 100 bytes, sends 10, hangs up
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
			return
		case "/badchunks":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
			return
		case "/trailerflood": // a trailer section without end (25 MB at most)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n")
			for range 1 << 20 {
				if _, err := io.WriteString(c, "X-T: trailer\r\n"); err != nil {
					return
				}
			}
			return
		case "/interim": // informational answers before the final one
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
			continue
		case "/interimpieces": // the same, cut across reads (the pauses only space them: the answer is the same whatever the balancer's reads see)
			for _, piece := range []string{"HTTP/1.1 103 Early Hints\r\nLi", "nk: </a.css>\r\n\r\nHTTP/1.1 2", "00 OK\r\nContent-Length: 5\r\n\r\nfinal"} {
				io.WriteString(c, piece)
				time.Sleep(20 * time.Millisecond)
			}
			continue
		case "/interimflood": // 100 Continue until the balancer gives up on it (25 MB at most)
			for range 1 << 20 {
				if _, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
					return
				}
			}
			return
		case "/big": // 8 MiB, its bytes numbered
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(bigBody))
			if req.Method != "HEAD" { // a body after HEAD's answer would be read as the next answer
				c.Write(bigBody)
			}
			continue
		case "/thenclose": // a keep-alive answer, then the backend drops the connection while idle
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			time.Sleep(50 * time.Millisecond)
			return
		case "/chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nServer: echo\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
			continue
		}
		body := req.Method + " " + req.RequestURI + "\n" + head.String()
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nServer: echo\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

// unread is how many bytes wait in c's receive queue, as the kernel
// counts them.
func unread(c net.Conn) int {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n
}

// bigBody is a large response whose every byte is checkable.
var bigBody = func() []byte {
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func (e *echoBackend) lastHead() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.heads) == 0 {
		return ""
	}
	return e.heads[len(e.heads)-1]
}

func httpBalancer(t *testing.T, backends ...string) *Balancer {
	var cfgs []BackendConfig
	for _, a := range backends {
		cfgs = append(cfgs, BackendConfig{Addr: a})
	}
	return startBalancer(t, Config{Mode: "http", Backends: cfgs, Check: CheckConfig{Kind: "none"}, ServerIdle: 300 * time.Millisecond})
}

func TestHTTPReusesBackendConnections(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	for range 50 { // fifty clients, one request each, one after another
		if status, _, _, err := fetch(b.Addr().String(), "/x"); err != nil || status != 200 {
			t.Fatalf("%d %v", status, err)
		}
	}
	if e.requests.Load() != 50 || e.conns.Load() > 2 {
		t.Errorf("%d requests over %d backend connections; want 50 over one or two", e.requests.Load(), e.conns.Load())
	}
}

func TestHTTPHeadersAddedAndRemoved(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	c := dialBalancer(t, b)
	io.WriteString(c, "GET /chunked?q=1 HTTP/1.1\r\nHost: lab\r\nConnection: keep-alive, X-Secret\r\nX-Secret: hop\r\n"+
		"Keep-Alive: 300\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 10.1.1.1\r\nX-End: stays\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	head := e.lastHead()
	for _, want := range []string{"GET /chunked?q=1\n", "X-Forwarded-For: 10.1.1.1, 127.0.0.1\r\n", "X-Forwarded-Proto: http\r\n",
		"Forwarded: for=127.0.0.1;proto=http", "Via: 1.1 loadlab", "X-End: stays"} {
		if !strings.Contains(head, want) {
			t.Errorf("backend did not get %q in:\n%s", want, head)
		}
	}
	for _, gone := range []string{"X-Secret", "Keep-Alive", "Proxy-Connection"} {
		if strings.Contains(head, gone) {
			t.Errorf("backend got hop-by-hop %s:\n%s", gone, head)
		}
	}
	if string(body) != "abcde" || resp.Header.Get("X-Drop") != "" || resp.Header.Get("Keep-Alive") != "" ||
		resp.Header.Get("Via") != "1.1 loadlab" || resp.Header.Get("Server") != "echo" {
		t.Errorf("client got %q with headers %v", body, resp.Header)
	}
}

// The stats page's counters, in both modes: bytes each way are what the
// backend and the client really got, and a failed connect is one error.
func TestCountersAreExact(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		e := startEcho(t)
		b := startBalancer(t, Config{Mode: mode, Backends: []BackendConfig{{Addr: "127.0.0.1:1"}, {Addr: e.addr}}, // nothing listens on port 1
			Check: CheckConfig{Kind: "none"}})
		req := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
			"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		// To the dead backend first, then redispatched; the client's FIN
		// ends the tcp-mode echo.
		c := dialBalancer(t, b)
		io.WriteString(c, req)
		c.(*net.TCPConn).CloseWrite()
		all, err := io.ReadAll(c)
		if got := string(all); err != nil || strings.Count(got, "HTTP/1.1 200 OK") != 2 {
			t.Fatalf("%s: %q, %v", mode, got, err)
		}
		got := string(all)
		s := b.Status()
		if s[0].Errors != 1 || s[1].Errors != 0 {
			t.Errorf("%s: errors %d (dead) and %d (echo), want 1 and 0", mode, s[0].Errors, s[1].Errors)
		}
		// The echo backend has read and written everything once the
		// client has the last byte; wait for the balancer's books.
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) && b.Status()[1].BytesOut != int64(len(got)) {
			time.Sleep(10 * time.Millisecond)
		}
		s = b.Status()
		if s[1].BytesIn != e.in.Load() || s[1].BytesOut != int64(len(got)) {
			t.Errorf("%s: counted %d bytes in and %d out; the backend read %d, the client got %d",
				mode, s[1].BytesIn, s[1].BytesOut, e.in.Load(), len(got))
		}
		if mode == "tcp" && (s[1].BytesIn != int64(len(req)) || s[1].BytesOut != e.out.Load()) {
			t.Errorf("tcp: counted %d in and %d out; the client sent %d, the backend wrote %d",
				s[1].BytesIn, s[1].BytesOut, len(req), e.out.Load())
		}
	}
}

// A request body over --max-body is refused with 413 before it reaches
// a backend; under it, it goes on whole.
func TestHTTPMaxBody(t *testing.T) {
	e := startEcho(t)
	body := strings.Repeat("x", 3<<19) // 1.5 MiB
	req := fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	for _, tc := range []struct {
		maxBody int64
		want    string
	}{{0, "HTTP/1.1 413 "}, {2 << 20, "HTTP/1.1 200 "}} {
		b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: e.addr}}, Check: CheckConfig{Kind: "none"}, MaxBody: tc.maxBody})
		before := e.in.Load()
		got := exchangeRaw(t, b, req)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("max body %d: answered %.60q, want %q", tc.maxBody, got, tc.want)
		}
		reached := e.in.Load() - before
		if tc.want == "HTTP/1.1 413 " && reached != 0 || tc.want == "HTTP/1.1 200 " && reached < int64(len(body)) {
			t.Errorf("max body %d: the backend read %d bytes", tc.maxBody, reached)
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	for _, tc := range []struct {
		path   string
		status int
	}{{"/garbage", 502}, {"/hang", 504}} {
		began := time.Now()
		status, _, _, err := fetch(b.Addr().String(), tc.path)
		if err != nil || status != tc.status {
			t.Errorf("%s: %d %v, want %d", tc.path, status, err, tc.status)
		}
		if time.Since(began) > 1500*time.Millisecond { // the hanging backend holds on for 2 s
			t.Errorf("%s took %s", tc.path, time.Since(began))
		}
	}
}

func TestHTTPRefusesSmuggling(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;\x00\r\nGET /smuggled\r\n0\r\n\r\n",
		// Two hosts: the target's, which the backend goes by (RFC 9112
		// §3.2.2), and Host, which the balancer's logs and rules go by.
		"GET http://internal.example/admin HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		c, _ := net.Dial("tcp", b.Addr().String())
		c.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(c, raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != 400 {
			t.Errorf("%q: %v %v, want 400", raw, resp, err)
		}
	}
	if n := e.requests.Load(); n != 0 {
		t.Errorf("the backend saw %d requests: %s", n, e.lastHead())
	}
}

// A bad request line is answered once it ends, before any blank line:
// an HTTP/0.9 request never sends one, and waiting for it would answer
// 408 at the header timeout instead.
func TestHTTPBadRequestLineAnsweredWhenItEnds(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{"GET /\r\n", 400},
		{"GET / HTTP/3.0\r\nHost: x\r\n", 505},
	} {
		c := dialBalancer(t, b)
		io.WriteString(c, tc.raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != tc.status {
			t.Errorf("%q: %v %v, want %d", tc.raw, resp, err, tc.status)
		}
	}
	if n := e.requests.Load(); n != 0 {
		t.Errorf("the backend saw %d requests: %s", n, e.lastHead())
	}
}

// dialBalancer connects to b with a 5 s deadline, closed with the test.
func dialBalancer(t *testing.T, b *Balancer) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// exchangeRaw writes raw on a new connection to b and returns everything
// the balancer sends back until it closes the connection.
func exchangeRaw(t *testing.T, b *Balancer, raw string) string {
	t.Helper()
	c := dialBalancer(t, b)
	io.WriteString(c, raw)
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%q: %v after %q", raw, err, got)
	}
	return string(got)
}

// Pipelined requests are answered in order, whether the last one asks to
// close or the client sends its FIN after it (a half-close, as
// `printf ... | nc` does); a request cut short by the FIN is dropped at
// once.
func TestHTTPPipelinedRequestsAnsweredInOrder(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	three := "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n"
	for _, end := range []struct {
		last string
		fin  bool
	}{
		{"Connection: close\r\n\r\n", false},
		{"\r\n", true},
		{"\r\nGET /4 HTTP/1.1\r\nHo", true}, // /4 is never complete
	} {
		c := dialBalancer(t, b)
		io.WriteString(c, three+end.last)
		if end.fin {
			c.(*net.TCPConn).CloseWrite()
		}
		began := time.Now()
		all, err := io.ReadAll(c)
		if err != nil || time.Since(began) > time.Second {
			t.Fatalf("%+v: %v after %s", end, err, time.Since(began))
		}
		r := bufio.NewReader(bytes.NewReader(all))
		for _, want := range []string{"GET /1\n", "GET /2\n", "GET /3\n"} {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("%+v, before %q: %v in %q", end, want, err, all)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.HasPrefix(string(body), want) {
				t.Errorf("%+v: got %q, want it to start %q", end, body, want)
			}
		}
		if rest, _ := io.ReadAll(r); len(rest) > 0 {
			t.Errorf("%+v: after the third answer %q", end, rest)
		}
	}
}

// An HTTP/1.0 client cannot read chunked encoding: it gets the data, and
// the close ends it.
func TestHTTPChunkedToAnHTTP10ClientIsDecoded(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	got := exchangeRaw(t, b, "GET /chunked HTTP/1.0\r\n\r\n")
	head, body, _ := strings.Cut(got, "\r\n\r\n")
	if body != "abcde" || strings.Contains(head, "chunked") || !strings.Contains(head, "Connection: close") {
		t.Errorf("got %q", got)
	}
}

func TestHTTPHeadAndInterimAnswers(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	got := exchangeRaw(t, b, "HEAD /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.Contains(got, "Content-Length: 8388608\r\n") ||
		!strings.HasSuffix(got, "\r\n\r\n") {
		t.Errorf("HEAD: got %q", got)
	}
}

// Interim answers (103 Early Hints, 100 Continue) go to an HTTP/1.1 client
// before the final one, as HAProxy passes them, and not to an HTTP/1.0
// one; a backend that sends them without end gets the client a 502 once
// they pass the head's 64 KiB, and costs the balancer nothing after.
func TestHTTPInterimAnswers(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	const hints = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nVia: 1.1 loadlab\r\n\r\n"
	for _, tc := range []struct{ request, want string }{
		{"GET /interim HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", hints + "HTTP/1.1 100 Continue\r\nVia: 1.1 loadlab\r\n\r\nHTTP/1.1 200 OK\r\n"},
		{"GET /interimpieces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", hints + "HTTP/1.1 200 OK\r\n"},
		{"GET /interim HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
	} {
		got := exchangeRaw(t, b, tc.request)
		if !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, "\r\n\r\nfinal") {
			t.Errorf("%q: got %q, want it to start %q and end in the body", tc.request, got, tc.want)
		}
	}

	got := exchangeRaw(t, b, "GET /interimflood HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	continues := strings.Count(got, "HTTP/1.1 100 Continue\r\nVia: 1.1 loadlab\r\n\r\n")
	final := got[strings.LastIndex(got, "HTTP/1.1 100 Continue\r\nVia: 1.1 loadlab\r\n\r\n")+len("HTTP/1.1 100 Continue\r\nVia: 1.1 loadlab\r\n\r\n"):]
	if continues == 0 || continues > maxResponseHead/len("HTTP/1.1 100 Continue\r\n\r\n") ||
		!strings.HasPrefix(final, "HTTP/1.1 502 Bad Gateway\r\n") || !strings.Contains(final, "interim (1xx) answers past 64 KiB") {
		t.Errorf("flood of 100 Continue: %d passed on, then %q", continues, final)
	}
	if status, _, _, err := fetch(b.Addr().String(), "/after"); err != nil || status != 200 {
		t.Errorf("after the flood: %d %v", status, err)
	}
}

// A client that reads slowly gets every byte of a large response: the
// balancer holds what the client cannot take and stops reading the
// backend meanwhile.
func TestHTTPStreamsALargeResponseToASlowReader(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	c := dialBalancer(t, b)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	testutil.Eventually(t, 10*time.Second, "the client's receive buffer filling up", func() bool {
		return unread(c) >= 32<<10
	})
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, bigBody) {
		t.Fatalf("%d of %d bytes, equal %v, %v", len(body), len(bigBody), bytes.Equal(body, bigBody), err)
	}
	if resp, err = http.ReadResponse(r, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the request after the large one: %v %v", resp, err)
	}
}

func TestHTTPExpectContinue(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	c := dialBalancer(t, b)
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q %v, want 100 Continue", line, err)
	}
	r.ReadString('\n')
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if head := e.lastHead(); !strings.Contains(head, "Content-Length: 5") || strings.Contains(head, "Expect") {
		t.Errorf("backend got:\n%s", head)
	}
}

// A pooled connection the backend closed while it was idle costs the
// client nothing, even for a request that is not idempotent: nothing of
// it was answered, so it goes again on a new connection.
func TestHTTPRetriesWhenAPooledConnectionWasClosed(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	for i := range 3 {
		got := exchangeRaw(t, b, "POST /thenclose HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx")
		if !strings.HasPrefix(got, "HTTP/1.1 200 OK") {
			t.Fatalf("request %d: %q", i, got)
		}
		testutil.Eventually(t, 5*time.Second, "the backend closing its side", func() bool { return e.closed.Load() == int64(i+1) })
	}
	if e.conns.Load() != 3 {
		t.Errorf("%d backend connections, want 3 (one per request)", e.conns.Load())
	}
}

// A backend that drops a request unanswered: a GET goes to the next
// backend; a POST, which may have done something, gets 502.
func TestHTTPUnansweredRequests(t *testing.T) {
	dropping := serveEach(t, func(c net.Conn) { http.ReadRequest(bufio.NewReader(c)) })
	good := startEcho(t)
	b := startBalancer(t, Config{Mode: "http", Algo: "first", Check: CheckConfig{Kind: "none"},
		Backends: []BackendConfig{{Addr: dropping}, {Addr: good.addr}}})
	got := exchangeRaw(t, b, "GET /noanswer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK") || good.requests.Load() != 1 {
		t.Errorf("GET: %q, the good backend saw %d", got, good.requests.Load())
	}
	got = exchangeRaw(t, b, "POST /noanswer HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx")
	if !strings.HasPrefix(got, "HTTP/1.1 502 ") || good.requests.Load() != 1 {
		t.Errorf("POST: %q, the good backend saw %d", got, good.requests.Load())
	}
}

func TestHTTPMaxConnsAnswers503(t *testing.T) {
	e := startEcho(t)
	b := startBalancer(t, Config{Mode: "http", MaxConns: 1, QueueTimeout: 100 * time.Millisecond,
		Check: CheckConfig{Kind: "none"}, Backends: []BackendConfig{{Addr: e.addr}}})
	held, _ := net.Dial("tcp", b.Addr().String()) // takes the only slot
	defer held.Close()
	io.WriteString(held, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	held.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(held), nil); err != nil {
		t.Fatal(err)
	}
	got := exchangeRaw(t, b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 503 ") || !strings.Contains(got, "Retry-After: 1\r\n") {
		t.Errorf("over --max-conns: %q", got)
	}
}

// Shutdown in http mode: an idle keep-alive client is closed at once, a
// request under way is answered (with "Connection: close"), new
// connections are refused, and once the grace is over what is left is
// closed.
func TestHTTPShutdownFinishesRequestsUnderWay(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	idle := dialBalancer(t, b)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idleReader := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(idleReader, nil); err != nil {
		t.Fatal(err)
	} else {
		io.ReadAll(resp.Body)
	}
	busy := dialBalancer(t, b)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	testutil.Eventually(t, 5*time.Second, "the request reaching the backend", func() bool { return e.requests.Load() == 2 })
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		stopped <- b.Shutdown(ctx)
	}()
	if _, err := idleReader.ReadByte(); err != io.EOF {
		t.Errorf("idle keep-alive client: %v, want EOF", err)
	}
	// The kernel may still complete a handshake before the listener is
	// closed, but nothing may answer it.
	if c, err := net.DialTimeout("tcp", b.Addr().String(), time.Second); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if got, _ := io.ReadAll(c); len(got) > 0 {
			t.Errorf("a connection made after Shutdown began was answered: %q", got)
		}
		c.Close()
	}
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("request under way: %v %v, want 200 with Connection: close", resp, err)
	}
	busy.Close() // as a client told "Connection: close" does
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestHTTPShutdownClosesWhatIsLeftAfterTheGrace(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	c := dialBalancer(t, b)
	io.WriteString(c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
	testutil.Eventually(t, 5*time.Second, "the request reaching the backend", func() bool { return e.requests.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := b.Shutdown(ctx); err == nil {
		t.Error("Shutdown returned no error though its grace ran out")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil || time.Since(began) > time.Second {
		t.Errorf("connection after the grace: %v after %s", err, time.Since(began))
	}
}

// A backend that breaks off a response, or frames it past a bound: before
// anything went to the client it gets 502; after, its connection is
// closed, so it sees the body is short (never a 502 glued to half a
// body).
func TestHTTPBrokenResponses(t *testing.T) {
	e := startEcho(t)
	b := httpBalancer(t, e.addr)
	got := exchangeRaw(t, b, "GET /badchunks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 502 ") {
		t.Errorf("malformed chunks: %q", got)
	}
	got = exchangeRaw(t, b, "GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(got, "\r\n\r\n0123456789") {
		t.Errorf("cut off: %q", got)
	}
	// A trailer section without end is cut once past 16 KiB, as HAProxy
	// refuses one past its buffer, not streamed for as long as it lasts.
	// Which of the two a client sees depends on how much of the flood the
	// balancer's first read of the response holds: a 502 when that read
	// already passes the bound (nothing went to the client yet), else the
	// head and the client's copy cut.
	got = exchangeRaw(t, b, "GET /trailerflood HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	cut := strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") && len(got) <= 64<<10 && !strings.HasSuffix(got, "\r\n\r\n")
	refused := strings.HasPrefix(got, "HTTP/1.1 502 ") && strings.HasSuffix(got, "malformed response body: trailer section over 16 KiB\n")
	if !cut && !refused {
		t.Errorf("trailer flood: %d bytes, %.80q … %q", len(got), got, got[max(0, len(got)-40):])
	}
}

// hash_by uri and header:NAME key sourcehash by the request: each request
// reaches the backend rendezvous hashing of its path, or of the header's
// value, chooses, whichever connection and client port it came on; a
// request without the header is placed by the client's address.
func TestHTTPHashByRequest(t *testing.T) {
	bss, cfgs := fourBackends(t)
	servedBy := map[string]string{} // backend name (its address) → what it says in X-Served-By
	for i, bs := range bss {
		servedBy[bs.addr] = fmt.Sprintf("b%d", i+1)
	}
	ask := func(b *Balancer, path, header string) string {
		c := dialBalancer(t, b)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n", path, header)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %q: %v %v", path, header, resp, err)
		}
		return resp.Header.Get("X-Served-By")
	}
	byURI := startBalancer(t, Config{Mode: "http", Algo: "sourcehash", HashBy: "uri", Backends: cfgs, Check: CheckConfig{Kind: "none"}})
	for i := range 12 {
		path := fmt.Sprintf("/santai?page=%d", i) // the query is not part of the key
		if i%2 == 1 {
			path = fmt.Sprintf("/testing.txt?v=%d", i)
		}
		key, _, _ := strings.Cut(path, "?")
		want := servedBy[SourceHash{}.pickKey(byURI.Pool().All(), []byte(key)).Name]
		for range 3 {
			if got := ask(byURI, path, ""); got != want {
				t.Errorf("hash_by uri, %s: served by %s, want %s", path, got, want)
			}
		}
	}
	byHeader := startBalancer(t, Config{Mode: "http", Algo: "sourcehash", HashBy: "header:X-User", Backends: cfgs, Check: CheckConfig{Kind: "none"}})
	for _, user := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		want := servedBy[SourceHash{}.pickKey(byHeader.Pool().All(), []byte(user)).Name]
		for range 3 {
			if got := ask(byHeader, "/santai", "x-user: "+user+"\r\n"); got != want {
				t.Errorf("hash_by header:X-User, %s: served by %s, want %s", user, got, want)
			}
		}
	}
	want := servedBy[SourceHash{}.Pick(byHeader.Pool().All(), netip.MustParseAddr("127.0.0.1")).Name]
	if got := ask(byHeader, "/santai", ""); got != want {
		t.Errorf("hash_by header:X-User, no header: served by %s, want %s (the client's address)", got, want)
	}
}

// Requests held whole while they come share one budget: clients that
// each send most of a large body and hold back the rest are refused (503,
// or the close that follows it) once their sum passes it, and what they
// held is given back when they go. (Before 2026-12-04, 300 such clients
// took the balancer to 608 MB, and more would take it down.)
func TestHTTPLargeRequestsShareABudget(t *testing.T) {
	defer func(n int64) { budget.MinRequests = n }(budget.MinRequests)
	budget.MinRequests = 0 // four of the largest requests: 1.3 MiB here; twelve clients hold 2 MiB past their free 64 KiB
	e := startEcho(t)
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: e.addr}}, Check: CheckConfig{Kind: "none"}, MaxBody: 256 << 10})
	head := fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 256<<10)
	part := strings.Repeat("a", 240<<10)
	var held []*testutil.Held
	for range 12 {
		c := dialBalancer(t, b)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, head+part)
		held = append(held, &testutil.Held{Conn: c, R: bufio.NewReader(c)})
	}
	refused := 0
	testutil.Eventually(t, 15*time.Second, "a client refused", func() bool {
		refused = testutil.RefusedSoFar(t, held)
		return refused > 0
	})
	if refused == len(held) {
		t.Errorf("all %d clients refused: the budget holds four whole requests", refused)
	}
	for _, h := range held {
		h.Conn.Close()
	}
	testutil.Eventually(t, 5*time.Second, "the budget given back", func() bool {
		c := dialBalancer(t, b)
		io.WriteString(c, head+strings.Repeat("a", 256<<10))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && resp.StatusCode == 200
	})
}

// With cookie set, a client's first answer names its backend in a
// cookie, and every request that brings it back goes there, on any
// connection, while the others still take turns; a backend that drains
// keeps the clients it has and takes no new one; a cookie naming a
// backend out of service, or none at all, is placed anew and set again.
func TestHTTPCookiePersistence(t *testing.T) {
	bss, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Mode: "http", Backends: cfgs, Check: CheckConfig{Kind: "none"}, Cookie: "SERVERID"})
	type answer struct{ by, setCookie, cacheControl string }
	get := func(cookie string) answer {
		t.Helper()
		c := dialBalancer(t, b)
		defer c.Close()
		req := "GET /santai HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		if cookie != "" {
			req += "Cookie: " + cookie + "\r\n"
		}
		io.WriteString(c, req+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		return answer{resp.Header.Get("X-Served-By"), strings.Join(resp.Header.Values("Set-Cookie"), " | "), resp.Header.Get("Cache-Control")}
	}
	// A first visit: a cookie naming where it went, kept from shared caches.
	first := get("")
	value, ok := strings.CutPrefix(first.setCookie, "SERVERID=")
	if !ok || !strings.HasSuffix(value, "; path=/") || first.cacheControl != "private" {
		t.Fatalf("first answer: Set-Cookie %q, Cache-Control %q", first.setCookie, first.cacheControl)
	}
	value = strings.TrimSuffix(value, "; path=/")
	if strings.Contains(value, "127.0.0.1") {
		t.Errorf("the cookie %q gives the backend's address away", value)
	}
	kept := func(what, cookie string) {
		t.Helper()
		for range 8 {
			if a := get(cookie); a.by != first.by || a.setCookie != "" {
				t.Fatalf("%s: served by %s (want %s), Set-Cookie %q (want none)", what, a.by, first.by, a.setCookie)
			}
		}
	}
	kept("the cookie alone", "SERVERID="+value)
	kept("among other cookies", `lang=id; SERVERID="`+value+`"; theme=dark`)
	others := map[string]bool{}
	for range 8 {
		others[get("lang=id").by] = true
	}
	if len(others) != 4 {
		t.Errorf("clients without the cookie went to %v, want all four in turn", others)
	}
	var sticky *Backend
	for i, bs := range bss {
		if fmt.Sprintf("b%d", i+1) == first.by { // fourBackends' names
			sticky = b.Pool().Find(bs.addr)
		}
	}
	if sticky == nil {
		t.Fatalf("no backend is named %s", first.by)
	}
	sticky.SetState(Drain)
	kept("its backend draining", "SERVERID="+value)
	for range 8 {
		if a := get(""); a.by == first.by {
			t.Fatalf("a new client went to the draining %s", first.by)
		}
	}
	sticky.SetState(Maint)
	if a := get("SERVERID=" + value); a.by == first.by || !strings.HasPrefix(a.setCookie, "SERVERID=") || strings.Contains(a.setCookie, value) {
		t.Errorf("its backend in maintenance: served by %s, Set-Cookie %q; want another backend and a new cookie", a.by, a.setCookie)
	}
	if a := get("SERVERID=nonsense"); !strings.HasPrefix(a.setCookie, "SERVERID=") {
		t.Errorf("a cookie naming no backend: Set-Cookie %q", a.setCookie)
	}
}

// The persistence cookie is the balancer's: the backend gets the
// client's other cookies, and no Cookie field the balancer's left empty.
func TestHTTPCookieIsNotTheBackends(t *testing.T) {
	e := startEcho(t)
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: e.addr}}, Check: CheckConfig{Kind: "none"}, Cookie: "SERVERID"})
	value := b.Pool().All()[0].cookie
	got := exchangeRaw(t, b, "GET / HTTP/1.1\r\nHost: x\r\nCookie: lang=id; SERVERID="+value+"; theme=dark\r\n"+
		"Cookie: SERVERID="+value+"\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200") || strings.Contains(got, "Set-Cookie") {
		t.Errorf("answer to a client that has its cookie: %q", got)
	}
	head := e.lastHead()
	if !strings.Contains(head, "\r\nCookie: lang=id; theme=dark\r\n") || strings.Count(head, "Cookie") != 1 || strings.Contains(head, "SERVERID") {
		t.Errorf("the backend got:\n%s", head)
	}
}
