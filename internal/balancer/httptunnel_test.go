package balancer

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"loadlab/internal/testutil"
	"loadlab/internal/tlsx"
)

// startUpgrader is a backend that answers a request asking to upgrade to
// "echo" with 101 and then echoes every byte until the client closes;
// any other request gets 426 (Upgrade Required). It records each request
// head it got.
func startUpgrader(t *testing.T) (addr string, heads func() []string) {
	var mu sync.Mutex
	var got []string
	addr = serveEach(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			var h strings.Builder
			req.Header.Write(&h)
			mu.Lock()
			got = append(got, h.String())
			mu.Unlock()
			if req.Header.Get("Upgrade") != "echo" {
				io.WriteString(c, "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello from the backend\n")
			io.Copy(c, r) // what the reader holds, then the rest
			return
		}
	})
	return addr, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
}

// A request asking to upgrade (a WebSocket handshake) goes to the backend
// with its Upgrade, and its 101 makes a tunnel: bytes go both ways as
// they are, a megabyte each way, read slowly on one side, until the
// client closes; then the backend's request is no longer active and its
// answers count one 101. HAProxy tunnels WebSockets the same way. Over
// plain TCP, and over TLS 1.3 (the loops' own record layer) and 1.2
// (bridged) from the client.
func TestHTTPUpgradeMakesATunnel(t *testing.T) {
	pair, _ := certFiles(t, "ws.test")
	for _, tc := range []struct {
		name    string
		version uint16 // 0: no TLS
	}{{"plain", 0}, {"TLS 1.3", tls.VersionTLS13}, {"TLS 1.2", tls.VersionTLS12}} {
		t.Run(tc.name, func(t *testing.T) {
			addr, heads := startUpgrader(t)
			cfg := Config{Mode: "http", Backends: []BackendConfig{{Addr: addr}}, Check: CheckConfig{Kind: "none"}, ServerIdle: 300 * time.Millisecond}
			var c net.Conn
			if tc.version == 0 {
				b := startBalancer(t, cfg)
				c = dialBalancer(t, b)
				tunnelThrough(t, b, c, heads)
				return
			}
			cfg.TLS = []tlsx.Pair{pair}
			b := startBalancer(t, cfg)
			c, _ = tlsDial(t, b.Addr().String(), "ws.test", &tls.Config{MaxVersion: tc.version})
			tunnelThrough(t, b, c, heads)
		})
	}
}

