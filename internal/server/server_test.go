package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"loadlab/internal/budget"
	"loadlab/internal/httpx"
	"loadlab/internal/rawsys"
	"loadlab/internal/site"
	"loadlab/internal/testutil"
	"loadlab/internal/tlsx"
)

// TestMain doubles as a prefork child: the prefork tests start this test
// binary again with LOADLAB_TEST_CHILD set, and it serves like
// "loadlab serve --reuseport" would.
func TestMain(m *testing.M) {
	if os.Getenv("LOADLAB_TEST_CHILD") != "" {
		runTestChild()
		return
	}
	os.Exit(m.Run())
}

func runTestChild() {
	var cfg Config
	cfg.Model, cfg.ReusePort = "async", true
	args := os.Args[1:]
	root := ""
	var certs tlsx.Pair
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--listen":
			cfg.Listen = args[i+1]
		case "--root":
			root = args[i+1]
		case "--name":
			cfg.Name = args[i+1]
		case "--header-timeout":
			cfg.HeaderTimeout, _ = time.ParseDuration(args[i+1])
		case "--idle-timeout":
			cfg.IdleTimeout, _ = time.ParseDuration(args[i+1])
		case "--tls-cert":
			certs.CertFile = args[i+1]
		case "--tls-key":
			certs.KeyFile = args[i+1]
		}
	}
	if certs.CertFile != "" {
		store, _, err := tlsx.Load([]tlsx.Pair{certs})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cfg.TLS = store.ServerConfig()
	}
	site, err := site.New(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var h Handler = site
	if slices.Contains(args, "--boom") {
		h = boomHandler{site}
	}
	srv, err := Start(cfg, h)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, ReadyLine(cfg.Model, srv.Addr(), ""))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	os.Exit(0)
}

// start runs a server of the given model on 127.0.0.1:0 for the test.
func start(t *testing.T, model string, root string, tune func(*Config)) Server {
	t.Helper()
	h, err := site.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return startWith(t, model, root, h, tune)
}

// startWith is start with a handler of the test's own: the site, or the
// site behind boomHandler (prefork's children are told to do the same).
func startWith(t *testing.T, model, root string, handler Handler, tune func(*Config)) Server {
	t.Helper()
	cfg := Config{Model: model, Listen: "127.0.0.1:0", Name: "test-" + model, Procs: 2}
	var childArgs []string
	if root != "" {
		childArgs = append(childArgs, "--root", root)
	}
	if tune != nil {
		tune(&cfg)
	}
	childArgs = append(childArgs, "--name", cfg.Name)
	if _, ok := handler.(boomHandler); ok {
		childArgs = append(childArgs, "--boom", "on")
	}
	if cfg.HeaderTimeout > 0 {
		childArgs = append(childArgs, "--header-timeout", cfg.HeaderTimeout.String())
	}
	if cfg.IdleTimeout > 0 {
		childArgs = append(childArgs, "--idle-timeout", cfg.IdleTimeout.String())
	}
	if p, ok := tlsFiles.Load(cfg.TLS); ok {
		childArgs = append(childArgs, "--tls-cert", p.(tlsx.Pair).CertFile, "--tls-key", p.(tlsx.Pair).KeyFile)
	}
	cfg.Child = func(addr string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], append([]string{"--listen", addr}, childArgs...)...)
		cmd.Env = append(os.Environ(), "LOADLAB_TEST_CHILD=1")
		return cmd
	}
	srv, err := Start(cfg, handler)
	if err != nil {
		t.Fatalf("start %s: %v", model, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// eachModel runs fn once per concurrency model: the same table for all.
func eachModel(t *testing.T, fn func(t *testing.T, model string)) {
	for _, m := range Models {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			fn(t, m)
		})
	}
}

// client is one test connection with a reader for its responses.
type client struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, srv Server) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
}

// read reads one response; method is the request's, so HEAD has no body.
func (c *client) read(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(body)
}

