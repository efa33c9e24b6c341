package balancer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/bench"
	"loadlab/internal/server"
	"loadlab/internal/testutil"
	"loadlab/internal/testutil/served"
)

// backendServer is a `loadlab serve` backend named by its X-Served-By.
type backendServer struct {
	addr string
	srv  server.Server
}

func startServe(t *testing.T, name string) *backendServer {
	t.Helper()
	srv := served.Start(t, server.Config{Name: name})
	return &backendServer{addr: srv.Addr().String(), srv: srv}
}

func (bs *backendServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	bs.srv.Shutdown(ctx)
}

// serveEach listens on a free loopback port and runs handle for every
// connection, closing it after; it stops with the test.
func serveEach(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln := testutil.Listen(t)
	testutil.ServeEach(t, ln, handle)
	return ln.Addr().String()
}

func startBalancer(t *testing.T, cfg Config) *Balancer {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	})
	return b
}

func fourBackends(t *testing.T) ([]*backendServer, []BackendConfig) {
	var bss []*backendServer
	var cfgs []BackendConfig
	for i := range 4 {
		bs := startServe(t, fmt.Sprintf("b%d", i+1))
		bss = append(bss, bs)
		cfgs = append(cfgs, BackendConfig{Addr: bs.addr})
	}
	return bss, cfgs
}

// fetch sends one HTTP/1.0 request on a new connection.
func fetch(addr, path string) (status int, servedBy, body string, err error) {
	return fetchFrom(nil, addr, path)
}

// fetchFrom is fetch from a chosen local address (nil: any).
func fetchFrom(local net.Addr, addr, path string) (status int, servedBy, body string, err error) {
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: local}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", "", err
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Served-By"), string(b), nil
}

func TestRoundRobinOverFourBackends(t *testing.T) {
	_, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs, Check: CheckConfig{Kind: "none"}})
	for i := range 4000 {
		_, by, _, err := fetch(b.Addr().String(), "/")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("b%d", i%4+1); by != want {
			t.Fatalf("connection %d served by %q, want %q", i, by, want)
		}
	}
	for _, s := range b.Status() {
		if s.Total != 1000 {
			t.Errorf("%s took %d connections, want 1000", s.Name, s.Total)
		}
	}
}

