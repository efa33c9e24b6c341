package balancer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"loadlab/internal/testutil"
)

// Backends, operators and clients that misbehave on purpose: each finding
// of the hostile-client review has its test here.

// A backend whose "status line" never ends costs the check 1 KiB, and
// fails it.
func TestCheckBoundsAnEndlessStatusLine(t *testing.T) {
	endless := serveEach(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		bufio.NewReader(c).ReadString('\n')
		junk := []byte(strings.Repeat("A", 64<<10))
		for range 160 { // 10 MB, if it were all read
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	})
	b := startBalancer(t, Config{Backends: []BackendConfig{{Addr: endless}},
		Check: CheckConfig{Kind: "http", Interval: 30 * time.Millisecond, Timeout: 2 * time.Second, Rise: 1, Fall: 1}})
	be := b.Pool().Find(endless)
	testutil.Eventually(t, 10*time.Second, "the check to fail on the endless line", func() bool {
		r := be.LastCheck()
		return r != nil && !r.OK && strings.Contains(r.Detail, "longer than")
	})
}

// adminDo sends one request to the admin listener.
func adminDo(t *testing.T, a *Admin, method, path, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.Addr().String()+path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func startAdmin(t *testing.T, b *Balancer, token string) *Admin {
	t.Helper()
	a, err := StartAdmin(b, AdminConfig{Listen: "127.0.0.1:0", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// Without a token, a request whose Host is not the admin's own address
// (a DNS-rebinding page's) is refused, even with a matching Origin.
func TestAdminRefusesRebindingHost(t *testing.T) {
	_, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs[:1], Check: CheckConfig{Kind: "none"}})
	a := startAdmin(t, b, "")
	code, _ := adminDo(t, a, "POST", "/api/backends", `{"addr":"`+cfgs[1].Addr+`"}`, "Host", "evil.example", "Origin", "http://evil.example")
	if code != 403 || b.Pool().Len() != 1 {
		t.Errorf("rebinding-shaped POST: %d, pool %d", code, b.Pool().Len())
	}
	port := fmt.Sprint(a.Addr().(*net.TCPAddr).Port)
	for _, host := range []string{a.Addr().String(), "localhost:" + port, "127.0.0.1:" + port} {
		if code, _ := adminDo(t, a, "GET", "/api/backends", "", "Host", host); code != 200 {
			t.Errorf("Host %s: %d, want 200", host, code)
		}
	}
}

// A client with a wrong token is answered and closed without its body
// being waited for; one that never sends a request is closed too.
func TestAdminBoundsItsClients(t *testing.T) {
	_, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs[:1], Check: CheckConfig{Kind: "none"}})
	a := startAdmin(t, b, "s3cret")
	c, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST /api/backends HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 100000\r\n\r\n{")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("wrong token, unfinished body: %v %v", resp, err)
	}
	if n, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("after the 401: %d %v", n, err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the connection stayed open after a wrong token")
	}
	idle, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(30 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Errorf("a client that sent nothing was kept: %d %v", n, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// What the admin API adds and removes survives reloads and DNS refreshes.
func TestAPIChangesSurviveReloadAndResolve(t *testing.T) {
	bss, cfgs := fourBackends(t)
	cfg := Config{Backends: cfgs[:3], Check: CheckConfig{Kind: "none"}, ResolveEvery: 20 * time.Millisecond}
	b := startBalancer(t, cfg)
	cfg.Listen = b.Config().Listen
	a := startAdmin(t, b, "")
	if code, body := adminDo(t, a, "POST", "/api/backends", `{"addr":"`+bss[3].addr+`"}`); code != 201 {
		t.Fatalf("add: %d %s", code, body)
	}
	if code, _ := adminDo(t, a, "DELETE", "/api/backends/"+bss[0].addr, ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	want := []string{bss[1].addr, bss[2].addr, bss[3].addr}
	names := func() []string {
		var out []string
		for _, be := range b.Pool().All() {
			out = append(out, be.Name)
		}
		return out
	}
	same := func(got []string) bool { return strings.Join(got, " ") == strings.Join(want, " ") }
	for range 5 { // several DNS refreshes
		if err := b.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		if !same(names()) {
			t.Fatalf("after a reload the pool is %v, want %v", names(), want)
		}
	}
	testutil.Eventually(t, 5*time.Second, "a refresh of DNS to run", func() bool {
		return b.Pool().Find(bss[1].addr).sockaddr.Load() != nil
	})
	if !same(names()) {
		t.Errorf("after refreshes the pool is %v, want %v", names(), want)
	}
}

// The balancer's own listen or admin address is refused as a backend,
// in a configuration, a reload and the API; and a loop through another
// hop is stopped by the balancer's own Via.
func TestSelfIsNeverABackend(t *testing.T) {
	_, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Mode: "http", Backends: cfgs[:1], Check: CheckConfig{Kind: "none"}})
	a := startAdmin(t, b, "")
	own := b.Addr().String()
	if err := b.Reload(Config{Mode: "http", Listen: b.Config().Listen, Backends: []BackendConfig{{Addr: own}}}); err == nil {
		t.Error("reload with the balancer's own address as a backend was taken")
	}
	for _, addr := range []string{own, a.Addr().String(), "localhost:" + fmt.Sprint(b.Addr().(*net.TCPAddr).Port)} {
		if code, body := adminDo(t, a, "POST", "/api/backends", `{"addr":"`+addr+`"}`); code != 400 || !strings.Contains(body, "own") {
			t.Errorf("API add of %s: %d %s", addr, code, body)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fixed := ln.Addr().String()
	ln.Close()
	if _, err := Start(Config{Listen: fixed, Backends: []BackendConfig{{Addr: fixed}}}); err == nil || !strings.Contains(err.Error(), "own") {
		t.Errorf("start with itself as a backend: %v", err)
	}
	// A relay in front of the balancer, as the only backend: the request
	// comes back round and is stopped.
	relay := serveEach(t, func(c net.Conn) {
		up, err := net.Dial("tcp", own)
		if err != nil {
			return
		}
		defer up.Close()
		go io.Copy(up, c)
		io.Copy(c, up)
	})
	// b's only backend becomes the relay, which leads back to b.
	if code, body := adminDo(t, a, "POST", "/api/backends", `{"addr":"`+relay+`"}`); code != 201 {
		t.Fatalf("add relay: %d %s", code, body)
	}
	adminDo(t, a, "DELETE", "/api/backends/"+cfgs[0].Addr, "")
	resp, err := http.Get("http://" + own + "/")
	if err != nil || resp.StatusCode != 508 {
		t.Fatalf("a request round a loop: %v %v, want 508", resp, err)
	}
	resp.Body.Close()
}

// Each of these is refused with one line: by Validate (configuration and
// reload) or by the API.
func TestValidationRefusesNonsense(t *testing.T) {
	_, cfgs := fourBackends(t)
	ok := cfgs[0].Addr
	port := ok[strings.LastIndexByte(ok, ':'):]
	configs := map[string]Config{
		"port 0":             {Backends: []BackendConfig{{Addr: "127.0.0.1:0"}}},
		"port 99999":         {Backends: []BackendConfig{{Addr: "127.0.0.1:99999"}}},
		"port -1":            {Backends: []BackendConfig{{Addr: "127.0.0.1:-1"}}},
		"60 KiB name":        {Backends: []BackendConfig{{Addr: strings.Repeat("a", 60<<10) + ":80"}}},
		"name with newline":  {Backends: []BackendConfig{{Addr: "a\nb:80"}}},
		"weight -5":          {Backends: []BackendConfig{{Addr: ok, Weight: -5}}},
		"one server twice":   {Backends: []BackendConfig{{Addr: ok}, {Addr: "localhost" + port}}},
		"check every 1ns":    {Backends: []BackendConfig{{Addr: ok}}, Check: CheckConfig{Interval: time.Nanosecond}},
		"negative timeout":   {Backends: []BackendConfig{{Addr: ok}}, ConnectTimeout: -time.Second},
		"negative idle":      {Backends: []BackendConfig{{Addr: ok}}, ClientIdle: -time.Second},
		"too many backends":  {Backends: make([]BackendConfig, MaxBackends+1)},
		"negative check out": {Backends: []BackendConfig{{Addr: ok}}, Check: CheckConfig{Timeout: -1}},
		"hash_by cookie":     {Backends: []BackendConfig{{Addr: ok}}, Algo: "sourcehash", HashBy: "cookie"},
		"hash_by uri, tcp":   {Backends: []BackendConfig{{Addr: ok}}, Algo: "sourcehash", HashBy: "uri"},
		"hash_by header:":    {Backends: []BackendConfig{{Addr: ok}}, Mode: "http", Algo: "sourcehash", HashBy: "header:"},
		"hash_by header:a b": {Backends: []BackendConfig{{Addr: ok}}, Mode: "http", Algo: "sourcehash", HashBy: "header:a b"},
		"hash_by uri, rr":    {Backends: []BackendConfig{{Addr: ok}}, Mode: "http", HashBy: "uri"},
		"options in addr":    {Backends: []BackendConfig{{Addr: ok + ",backup"}}},
		"cookie, tcp":        {Backends: []BackendConfig{{Addr: ok}}, Cookie: "SERVERID"},
		"cookie a;b":         {Backends: []BackendConfig{{Addr: ok}}, Mode: "http", Cookie: "a;b"},
	}
	for name, cfg := range configs {
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s: taken", name)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || len(msg) > 300 {
			t.Errorf("%s: not one short line: %q", name, msg)
		}
	}
	b := startBalancer(t, Config{Backends: cfgs[:1], Check: CheckConfig{Kind: "none"}})
	a := startAdmin(t, b, "")
	for name, body := range map[string]string{
		"port 0":           `{"addr":"127.0.0.1:0"}`,
		"port 99999":       `{"addr":"127.0.0.1:99999"}`,
		"srv://":           `{"addr":"srv://_http._tcp.lab.test"}`,
		"name with space":  `{"addr":"a b:80"}`,
		"long name":        `{"addr":"` + strings.Repeat("a", 60<<10) + `:80"}`,
		"weight -5":        `{"addr":"127.0.0.1:1","weight":-5}`,
		"one server twice": `{"addr":"localhost` + port + `"}`,
		"options in addr":  `{"addr":"127.0.0.1:1,backup"}`,
		"backup not bool":  `{"addr":"127.0.0.1:1","backup":"yes"}`,
	} {
		code, msg := adminDo(t, a, "POST", "/api/backends", body)
		if code < 400 || code > 409 || strings.Count(strings.TrimSpace(msg), "\n") > 0 {
			t.Errorf("API %s: %d %q", name, code, msg)
		}
	}
	if b.Pool().Len() != 1 {
		t.Errorf("the pool grew to %d", b.Pool().Len())
	}
}

// POST answers with the backend it added, not the whole pool: adding
// stays linear however large the pool.
func TestAPIAddReturnsOneBackend(t *testing.T) {
	bss, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Backends: cfgs[:3], Check: CheckConfig{Kind: "none"}})
	a := startAdmin(t, b, "")
	code, body := adminDo(t, a, "POST", "/api/backends", `{"addr":"`+bss[3].addr+`","weight":2}`)
	var one BackendStatus
	if code != 201 || json.Unmarshal([]byte(body), &one) != nil || one.Name != bss[3].addr || one.Weight != 2 {
		t.Errorf("add: %d %s", code, body)
	}
}

// Connections kept idle to a backend that leaves the pool are closed at
// once, by the API or a reload.
func TestRemovedBackendsIdleConnectionsClosed(t *testing.T) {
	var open atomic.Int64
	backend := serveEach(t, func(c net.Conn) {
		open.Add(1)
		defer open.Add(-1)
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	_, cfgs := fourBackends(t)
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: backend}, cfgs[0]}, Check: CheckConfig{Kind: "none"}})
	for range 8 {
		fetch(b.Addr().String(), "/")
	}
	testutil.Eventually(t, 5*time.Second, "a pooled connection to the backend", func() bool { return open.Load() > 0 })
	if !b.RemoveBackend(backend) {
		t.Fatal("remove failed")
	}
	testutil.Eventually(t, 10*time.Second, "idle connections to the removed backend closed", func() bool { return open.Load() == 0 })
}