// exchange sends raw and reads the response to it; method is the
// request's.
func (c *client) exchange(t *testing.T, raw, method string) *http.Response {
	t.Helper()
	c.send(t, raw)
	resp, _ := c.read(t, method)
	return resp
}

// closed reports whether the server closed the connection: nothing more
// to read.
func (c *client) closed() bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.r.Read(make([]byte, 1))
	return n == 0 && err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n" }

func TestRoutes(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)
		cases := []struct {
			raw, method string
			status      int
			body        string
			header      string
		}{
			{get("/"), "GET", 200, "Ini Adalah web Server percobaan", "Content-Type: text/plain; charset=utf-8"},
			{get("/video"), "GET", 302, "", "Location: https://youtu.be/katoxpnTf04"},
			{get("/santai"), "GET", 200, "santai saja", "Content-Length: 11"},
			{get("/testing.txt"), "GET", 200, "Ini adalah file testing.txt", "Content-Type: text/plain; charset=utf-8"},
			{get("/page.html"), "GET", 200, "<!DOCTYPE html>", "Content-Type: text/html; charset=utf-8"},
			{get("/nope.html"), "GET", 404, "404 Not Found", ""},
			{"POST /page.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", "POST", 405, "", "Allow: GET, HEAD"},
			{"POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 17\r\n\r\nnama=Ani&nrp=0517", "POST", 200, "nama: Ani\nnrp: 0517\n", ""},
			{"POST /form HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnama\r\n4\r\n=Ani\r\n0\r\n\r\n", "POST", 200, "nama: Ani\n", ""},
			{"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", "HEAD", 200, "", "Content-Length: 31"},
			{"HEAD /payload-100k.bin HTTP/1.1\r\nHost: t\r\n\r\n", "HEAD", 200, "", "Content-Length: 102400"},
			{get("/"), "GET", 200, "", "X-Served-By: test-" + model},
			{get("/"), "GET", 200, "", "Server: loadlab/"},
		}
		c := dial(t, srv)
		for _, tc := range cases {
			c.send(t, tc.raw)
			resp, body := c.read(t, tc.method)
			if resp.StatusCode != tc.status {
				t.Errorf("%q: status %d, want %d", tc.raw, resp.StatusCode, tc.status)
			}
			if !strings.HasPrefix(body, tc.body) {
				t.Errorf("%q: body %.50q, want prefix %q", tc.raw, body, tc.body)
			}
			if tc.method == "HEAD" && body != "" {
				t.Errorf("%q: HEAD answered with a body", tc.raw)
			}
			if name, value, ok := strings.Cut(tc.header, ": "); ok && !strings.HasPrefix(resp.Header.Get(name), value) {
				t.Errorf("%q: %s is %q, want %q", tc.raw, name, resp.Header.Get(name), value)
			}
			if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
				t.Errorf("%q: Date %q is not IMF-fixdate", tc.raw, resp.Header.Get("Date"))
			}
		}
	})
}

func TestKeepAliveRules(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)

		c := dial(t, srv) // HTTP/1.0 closes after one response
		c.send(t, "GET / HTTP/1.0\r\n\r\n")
		if resp, _ := c.read(t, "GET"); !resp.Close || !c.closed() {
			t.Errorf("HTTP/1.0: want Connection: close and a closed connection")
		}

		c = dial(t, srv) // HTTP/1.0 with keep-alive stays
		for range 3 {
			c.send(t, "GET /santai HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			if resp, body := c.read(t, "GET"); resp.Close || body != "santai saja" {
				t.Fatalf("HTTP/1.0 keep-alive: close %v body %q", resp.Close, body)
			}
		}

		c = dial(t, srv) // HTTP/1.1 stays until "Connection: close"
		for range 3 {
			c.send(t, get("/"))
			c.read(t, "GET")
		}
		c.send(t, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
		if resp, _ := c.read(t, "GET"); !resp.Close || !c.closed() {
			t.Errorf("HTTP/1.1 close: the connection should close")
		}
	})
}