// The algorithms' promises, seen by clients of a running balancer
// (picker_test.go checks the pickers alone).
func TestAlgorithmsOverRealConnections(t *testing.T) {
	t.Run("weighted", func(t *testing.T) {
		_, cfgs := fourBackends(t)
		cfgs = cfgs[:2]
		cfgs[0].Weight, cfgs[1].Weight = 3, 1
		b := startBalancer(t, Config{Algo: "weighted", Backends: cfgs, Check: CheckConfig{Kind: "none"}})
		got := map[string]int{}
		for range 400 {
			_, by, _, err := fetch(b.Addr().String(), "/")
			if err != nil {
				t.Fatal(err)
			}
			got[by]++
		}
		if got["b1"] != 300 || got["b2"] != 100 {
			t.Errorf("weights 3:1 over 400 connections gave %v, want b1 300, b2 100", got)
		}
	})

	// One backend holds every request until the test lets go, as a backend
	// that has hung would; eight clients keep requests going to four
	// backends. Each held request holds its client, so the bounds below
	// follow from each algorithm's rule, not from timing: leastconn picks
	// the held backend only when its count is at most every other's, p2c
	// only when it is at most that of one other backend drawn at random.
	// With 8 clients that allows leastconn 8/4 + 1 = 3 and p2c 8/2 + 1 = 5;
	// one more each for a connection whose close a loop has not handled
	// yet, still counted. Round robin, the control, sends the held backend
	// every fourth connection, so it soon holds every client.
	for _, algo := range []string{"leastconn", "p2c", "roundrobin"} {
		t.Run(algo+" and a hung backend", func(t *testing.T) {
			var held atomic.Int64
			release := make(chan struct{})
			hung := serveEach(t, func(c net.Conn) {
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				held.Add(1)
				<-release
				io.WriteString(c, "HTTP/1.0 200 OK\r\nX-Served-By: hung\r\nContent-Length: 0\r\n\r\n")
			})
			_, cfgs := fourBackends(t)
			cfgs[1].Addr = hung
			b := startBalancer(t, Config{Algo: algo, Backends: cfgs, Check: CheckConfig{Kind: "none"}})
			const clients, each = 8, 40
			var failed, finished atomic.Int64
			var wg sync.WaitGroup
			// A held client waits for the release, however long the others take.
			client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
			for range clients {
				wg.Go(func() {
					for range each {
						resp, err := client.Get("http://" + b.Addr().String() + "/")
						if err != nil || resp.StatusCode != 200 {
							failed.Add(1)
						}
						if err == nil {
							resp.Body.Close()
						}
					}
					finished.Add(1)
				})
			}
			bound := map[string]int64{"leastconn": 4, "p2c": 6, "roundrobin": clients}[algo]
			// Wait until every client is either finished or held (a held
			// request holds its client).
			testutil.Eventually(t, 30*time.Second, "every client finished or held", func() bool {
				return finished.Load()+held.Load() >= clients
			})
			n := held.Load()
			close(release)
			wg.Wait()
			if failed.Load() > 0 {
				t.Fatalf("%d requests failed", failed.Load())
			}
			if algo != "roundrobin" && n > bound {
				t.Errorf("%s let the hung backend hold %d requests, more than its rule allows (%d)", algo, n, bound)
			}
			if algo == "roundrobin" && n != clients {
				t.Errorf("round robin: the hung backend held %d of the %d clients, want all", n, clients)
			}
			t.Logf("%s: the hung backend held %d requests", algo, n)
		})
	}

	// Clients from 100 loopback addresses; removing one of 4 backends moves
	// the clients it had and no one else.
	t.Run("sourcehash", func(t *testing.T) {
		bss, cfgs := fourBackends(t)
		b := startBalancer(t, Config{Algo: "sourcehash", Backends: cfgs, Check: CheckConfig{Kind: "none"}})
		servedBy := func(i int) string {
			_, by, _, err := fetchFrom(&net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))}, b.Addr().String(), "/")
			if err != nil {
				t.Fatal(err)
			}
			return by
		}
		before := map[int]string{}
		per := map[string]int{}
		for i := range 100 {
			before[i] = servedBy(i)
			if again := servedBy(i); again != before[i] {
				t.Fatalf("client %d went to %s, then to %s", i, before[i], again)
			}
			per[before[i]]++
		}
		if len(per) != 4 || per["b3"] == 0 {
			t.Fatalf("100 clients spread as %v, want all 4 backends used", per)
		}
		if b.Pool().Remove(bss[2].addr) == nil {
			t.Fatal("could not remove b3")
		}
		moved := 0
		for i := range 100 {
			now := servedBy(i)
			switch {
			case before[i] == "b3" && now == "b3":
				t.Fatalf("client %d still went to the removed b3", i)
			case before[i] == "b3":
				moved++
			case now != before[i]:
				t.Errorf("client %d moved from %s to %s though %s stayed", i, before[i], now, before[i])
			}
		}
		if moved != per["b3"] {
			t.Errorf("%d clients moved, want b3's %d", moved, per["b3"])
		}
	})
}

func TestKilledBackendCostsNothing(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		bss, cfgs := fourBackends(t)
		b := startBalancer(t, Config{Mode: mode, Backends: cfgs, Check: CheckConfig{Kind: "none"}})
		bss[1].stop() // dead before the run; only redispatch can save its share
		s, err := bench.Run(context.Background(), bench.Work{URL: "http://" + b.Addr().String() + "/", Requests: 400, Concurrency: 8}, nil)
		if err != nil || s.Failed != 0 || s.Complete != 400 || s.Non2xx != 0 {
			t.Errorf("%s: %v, failed %d, non-2xx %d", mode, err, s.Failed, s.Non2xx)
		}
	}
}

// flakyBackend accepts connections only while up; it answers health checks
// and requests with the lab's text.
type flakyBackend struct {
	addr string
	up   atomic.Bool
	ln   net.Listener
	mu   sync.Mutex
}

func startFlaky(t *testing.T) *flakyBackend {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	f := &flakyBackend{addr: ln.Addr().String(), ln: ln}
	f.up.Store(true)
	testutil.ServeEach(t, ln, f.answer)
	return f
}

// answer is the backend's reply to every connection, on every listener
// it reopens (each served by testutil.ServeEach, closed at the test's end).
func (f *flakyBackend) answer(c net.Conn) {
	bufio.NewReader(c).ReadString('\n')
	io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
}

