package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echoBackend answers every request with its own head as the body, over
// keep-alive, and counts connections and requests. behave may replace the
// answer for a request whose path names a misbehaviour.
type echoBackend struct {
	addr     string
	conns    atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	heads    []string
}

func startEcho(t *testing.T) *echoBackend {
	e := &echoBackend{}
	e.addr = serveEach(t, func(c net.Conn) {
		e.conns.Add(1)
		e.serve(c)
	})
	return e
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
		case "/chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nServer: echo\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
			continue
		}
		body := head.String()
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nServer: echo\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

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
	c, _ := net.Dial("tcp", b.Addr().String())
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /chunked?q=1 HTTP/1.1\r\nHost: lab\r\nConnection: keep-alive, X-Secret\r\nX-Secret: hop\r\n"+
		"Keep-Alive: 300\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 10.1.1.1\r\nX-End: stays\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	head := e.lastHead()
	for _, want := range []string{"GET /chunked?q=1\n", "X-Forwarded-For: 10.1.1.1, 127.0.0.1", "X-Forwarded-Proto: http",
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