func TestPipelining(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)
		c := dial(t, srv)
		c.send(t, get("/")+get("/santai")+"HEAD /testing.txt HTTP/1.1\r\nHost: t\r\n\r\n"+get("/payload-100k.bin"))
		want := []struct {
			method, body string
		}{{"GET", "Ini Adalah web Server percobaan"}, {"GET", "santai saja"}, {"HEAD", ""}, {"GET", "loadlab payload line 000000"}}
		for i, w := range want {
			_, body := c.read(t, w.method)
			if !strings.HasPrefix(body, w.body) || (w.body == "" && body != "") {
				t.Errorf("pipelined response %d: %.40q, want %q", i, body, w.body)
			}
		}
	})
}

func TestExpectContinue(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)
		c := dial(t, srv)
		c.send(t, "POST /form HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		line, err := c.r.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("want 100 Continue, got %q %v", line, err)
		}
		c.r.ReadString('\n')
		c.send(t, "a=xyz")
		if resp, body := c.read(t, "POST"); resp.StatusCode != 200 || body != "a: xyz\n" {
			t.Errorf("after 100 Continue: %d %q", resp.StatusCode, body)
		}
	})
}

func TestLargeFileIntact(t *testing.T) {
	want, err := os.ReadFile("../site/www/payload-1m.bin")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(want)
	root := t.TempDir()
	os.WriteFile(root+"/big.bin", want, 0o644) // streamed from disk, not from memory
	eachModel(t, func(t *testing.T, model string) {
		for _, r := range []struct{ root, path string }{{"", "/payload-1m.bin"}, {root, "/big.bin"}} {
			srv := start(t, model, r.root, nil)
			c := dial(t, srv) // keep-alive, twice on one connection
			for range 2 {
				c.send(t, get(r.path))
				if _, body := c.read(t, "GET"); sha256.Sum256([]byte(body)) != sum {
					t.Errorf("%s (root %q): keep-alive body of %d bytes differs", r.path, r.root, len(body))
				}
			}
			c = dial(t, srv) // HTTP/1.0: written, then closed
			c.send(t, "GET "+r.path+" HTTP/1.0\r\n\r\n")
			if _, body := c.read(t, "GET"); sha256.Sum256([]byte(body)) != sum || !c.closed() {
				t.Errorf("%s (root %q): HTTP/1.0 body of %d bytes differs or the connection stayed open", r.path, r.root, len(body))
			}
		}
	})
}

func TestManyClients(t *testing.T) {
	const clients, each = 200, 50
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)
		errs := make(chan error, clients)
		for i := range clients {
			go func() {
				errs <- func() error {
					c, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
					if err != nil {
						return err
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(60 * time.Second))
					r := bufio.NewReader(c)
					for j := range each {
						path, want := "/", "Ini Adalah web Server percobaan"
						if (i+j)%3 == 0 {
							path, want = "/santai", "santai saja"
						}
						if _, err := io.WriteString(c, get(path)); err != nil {
							return err
						}
						resp, err := http.ReadResponse(r, nil)
						if err != nil {
							return fmt.Errorf("client %d request %d: %w", i, j, err)
						}
						body, _ := io.ReadAll(resp.Body)
						if resp.StatusCode != 200 || string(body) != want {
							return fmt.Errorf("client %d request %d: %d %q", i, j, resp.StatusCode, body)
						}
					}
					return nil
				}()
			}()
		}
		for range clients {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})
}