// setUp stops or restarts listening on the same port.
func (f *flakyBackend) setUp(t *testing.T, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if up {
		ln, err := net.Listen("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		f.ln = ln
		testutil.ServeEach(t, ln, f.answer)
	} else {
		f.ln.Close()
	}
}

func waitState(t *testing.T, be *Backend, want State, within time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	testutil.Eventually(t, within, be.Name+" "+want.String(), func() bool { return be.State() == want })
	return time.Since(began)
}

func TestHealthRiseAndFall(t *testing.T) {
	f := startFlaky(t)
	other := startFlaky(t)
	const interval = 50 * time.Millisecond
	b := startBalancer(t, Config{
		Backends: []BackendConfig{{Addr: f.addr}, {Addr: other.addr}},
		Check:    CheckConfig{Kind: "http", Interval: interval, Timeout: 40 * time.Millisecond, Rise: 2, Fall: 3},
	})
	be := b.Pool().Find(f.addr)
	f.setUp(t, false)
	took := waitState(t, be, Down, 2*time.Second)
	if took > 3*interval+time.Second { // fall × interval, plus a check's time and a busy machine's slack
		t.Errorf("out after %s, want within fall × interval (%s) and a check's time", took, 3*interval)
	}
	for range 20 { // nothing goes to a down backend
		if _, _, body, err := fetch(b.Addr().String(), "/"); err != nil || body != "ok" {
			t.Fatalf("while one is down: %q %v", body, err)
		}
	}
	if n := be.Total.Load(); n != 0 {
		t.Errorf("down backend got %d connections", n)
	}
	f.setUp(t, true)
	waitState(t, be, Ready, 2*time.Second)
	if r := be.LastCheck(); r == nil || !r.OK {
		t.Errorf("last check %+v", r)
	}
}

func TestDrain(t *testing.T) {
	bss, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs, Check: CheckConfig{Kind: "none"}})
	// A connection open before the drain keeps working: it is the first, so
	// round robin gave it to b1.
	c, _ := net.Dial("tcp", b.Addr().String())
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	ask := func() string {
		fmt.Fprintf(c, "GET /santai HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Header.Get("X-Served-By")
	}
	if by := ask(); by != "b1" {
		t.Fatalf("first connection served by %s", by)
	}
	b.Pool().Find(bss[0].addr).SetState(Drain)
	for range 40 {
		if _, by, _, _ := fetch(b.Addr().String(), "/"); by == "b1" {
			t.Fatal("a draining backend got a new connection")
		}
	}
	if by := ask(); by != "b1" {
		t.Errorf("the connection open on the drained backend is now served by %s", by)
	}
}

func TestReloadKeepsCountersAndRefusesBadConfig(t *testing.T) {
	bss, cfgs := fourBackends(t)
	cfg := Config{Backends: cfgs, Check: CheckConfig{Kind: "none"}}
	b := startBalancer(t, cfg)
	fetch(b.Addr().String(), "/")
	cfg = *b.Config()
	bad := cfg
	bad.Algo = "fastest"
	if err := b.Reload(bad); err == nil {
		t.Error("a bad algorithm was accepted")
	}
	next := cfg
	next.Backends = cfgs[:2]
	next.Algo = "leastconn"
	if err := b.Reload(next); err != nil {
		t.Fatal(err)
	}
	if len(b.Pool().All()) != 2 || b.Pool().Find(bss[0].addr).Total.Load() != 1 || b.Config().Algo != "leastconn" {
		t.Errorf("after reload: %v", b.Status())
	}
}

func TestHalfClosePassesThrough(t *testing.T) {
	// An echo backend that answers only after the client's FIN.
	addr := serveEach(t, func(c net.Conn) {
		got, _ := io.ReadAll(c) // until the client's half-close arrives
		fmt.Fprintf(c, "got %d bytes", len(got))
	})
	b := startBalancer(t, Config{Backends: []BackendConfig{{Addr: addr}}, Check: CheckConfig{Kind: "none"}})
	c, _ := net.Dial("tcp", b.Addr().String())
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "hello, backend")
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "got 14 bytes" {
		t.Errorf("reply %q, %v", reply, err)
	}
}