// tunnelThrough upgrades c, a connection to b, and checks the tunnel.
func tunnelThrough(t *testing.T, b *Balancer, c net.Conn, heads func() []string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// The first bytes of the new protocol come right behind the request,
	// as a client that does not wait for the 101 sends them.
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: keep-alive, Upgrade\r\n\r\nearly ")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" || resp.Header.Get("Via") != "1.1 loadlab" {
		t.Fatalf("the answer to the upgrade: %v %v", resp, err)
	}
	if !strings.Contains(heads()[0], "Upgrade: echo") || !strings.Contains(heads()[0], "Connection: upgrade") {
		t.Errorf("the backend got %q, want the Upgrade passed on", heads()[0])
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "hello from the backend\n" {
		t.Fatalf("what came with the 101: %q %v", line, err)
	}
	early := make([]byte, len("early "))
	if _, err := io.ReadFull(r, early); err != nil || string(early) != "early " {
		t.Fatalf("the bytes sent behind the request: %q %v", early, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go c.Write(big)
	// Nothing is read until the client's socket holds a good part of the
	// echo, so that the buffers on the way fill: the tunnel must hold
	// back, and lose nothing.
	sock := c
	if tc, ok := c.(*tls.Conn); ok {
		sock = tc.NetConn()
	}
	testutil.Eventually(t, 10*time.Second, "the client's receive buffer filling up", func() bool { return unread(sock) >= 32<<10 })
	echoed := make([]byte, len(big))
	if _, err := io.ReadFull(r, echoed); err != nil || !bytes.Equal(echoed, big) {
		t.Fatalf("a megabyte through the tunnel and back: equal %v, %v", bytes.Equal(echoed, big), err)
	}
	be := b.Pool().All()[0]
	if active := be.Active.Load(); active != 1 {
		t.Errorf("while the tunnel is open, the backend has %d active requests, want 1", active)
	}
	c.Close()
	testutil.Eventually(t, 5*time.Second, "the tunnel's request no longer active", func() bool { return be.Active.Load() == 0 })
	if n := be.codes.Classes()[0]; n != 1 {
		t.Errorf("the backend's 1xx answers: %d, want the one 101", n)
	}
}

// What is not an upgrade the balancer may tunnel stays HTTP: a 101 to a
// request that did not ask for one is a 502, an HTTP/1.0 or h2c Upgrade
// is not passed on (the backend answers 426), and a tunnel whose backend
// closes ends its client's connection after what it was owed.
func TestHTTPUpgradeOnlyWhenAsked(t *testing.T) {
	addr, heads := startUpgrader(t)
	b := httpBalancer(t, addr)
	for _, tc := range []struct{ request, want string }{
		{"GET /ws HTTP/1.0\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n", "HTTP/1.1 426 "},
		{"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", "HTTP/1.1 426 "},
		{"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n\r\n", "HTTP/1.1 426 "}, // Upgrade, but not in Connection
	} {
		c := dialBalancer(t, b)
		io.WriteString(c, tc.request)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, tc.want) {
			t.Errorf("%q: %q %v, want %q", tc.request, line, err, tc.want)
		}
	}
	for _, h := range heads() {
		if strings.Contains(strings.ToLower(h), "upgrade") {
			t.Errorf("an upgrade the balancer must not ask for reached the backend: %q", h)
		}
	}

	sneaky := serveEach(t, func(c net.Conn) {
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	})
	got := exchangeRaw(t, httpBalancer(t, sneaky), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 502 ") {
		t.Errorf("a 101 nobody asked for: %q, want 502", got)
	}

	closer := serveEach(t, func(c net.Conn) {
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nbye")
	})
	got = exchangeRaw(t, httpBalancer(t, closer), "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 101 ") || !strings.HasSuffix(got, "\r\n\r\nbye") {
		t.Errorf("a tunnel whose backend closes: %q, want the 101, its bytes, then the close", got)
	}
}

// A tunnel in which neither side sends anything for --client-idle is
// closed, and its request counted done.
func TestHTTPTunnelIdleIsClosed(t *testing.T) {
	addr, _ := startUpgrader(t)
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: addr}}, Check: CheckConfig{Kind: "none"},
		ClientIdle: 200 * time.Millisecond})
	c := dialBalancer(t, b)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n")
	got, err := io.ReadAll(c) // to the close
	if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 101 ") || !strings.HasSuffix(string(got), "hello from the backend\n") {
		t.Fatalf("an idle tunnel: %q %v, want the 101, its bytes, then the close", got, err)
	}
	testutil.Eventually(t, 5*time.Second, "the tunnel's request no longer active", func() bool { return b.Pool().All()[0].Active.Load() == 0 })
}

// A client that half-closes its tunnel still gets every byte the backend
// sends after it: the FIN goes on to the backend, which ends the tunnel
// by closing, as HAProxy passes a half-close on.
func TestHTTPTunnelPassesHalfClose(t *testing.T) {
	addr, _ := startUpgrader(t)
	b := httpBalancer(t, addr)
	c := dialBalancer(t, b)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n")
	r := bufio.NewReader(c)
	if resp, err := http.ReadResponse(r, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("the answer to the upgrade: %v %v", resp, err)
	}
	// 300 KB, written while the echo is read: the buffers on the way need
	// not hold it all.
	last := bytes.Repeat([]byte("the last words "), 20000)
	go func() {
		c.Write(last)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "hello from the backend\n"+string(last) {
		t.Fatalf("after the client's FIN: %d bytes, %v; want the backend's greeting and the %d bytes echoed", len(got), err, len(last))
	}
	testutil.Eventually(t, 5*time.Second, "the tunnel's request no longer active", func() bool { return b.Pool().All()[0].Active.Load() == 0 })
}