func TestSlowClientCutOff(t *testing.T) {
	const timeout = 500 * time.Millisecond
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", func(c *Config) { c.HeaderTimeout = timeout })
		slow := dial(t, srv)
		began := time.Now()
		stop := make(chan struct{})
		go func() { // one byte every 50 ms, never finishing the head
			head := "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + strings.Repeat("z", 1000)
			for i := 0; i < len(head); i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := slow.Write([]byte{head[i]}); err != nil {
					return
				}
			}
		}()
		defer close(stop)
		// Others are served while the slow one dribbles.
		for range 5 {
			c := dial(t, srv)
			c.send(t, get("/"))
			if resp, _ := c.read(t, "GET"); resp.StatusCode != 200 {
				t.Errorf("other client got %d", resp.StatusCode)
			}
		}
		resp, _ := slow.read(t, "GET")
		took := time.Since(began)
		if resp.StatusCode != 408 || !slow.closed() {
			t.Errorf("slow client: status %d, want 408 and a close", resp.StatusCode)
		}
		if took > timeout+2*time.Second {
			t.Errorf("slow client cut off after %s, header timeout %s", took, timeout)
		}
	})
}

// TestReadTimeoutsAlike: every model applies the session's read
// deadlines the same way. A body that stops coming is answered 408 and
// closed after the idle timeout, as nginx's client_body_timeout; an idle
// kept-alive connection is closed without a word.
func TestReadTimeoutsAlike(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
		stalled := dial(t, srv)
		resp := stalled.exchange(t, "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc", "POST")
		if resp.StatusCode != 408 || !stalled.closed() {
			t.Errorf("stalled body: status %d, want 408 and a close", resp.StatusCode)
		}
		idle := dial(t, srv)
		if resp := idle.exchange(t, get("/"), "GET"); resp.StatusCode != 200 || !idle.closed() {
			t.Errorf("idle kept-alive connection: status %d, want 200 and then a close", resp.StatusCode)
		}
	})
}

// refused lists requests that must be answered with a status and a close.
var refused = []struct {
	name, raw string
	status    int
}{
	{"head too large", "GET / HTTP/1.1\r\nHost: t\r\nA: " + strings.Repeat("a", 9000) + "\r\nB: " + strings.Repeat("b", 9000) + "\r\n\r\n", 431},
	{"request line too long", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: t\r\n\r\n", 414},
	{"body too large", "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413},
	{"CL and TE", "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", 400},
	{"TE and CL", "POST /form HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX", 400},
	{"two Content-Lengths", "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n\tX-B: 2\r\n\r\n", 400},
	{"bare LF", "GET / HTTP/1.1\nHost: t\n\n", 400},
	{"control byte in name", "GET / HTTP/1.1\r\nHost: t\r\nX\x7fA: 1\r\n\r\n", 400},
	{"chunk size garbage", "POST /form HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400},
	{"no Host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
	// No blank line follows these: answered when the line ends, not at
	// the header timeout (which would be 408).
	{"HTTP/0.9 request", "GET /\r\n", 400},
	{"HTTP/3.0, head unfinished", "GET / HTTP/3.0\r\nHost: t\r\n", 505},
	{"TLS hello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400},
}

func TestRefusedAndClosed(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)
		for _, r := range refused {
			c := dial(t, srv)
			c.send(t, r.raw)
			resp, _ := c.read(t, "GET")
			if resp.StatusCode != r.status {
				t.Errorf("%s: status %d, want %d", r.name, resp.StatusCode, r.status)
			}
			if !c.closed() {
				t.Errorf("%s: connection left open", r.name)
			}
		}
	})
}

func TestGarbageNeverPanics(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)
		rnd := newRand(uint64(len(model)))
		for i := range 100 {
			junk := make([]byte, 1+rnd.IntN(400))
			for j := range junk {
				junk[j] = byte(rnd.IntN(256))
			}
			junk = append(junk, "\n\n"...) // a bare LF at the latest: the head can never be valid
			c := dial(t, srv)
			c.Write(junk)
			resp, err := http.ReadResponse(c.r, nil)
			if err != nil || resp.StatusCode != 400 {
				t.Fatalf("garbage %d %q: %v %v", i, junk, resp, err)
			}
		}
		c := dial(t, srv)
		c.send(t, get("/"))
		if resp, _ := c.read(t, "GET"); resp.StatusCode != 200 {
			t.Errorf("after garbage the server answers %d", resp.StatusCode)
		}
	})
}