func TestSendProxyHeader(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		got := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			all, _ := io.ReadAll(c) // the header and the client's "X", to its close
			got <- all
		}()
		b := startBalancer(t, Config{Backends: []BackendConfig{{Addr: ln.Addr().String()}}, SendProxy: v, Check: CheckConfig{Kind: "none"}})
		c, _ := net.Dial("tcp", b.Addr().String())
		local := c.LocalAddr().(*net.TCPAddr)
		io.WriteString(c, "X")
		c.(*net.TCPConn).CloseWrite()
		hdr := <-got
		c.Close()
		ln.Close()
		port := b.Addr().(*net.TCPAddr).Port
		want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\nX", local.Port, port)
		if v == "v2" {
			want = "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01" +
				string([]byte{byte(local.Port >> 8), byte(local.Port), byte(port >> 8), byte(port)}) + "X"
		}
		if string(hdr) != want {
			t.Errorf("%s header %q, want %q", v, hdr, want)
		}
	}
}

func TestAllDownRefusesFastAndRecovers(t *testing.T) {
	f := startFlaky(t)
	for _, mode := range []string{"tcp", "http"} {
		b := startBalancer(t, Config{Mode: mode, Backends: []BackendConfig{{Addr: f.addr}},
			Check: CheckConfig{Kind: "tcp", Interval: 30 * time.Millisecond, Rise: 1, Fall: 1}})
		f.setUp(t, false)
		waitState(t, b.Pool().Find(f.addr), Down, 2*time.Second)
		began := time.Now()
		status, _, _, err := fetch(b.Addr().String(), "/")
		if mode == "tcp" && err == nil || mode == "http" && status != 503 {
			t.Errorf("%s with every backend down: status %d, err %v", mode, status, err)
		}
		if time.Since(began) > 2*time.Second {
			t.Errorf("%s took %s to refuse", mode, time.Since(began))
		}
		if mode == "http" {
			got := exchangeRaw(t, b, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(got, "HTTP/1.1 503 ") || !strings.Contains(got, "\r\nRetry-After: 1\r\n") {
				t.Errorf("http with every backend down answered %q, want 503 with Retry-After", got)
			}
		}
		f.setUp(t, true)
		waitState(t, b.Pool().Find(f.addr), Ready, 2*time.Second)
		if _, _, body, err := fetch(b.Addr().String(), "/"); body != "ok" {
			t.Errorf("%s after recovery: %q %v", mode, body, err)
		}
	}
}

func TestAdminAPIAndMetrics(t *testing.T) {
	bss, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs[:3], Check: CheckConfig{Kind: "none"}})
	a, err := StartAdmin(b, AdminConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	base := "http://" + a.Addr().String()
	fetch(b.Addr().String(), "/")
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := do("GET", "/api/backends", "")
	var list []BackendStatus
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 3 || list[0].Total != 1 {
		t.Errorf("list: %d %s", code, body)
	}
	if code, _ := do("POST", "/api/backends", `{"addr":"`+bss[3].addr+`","weight":2}`); code != 201 || len(b.Pool().All()) != 4 {
		t.Errorf("add: %d", code)
	}
	if code, _ := do("POST", "/api/backends", `{"addr":"nonsense"}`); code != 400 {
		t.Errorf("bad add: %d", code)
	}
	if code, _ := do("PUT", "/api/backends/"+bss[0].addr, `{"state":"drain"}`); code != 200 || b.Pool().Find(bss[0].addr).State() != Drain {
		t.Errorf("drain: %d", code)
	}
	if code, _ := do("PUT", "/api/backends/"+bss[0].addr, `{"state":"asleep"}`); code != 400 {
		t.Errorf("bad state: %d", code)
	}
	if code, _ := do("DELETE", "/api/backends/"+bss[1].addr, ""); code != 204 || len(b.Pool().All()) != 3 {
		t.Errorf("delete: %d", code)
	}
	code, body = do("GET", "/metrics", "")
	if code != 200 {
		t.Errorf("metrics: %d", code)
	}
	for _, name := range []string{"loadlab_backend_up", "loadlab_backend_active_connections", "loadlab_backend_connections_total",
		"loadlab_backend_requests_total", "loadlab_backend_bytes_in_total", "loadlab_backend_bytes_out_total",
		"loadlab_backend_errors_total", "loadlab_backend_latency_seconds_bucket", "loadlab_backend_latency_seconds_count",
		"loadlab_backend_latency_seconds_sum", "loadlab_backend_weight"} {
		if !strings.Contains(body, name+"{") {
			t.Errorf("metrics lack %s", name)
		}
	}
	if code, body = do("GET", "/", ""); code != 200 || !strings.Contains(body, `<table id="backends">`) || !strings.Contains(body, "drain") {
		t.Errorf("stats page: %d", code)
	}
	if code, _ = do("GET", "/healthz", ""); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	// Another origin gets nothing; with a token, nobody without it does.
	req, _ := http.NewRequest("GET", base+"/api/backends", nil)
	req.Header.Set("Origin", "http://evil.example")
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("cross-origin: %d", resp.StatusCode)
	}
	a2, _ := StartAdmin(b, AdminConfig{Listen: "127.0.0.1:0", Token: "s3cret"})
	defer a2.Close()
	if resp, _ := http.Get("http://" + a2.Addr().String() + "/api/backends"); resp.StatusCode != 401 {
		t.Errorf("without the token: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", "http://"+a2.Addr().String()+"/api/backends", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != 200 {
		t.Errorf("with the token: %d", resp.StatusCode)
	}
}

func TestAdminBindsLoopbackByDefault(t *testing.T) {
	_, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs, Check: CheckConfig{Kind: "none"}})
	a, err := StartAdmin(b, AdminConfig{Listen: ":0"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if ip := a.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf("admin bound %s", ip)
	}
}