// Responses that a client could read two ways are 502, as HAProxy answers.
func TestAmbiguousResponsesAre502(t *testing.T) {
	for name, answer := range map[string]string{
		"two Content-Lengths": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\nok",
		"bare CR in a value":  "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nok",
		"NUL in a value":      "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
		"space before colon":  "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
		"folded line":         "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
	} {
		backend := serveEach(t, func(c net.Conn) {
			http.ReadRequest(bufio.NewReader(c))
			io.WriteString(c, answer)
		})
		b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: backend}}, Check: CheckConfig{Kind: "none"}, Retries: -1})
		if status, _, _, err := fetch(b.Addr().String(), "/"); err != nil || status != 502 {
			t.Errorf("%s: %d %v, want 502", name, status, err)
		}
	}
}

// http mode leaves room for the headers it adds: a request the front
// takes is one the backend (with the same default limits) takes too, and
// one more header is refused at the front.
func TestHeaderCountHeadroom(t *testing.T) {
	bs := startServe(t, "b1")
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: bs.addr}}, Check: CheckConfig{Kind: "none"}})
	send := func(n int) (int, string) {
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var req strings.Builder
		req.WriteString("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
		for i := range n - 2 {
			fmt.Fprintf(&req, "X-H%d: v\r\n", i)
		}
		req.WriteString("\r\n")
		io.WriteString(c, req.String())
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("X-Served-By")
	}
	max := frontLimits().MaxHeaders
	if status, by := send(max); status != 200 || by != "b1" {
		t.Errorf("%d headers: %d from %q, want 200 from the backend", max, status, by)
	}
	if status, by := send(max + 1); status != 431 || by != "" {
		t.Errorf("%d headers: %d from %q, want 431 from the balancer", max+1, status, by)
	}
}