// traversals are spellings of a way out of the document root.
var traversals = []string{
	"/../secret.txt", "/../../secret.txt", "/..", "/../", "/./../secret.txt",
	"/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/%2e./secret.txt", "/.%2e/secret.txt",
	"/..%2fsecret.txt", "/..%2Fsecret.txt", "/%2e%2e%2fsecret.txt", "/images/../../secret.txt",
	"/images/%2e%2e/%2e%2e/secret.txt", "/..\\secret.txt", "/%5c..%5csecret.txt", "/..%5csecret.txt",
	"/%252e%252e/secret.txt", "/escape.txt", "/up/secret.txt", "/up/root/../secret.txt",
	"/%2fetc/passwd", "//etc/passwd", "/etc/passwd", "/../../../../etc/passwd",
	"/testing.txt%00.html", "/%00../secret.txt", "/..;/secret.txt", "/.../secret.txt",
	"/..%00/secret.txt", "/%c0%ae%c0%ae/secret.txt", "/%uff0e%uff0e/secret.txt",
	"http://t/../secret.txt", "/images/..%2f..%2fsecret.txt", "/up", "/up/",
}

func TestTraversalNeverEscapes(t *testing.T) {
	base := t.TempDir()
	root := base + "/root"
	os.CopyFS(root, os.DirFS("../site/www"))
	os.WriteFile(base+"/secret.txt", []byte("TOP SECRET"), 0o644)
	os.Symlink(base+"/secret.txt", root+"/escape.txt")
	os.Symlink(base, root+"/up")
	eachModel(t, func(t *testing.T, model string) {
		for _, r := range []string{"", root} {
			srv := start(t, model, r, nil)
			for _, p := range traversals {
				c := dial(t, srv)
				c.send(t, "GET "+p+" HTTP/1.0\r\n\r\n")
				resp, err := http.ReadResponse(c.r, nil)
				if err != nil {
					t.Errorf("%s: %v", p, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				if bytes.Contains(body, []byte("TOP SECRET")) || bytes.Contains(body, []byte("root:")) {
					t.Errorf("root %q, %s: served a file outside the root", r, p)
				}
				if resp.StatusCode != 400 && resp.StatusCode != 404 {
					t.Errorf("root %q, %s: status %d, want 400 or 404", r, p, resp.StatusCode)
				}
			}
		}
	})
}

func TestSameBytesEveryTime(t *testing.T) {
	var first string
	for _, model := range Models {
		srv := start(t, model, "", func(c *Config) { c.Name = "" })
		c := dial(t, srv)
		for range 20 {
			c.send(t, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			var raw strings.Builder
			for {
				line, err := c.r.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(line, "Date: ") {
					raw.WriteString(line)
				}
				if line == "\r\n" {
					break
				}
			}
			body := make([]byte, 31)
			io.ReadFull(c.r, body)
			raw.Write(body)
			if first == "" {
				first = raw.String()
			}
			if raw.String() != first {
				t.Fatalf("%s: response differs:\n%q\nfirst:\n%q", model, raw.String(), first)
			}
		}
	}
}

func TestMaxConns(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		if model == "prefork" {
			t.Skip("each prefork child has its own limit")
		}
		srv := start(t, model, "", func(c *Config) { c.MaxConns = 2 })
		a, b := dial(t, srv), dial(t, srv)
		for _, c := range []*client{a, b} { // both are open and served
			c.send(t, get("/"))
			c.read(t, "GET")
		}
		third := dial(t, srv)
		resp, _ := third.read(t, "GET")
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("connection over --max-conns: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
}

// gateHandler holds every request for /hold until open is closed, and
// says on held when one is holding.
type gateHandler struct {
	Handler
	held chan struct{}
	open chan struct{}
}

func (g gateHandler) Serve(req *httpx.Request, resp *httpx.Response) {
	if string(req.Path) == "/hold" {
		g.held <- struct{}{}
		<-g.open
		req.Path = []byte("/santai")
	}
	g.Handler.Serve(req, resp)
}

func TestPoolQueueFull(t *testing.T) {
	h, err := site.New("")
	if err != nil {
		t.Fatal(err)
	}
	gate := gateHandler{h, make(chan struct{}, 1), make(chan struct{})}
	srv := startWith(t, "pool", "", gate, func(c *Config) { c.Workers, c.Queue = 1, 1 })
	busy := dial(t, srv) // its request holds the only worker
	busy.send(t, get("/hold"))
	<-gate.held
	queued := dial(t, srv) // its request waits in the queue
	queued.send(t, get("/santai"))
	testutil.Eventually(t, 5*time.Second, "a request in the pool's queue", func() bool { return srv.(*blockingServer).queued.Load() == 1 })
	over := dial(t, srv)
	over.send(t, get("/"))
	resp, body := over.read(t, "GET")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "queue") {
		t.Errorf("over a full queue: %d %q", resp.StatusCode, body)
	}
	close(gate.open) // the worker frees and takes the queued request
	for _, c := range []*client{busy, queued} {
		if _, body := c.read(t, "GET"); body != "santai saja" {
			t.Errorf("a request that waited for the worker: %q", body)
		}
	}
}

// Clients that wait, or make the server wait, hold nothing another
// client needs: on the pool model with two workers, idle keep-alive
// connections, a head and a body coming slowly, and a client that asks
// for downloads and never reads, more of each than there are workers,
// and a new client is still answered. (Until 2026-12-04 a pool's worker
// kept its connection through every wait: two idle keep-alive clients
// stalled the pool for the idle timeout.)
func TestWaitingClientsHoldNoWorker(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", func(c *Config) { c.Workers, c.Queue = 2, 2 })
		for range 3 {
			idle := dial(t, srv)
			idle.send(t, get("/"))
			idle.read(t, "GET")
			dial(t, srv).send(t, "GET /santai HTTP/1.1\r\nHost:")
			dial(t, srv).send(t, "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nname=")
			dial(t, srv).send(t, strings.Repeat(get("/payload-100k.bin"), 50))
		}
		fresh := dial(t, srv)
		fresh.SetDeadline(time.Now().Add(10 * time.Second)) // well within the 60 s idle timeout
		fresh.send(t, get("/santai"))
		if _, body := fresh.read(t, "GET"); body != "santai saja" {
			t.Errorf("a new client beside the waiting ones: %q", body)
		}
	})
}

func TestGracefulShutdown(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)
		idle := dial(t, srv)
		idle.send(t, get("/"))
		idle.read(t, "GET")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		began := time.Now()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if !idle.closed() {
			t.Error("idle keep-alive connection left open")
		}
		if time.Since(began) > 3*time.Second {
			t.Errorf("shutdown with only idle connections took %s", time.Since(began))
		}
		if _, err := net.DialTimeout("tcp", srv.Addr().String(), time.Second); err == nil {
			t.Error("still accepting after shutdown")
		}
	})
}