func TestServeSeesTheRealClientThroughProxyProtocol(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		for _, model := range []string{"async", "thread"} {
			for _, v := range []string{"v1", "v2"} {
				seeRealClient(t, mode, model, v)
			}
		}
	}
	// Without a header the connection is closed unanswered.
	srv := served.Start(t, server.Config{AcceptProxy: true})
	if status, _, _, err := fetch(srv.Addr().String(), "/"); err == nil {
		t.Errorf("a plain request got %d", status)
	}
}

// TestChecksSpeakTheProxyProtocol: with --send-proxy, health checks
// connect as traffic does, PROXY header first, so a serve with
// --accept-proxy (which closes a connection without one) passes them;
// without the header the same checks fail and take it down.
func TestChecksSpeakTheProxyProtocol(t *testing.T) {
	for _, model := range []string{"async", "thread"} {
		srv := served.Start(t, server.Config{Model: model, AcceptProxy: true})
		for _, kind := range []string{"http", "tcp"} {
			for _, v := range []string{"v1", "v2", ""} {
				check := CheckConfig{Kind: kind, Interval: 20 * time.Millisecond, Rise: 1, Fall: 1}
				b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: srv.Addr().String()}}, SendProxy: v, Check: check})
				be := b.Pool().All()[0]
				passed := func() bool { r := be.LastCheck(); return r != nil && r.OK }
				switch {
				case v != "":
					testutil.Eventually(t, 5*time.Second, model+" "+kind+" check with a "+v+" header passing", passed)
					if be.State() != Ready {
						t.Errorf("%s %s check, %s: backend %s", model, kind, v, be.State())
					}
					if status, _, _, err := fetch(b.Addr().String(), "/"); err != nil || status != 200 {
						t.Errorf("%s %s check, %s: traffic got %d %v", model, kind, v, status, err)
					}
				case kind == "http": // no header: the server closes the check's connection unanswered
					testutil.Eventually(t, 5*time.Second, model+" http check without a header failing", func() bool {
						r := be.LastCheck()
						return r != nil && !r.OK && be.State() == Down
					})
				}
				b.Shutdown(context.Background())
			}
		}
	}
}

// seeRealClient sends two clients' requests through a balancer with
// --send-proxy to a serve with --accept-proxy: its access log must name
// each client, so http mode may not hand one client's backend connection
// to another.
func seeRealClient(t *testing.T, mode, model, v string) {
	t.Helper()
	var log testutil.Buffer
	srv := served.Start(t, server.Config{Model: model, AcceptProxy: true, Log: slog.New(slog.NewTextHandler(&log, nil))})
	b := startBalancer(t, Config{Mode: mode, Backends: []BackendConfig{{Addr: srv.Addr().String()}}, SendProxy: v, Check: CheckConfig{Kind: "none"}})
	var clients []string
	for range 2 {
		c, _ := net.Dial("tcp", b.Addr().String())
		clients = append(clients, c.LocalAddr().String())
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /santai HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %s %s: %v %v", mode, model, v, resp, err)
		}
		io.ReadAll(resp.Body)
		// The first client stays open: its backend connection stays idle.
		defer c.Close()
	}
	srv.Shutdown(context.Background())
	for _, client := range clients {
		if !strings.Contains(log.String(), "client="+client) {
			t.Errorf("%s %s %s: the access log does not name the client %s:\n%s", mode, model, v, client, log.String())
		}
	}
}

func TestMaxConnsQueuesThenRefuses(t *testing.T) {
	_, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs, MaxConns: 1, QueueTimeout: 100 * time.Millisecond, Check: CheckConfig{Kind: "none"}})
	held, _ := net.Dial("tcp", b.Addr().String()) // takes the only slot
	defer held.Close()
	fmt.Fprintf(held, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	held.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(held), nil); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, _, _, err := fetch(b.Addr().String(), "/"); err == nil {
		t.Error("a connection over --max-conns was served")
	}
	if waited := time.Since(began); waited < 90*time.Millisecond || waited > 2*time.Second {
		t.Errorf("refused after %s, want after the 100 ms queue wait", waited)
	}
	// A connection queued while the slot frees is served.
	type result struct {
		body string
		err  error
	}
	queued := make(chan result, 1)
	go func() {
		_, _, body, err := fetch(b.Addr().String(), "/santai")
		queued <- result{body, err}
	}()
	testutil.Eventually(t, 5*time.Second, "a connection waiting over --max-conns", func() bool { return b.Queued() == 1 })
	held.Close()
	if r := <-queued; r.err != nil || r.body != "santai saja" {
		t.Errorf("queued connection: %q %v", r.body, r.err)
	}
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	_, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs, ClientIdle: 500 * time.Millisecond, Check: CheckConfig{Kind: "none"}})
	c, _ := net.Dial("tcp", b.Addr().String())
	defer c.Close()
	began := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || time.Since(began) > 3*time.Second {
		t.Errorf("idle connection: %v after %s", err, time.Since(began))
	}
}