func TestPreforkReplacesKilledChild(t *testing.T) {
	srv := start(t, "prefork", "", func(c *Config) { c.Procs = 2 })
	pf := srv.(*preforkServer)
	before := pf.PIDs()
	if len(before) != 2 {
		t.Fatalf("want 2 children, have %v", before)
	}
	syscall.Kill(before[0], syscall.SIGKILL)
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("killed child %d replaced", before[0]), func() bool {
		pids := pf.PIDs()
		return len(pids) == 2 && pids[0] != before[0] && processAlive(pids[0])
	})
	for range 50 { // the port answers all along, whichever child takes the connection
		c := dial(t, srv)
		c.send(t, "GET / HTTP/1.0\r\n\r\n")
		if resp, _ := c.read(t, "GET"); resp.StatusCode != 200 {
			t.Fatalf("after the restart: %d", resp.StatusCode)
		}
	}
}

// The prefork parent holds its port while the children start, but must
// not listen on it: a connection queued on the holder would be reset when
// it closes.
func TestPreforkHolderQueuesNoConnection(t *testing.T) {
	addr, hold, err := holdPort("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rawsys.Close(hold)
	if addr.Port == 0 {
		t.Fatal("no port taken")
	}
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the holder accepted a connection")
	}
	ln, err := listen(addr.String(), true) // a child's listener, beside the holder
	if err != nil {
		t.Fatalf("a child cannot bind the held port: %v", err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestPortInUse(t *testing.T) {
	srv := start(t, "thread", "", nil)
	for _, model := range Models {
		h, _ := site.New("")
		_, err := Start(Config{Model: model, Listen: srv.Addr().String(), Child: func(string) *exec.Cmd { return exec.Command("false") }}, h)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("%s on a busy port: %v", model, err)
		}
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

func TestOSThreadsServe(t *testing.T) {
	srv := start(t, "thread", "", func(c *Config) { c.OSThreads = true })
	for range 20 {
		c := dial(t, srv)
		c.send(t, "GET /santai HTTP/1.0\r\n\r\n")
		if _, body := c.read(t, "GET"); body != "santai saja" {
			t.Fatalf("got %q", body)
		}
	}
}

// boomHandler is the site, but GET /boom panics inside the handler.
type boomHandler struct{ Handler }

func (b boomHandler) Serve(req *httpx.Request, resp *httpx.Response) {
	if string(req.Path) == "/boom" {
		panic("boom: injected by the test")
	}
	b.Handler.Serve(req, resp)
}

// A panicking handler costs its own request a 500 and its connection;
// the next request, on a new connection, is answered.
func TestPanicIsKeptToItsConnection(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		h, _ := site.New("")
		srv := startWith(t, model, "", boomHandler{h}, nil)
		for range 3 {
			c := dial(t, srv)
			if resp := c.exchange(t, get("/boom"), "GET"); resp.StatusCode != 500 || !c.closed() {
				t.Errorf("the panicking request: status %d, want 500 and its connection closed", resp.StatusCode)
			}
			c = dial(t, srv)
			c.send(t, get("/santai"))
			if resp, body := c.read(t, "GET"); resp.StatusCode != 200 || body != "santai saja" {
				t.Errorf("after a panic: %d %q", resp.StatusCode, body)
			}
		}
	})
}

// A chunked body of floods of framing is refused on every model: 4 KB
// extensions on 1-byte chunks are 413 once their wire size passes
// --max-body, endless trailer lines 431 once they pass 16 KiB.
func TestChunkedFloodIsRefused(t *testing.T) {
	floods := map[string]struct {
		piece  string
		status int
	}{
		"extensions": {"1;" + strings.Repeat("e", 4000) + "\r\nA\r\n", 413},
		"trailers":   {"X-Trailer: " + strings.Repeat("t", 1000) + "\r\n", 431},
	}
	eachModel(t, func(t *testing.T, model string) {
		srv := start(t, model, "", nil)
		for name, flood := range floods {
			c := dial(t, srv)
			c.send(t, "POST /form HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
			if name == "trailers" {
				c.send(t, "0\r\n")
			}
			// Send until the server answers and stops reading: at most
			// 8 MB, far past the 1 MiB limit.
			for sent := 0; sent < 8<<20; sent += len(flood.piece) {
				c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := io.WriteString(c, flood.piece); err != nil {
					break
				}
			}
			if resp, _ := c.read(t, "POST"); resp.StatusCode != flood.status {
				t.Errorf("%s flood: %d, want %d", name, resp.StatusCode, flood.status)
			}
		}
	})
}

// TestListenerClosedHoldsTheCloses: during a stop, ListenerClosed runs
// with the listener already closed and, until it returns, kept-alive
// connections are still answered without "Connection: close": the barrier
// that lets prefork's children all close their listeners before any
// client is told to reconnect. Once it returns, answers say close.
func TestListenerClosedHoldsTheCloses(t *testing.T) {
	for _, model := range []string{"async", "thread", "pool"} {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			entered, release := make(chan struct{}), make(chan struct{})
			var releaseOnce sync.Once
			free := func() { releaseOnce.Do(func() { close(release) }) }
			defer free() // a failed check must not leave the stop waiting
			srv := start(t, model, "", func(c *Config) {
				c.ListenerClosed = func() { close(entered); <-release }
			})
			busy := dial(t, srv)
			busy.send(t, get("/"))
			busy.read(t, "GET")
			stopped := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				stopped <- srv.Shutdown(ctx)
			}()
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("ListenerClosed was not called")
			}
			if c, err := net.DialTimeout("tcp", srv.Addr().String(), time.Second); err == nil {
				c.Close()
				t.Error("the listener accepts while ListenerClosed runs")
			}
			for range 3 {
				busy.send(t, get("/"))
				if resp, _ := busy.read(t, "GET"); resp.Close {
					t.Fatal("answered Connection: close before ListenerClosed returned")
				}
			}
			free()
			select {
			case err := <-stopped:
				if err != nil {
					t.Errorf("shutdown: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no stop after ListenerClosed returned")
			}
			if !busy.closed() {
				t.Error("the idle connection is still open after the stop")
			}
		})
	}
}