// TestTCPModeMovesLargeTransfersBothWays sends 8 MiB through tcp mode to
// an echo backend while reading the echo slowly at first: the balancer
// must hold what a side cannot take yet, stop reading the other side
// meanwhile, and deliver every byte in order, then pass the half-close on.
func TestTCPModeMovesLargeTransfersBothWays(t *testing.T) {
	echo := serveEach(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
	b := startBalancer(t, Config{Backends: []BackendConfig{{Addr: echo}}, Check: CheckConfig{Kind: "none"}})
	c, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	sent := make([]byte, 8<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range sent {
		sent[i] = byte(rng.Uint32())
	}
	go func() {
		c.Write(sent)
		c.(*net.TCPConn).CloseWrite()
	}()
	var got bytes.Buffer
	chunk := make([]byte, 4096)
	for i := 0; ; i++ {
		if i < 200 {
			time.Sleep(time.Millisecond) // a slow reader at first: buffers fill up
		}
		n, err := c.Read(chunk)
		got.Write(chunk[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got.Len(), err)
		}
	}
	if !bytes.Equal(got.Bytes(), sent) {
		t.Fatalf("echo through the balancer: got %d bytes, sent %d, equal %v", got.Len(), len(sent), bytes.Equal(got.Bytes(), sent))
	}
}

// TestTCPModeKeepsOrderAcrossARedispatch: bytes read from a client while
// its first backend's connect hangs wait for the next backend, and must
// reach it before what the client sends after them. The client waits in
// the --max-conns queue first, so its bytes are there when it is taken.
func TestTCPModeKeepsOrderAcrossARedispatch(t *testing.T) {
	silent := silentBackend(t)
	echo := serveEach(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
	b := startBalancer(t, Config{Check: CheckConfig{Kind: "none"}, ConnectTimeout: 200 * time.Millisecond,
		MaxConns: 1, QueueTimeout: 2 * time.Second, Backends: []BackendConfig{{Addr: echo}, {Addr: silent}}})
	held, err := net.Dial("tcp", b.Addr().String()) // round robin: to echo
	if err != nil {
		t.Fatal(err)
	}
	held.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(held, "x")
	if _, err := held.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", b.Addr().String()) // queued; then to the silent one
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "first,")
	testutil.Eventually(t, 5*time.Second, "the connection waiting over --max-conns", func() bool { return b.Queued() == 1 })
	held.Close() // c gets the slot, with "first," waiting to be read
	testutil.Eventually(t, 5*time.Second, "the connection taken from the queue", func() bool { return b.Queued() == 0 })
	io.WriteString(c, "second") // while its connect hangs (or after: the order is the same)
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(c); string(got) != "first,second" {
		t.Errorf("echoed %q, %v; want \"first,second\"", got, err)
	}
}

// silentBackend is a port whose connects hang: a listener with a full
// accept queue that never accepts, so the kernel drops new SYNs.
func silentBackend(t *testing.T) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	unix.Listen(fd, 0)
	sa, _ := unix.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	for range 3 { // fill the queue
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel completes connects past a full accept queue")
	}
	return addr
}

// Backups, seen by clients: none of their traffic while an active
// backend is available; all of it, on the first backup alone (or on
// every backup with all_backups), once none is, whether the actives are
// out by state, by failed checks, or dead unnoticed (a failed connect
// moves the client on, to a backup when no active is left).
func TestBackupsTakeOverWhenNoActiveIs(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) {
			bss, cfgs := fourBackends(t)
			cfgs[2].Backup, cfgs[3].Backup = true, true
			b := startBalancer(t, Config{Mode: mode, Backends: cfgs, Check: CheckConfig{Kind: "none"}})
			allBackups := func(on bool) {
				t.Helper()
				next := *b.Config()
				next.AllBackups = on
				if err := b.Reload(next); err != nil {
					t.Fatal(err)
				}
			}
			servedBy := func(n int) map[string]int {
				t.Helper()
				got := map[string]int{}
				for range n {
					code, by, _, err := fetch(b.Addr().String(), "/")
					if err != nil || code != 200 {
						t.Fatalf("%d %v", code, err)
					}
					got[by]++
				}
				return got
			}
			want := func(what string, got map[string]int, names ...string) {
				t.Helper()
				for _, name := range names {
					if got[name] == 0 {
						t.Errorf("%s: %s served none: %v", what, name, got)
					}
				}
				if len(got) != len(names) {
					t.Errorf("%s: served by %v, want only %v", what, got, names)
				}
			}
			want("all ready", servedBy(20), "b1", "b2")
			active := []*Backend{b.Pool().Find(bss[0].addr), b.Pool().Find(bss[1].addr)}
			active[0].SetState(Maint)
			want("one active in maintenance", servedBy(10), "b2")
			active[1].SetState(Drain)
			want("both actives out", servedBy(10), "b3")
			allBackups(true)
			want("both actives out, all_backups", servedBy(20), "b3", "b4")
			active[0].SetState(Ready)
			want("an active back", servedBy(10), "b1")

			// Dead without a check to notice: the connect fails, and the
			// client goes on to what is left.
			allBackups(false)
			active[1].SetState(Ready)
			bss[0].stop()
			bss[1].stop()
			want("actives dead, unchecked", servedBy(20), "b3")
		})
	}
}

// With health checks, backups stand in while the actives are down and
// stand back once one has risen again.
func TestBackupsFollowHealthChecks(t *testing.T) {
	f := startFlaky(t)
	spare := startServe(t, "spare")
	b := startBalancer(t, Config{
		Backends: []BackendConfig{{Addr: f.addr}, {Addr: spare.addr, Backup: true}},
		Check:    CheckConfig{Kind: "tcp", Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Rise: 2, Fall: 2},
	})
	by := func() string {
		t.Helper()
		code, by, body, err := fetch(b.Addr().String(), "/")
		if err != nil || code != 200 {
			t.Fatalf("%d %v", code, err)
		}
		if by == "" {
			by = body // the flaky backend names nobody; it answers "ok"
		}
		return by
	}
	for range 5 {
		if got := by(); got != "ok" {
			t.Fatalf("while the active is up, served by %s", got)
		}
	}
	f.setUp(t, false)
	waitState(t, b.Pool().Find(f.addr), Down, 5*time.Second)
	for range 5 {
		if got := by(); got != "spare" {
			t.Fatalf("while the active is down, served by %s", got)
		}
	}
	f.setUp(t, true)
	waitState(t, b.Pool().Find(f.addr), Ready, 5*time.Second)
	for range 5 {
		if got := by(); got != "ok" {
			t.Fatalf("once the active is back, served by %s", got)
		}
	}
}