// With --os-threads every connection holds an OS thread, and Go stops a
// program past 10,000 threads: connections past MaxPinnedConns are
// answered 503 instead (here the bound is lowered to two).
func TestPinnedThreadsAreBounded(t *testing.T) {
	defer func(n int) { maxPinnedConns = n }(maxPinnedConns)
	maxPinnedConns = 2
	srv := start(t, "thread", "", func(c *Config) { c.OSThreads = true })
	for range 2 {
		if resp := dial(t, srv).exchange(t, get("/santai"), "GET"); resp.StatusCode != 200 {
			t.Fatalf("a connection within the bound: %d", resp.StatusCode)
		}
	}
	resp, body := func() (*http.Response, string) {
		c := dial(t, srv)
		c.send(t, get("/santai"))
		return c.read(t, "GET")
	}()
	if resp.StatusCode != 503 || !strings.Contains(body, "too many open connections") {
		t.Errorf("a connection past the bound: %d %q", resp.StatusCode, body)
	}
}

// Requests held whole while they come share one budget: clients that
// each send most of a large body and hold back the rest are refused (503,
// or the close that follows it) once their sum passes it, and what they
// held is given back when they go: a full request is answered after.
// (Before 2026-12-04, 300 such clients took an async server to 575 MB
// and a thread one to 981 MB, and more would take any model down.)
func TestLargeRequestsShareABudget(t *testing.T) {
	defer func(n int64) { budget.MinRequests = n }(budget.MinRequests)
	budget.MinRequests = 0 // the budget is four of the largest requests: 1.3 MiB here, and twelve clients hold 2 MiB past their free 64 KiB
	for _, model := range []string{"async", "thread", "pool"} {
		t.Run(model, func(t *testing.T) {
			srv := start(t, model, "", func(c *Config) { c.Limits = httpx.DefaultLimits(); c.Limits.MaxBody = 256 << 10 })
			head := fmt.Sprintf("POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", 256<<10)
			part := strings.Repeat("a", 240<<10)
			var held []*testutil.Held
			for range 12 {
				c := dial(t, srv)
				c.send(t, head+part)
				held = append(held, &testutil.Held{Conn: c.Conn, R: c.r})
			}
			testutil.Eventually(t, 15*time.Second, "a client refused", func() bool { return testutil.RefusedSoFar(t, held) > 0 })
			for _, h := range held {
				h.Conn.Close()
			}
			testutil.Eventually(t, 5*time.Second, "the budget given back", func() bool {
				c := dial(t, srv)
				c.send(t, head+strings.Repeat("a", 256<<10))
				resp, err := http.ReadResponse(c.r, nil)
				return err == nil && resp.StatusCode == 200
			})
		})
	}
}
