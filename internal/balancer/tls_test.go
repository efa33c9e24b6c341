package balancer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"loadlab/internal/server"
	"loadlab/internal/testutil"
	"loadlab/internal/testutil/served"
	"loadlab/internal/tlsx"
)

// certFiles makes a self-signed certificate for hosts and returns its
// files and the certificate as a client is shown it.
func certFiles(t *testing.T, hosts ...string) (tlsx.Pair, *x509.Certificate) {
	t.Helper()
	c := testutil.SelfSigned(t, hosts...)
	return c.Pair, c.Leaf
}

// tlsDial makes a TLS connection to addr naming serverName, trusting
// anything, and returns the certificate it was shown.
func tlsDial(t *testing.T, addr, serverName string, conf *tls.Config) (*tls.Conn, *x509.Certificate) {
	t.Helper()
	if conf == nil {
		conf = &tls.Config{}
	}
	conf.InsecureSkipVerify, conf.ServerName = true, serverName
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("TLS to %s (SNI %q): %v", addr, serverName, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, c.ConnectionState().PeerCertificates[0]
}

// The balancer ends TLS in http mode: the certificate by SNI, wildcards
// included, the first for unknown names and for none; ALPN http/1.1;
// forwarding headers that say https; keep-alive over TLS 1.3, whose
// records the loop reads itself, and TLS 1.2, bridged; TLS 1.0 and 1.1
// refused; and the handshakes counted.
func TestBalanceEndsTLSInHTTPMode(t *testing.T) {
	def, defCert := certFiles(t, "default.test")
	wild, wildCert := certFiles(t, "*.shop.test")
	e := startEcho(t)
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: e.addr}}, Check: CheckConfig{Kind: "none"},
		TLS: []tlsx.Pair{def, wild}})
	addr := b.Addr().String()
	for _, tc := range []struct {
		sni  string
		want *x509.Certificate
	}{{"www.shop.test", wildCert}, {"default.test", defCert}, {"elsewhere.test", defCert}, {"", defCert}, {"a.b.shop.test", defCert}} {
		c, got := tlsDial(t, addr, tc.sni, &tls.Config{NextProtos: []string{"http/1.1"}})
		if !got.Equal(tc.want) {
			t.Errorf("SNI %q: shown %v, want %v", tc.sni, got.DNSNames, tc.want.DNSNames)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("SNI %q: ALPN %q, want http/1.1", tc.sni, p)
		}
		c.Close()
	}

	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		c, _ := tlsDial(t, addr, "www.shop.test", &tls.Config{MaxVersion: version})
		r := bufio.NewReader(c)
		for i := range 3 { // one connection, three exchanges
			io.WriteString(c, "GET /x HTTP/1.1\r\nHost: www.shop.test\r\nX-Forwarded-Proto: http\r\n\r\n")
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("TLS %x, request %d on a kept connection: %v", version, i+1, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("TLS %x, request %d: %s", version, i+1, resp.Status)
			}
		}
		// Our close_notify, then the end: the client reads a clean EOF.
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: www.shop.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("TLS %x, the last request: %v", version, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatalf("TLS %x, the last body: %v", version, err)
		}
		if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("TLS %x, after Connection: close: %d bytes, %v; want the end", version, n, err)
		}
	}
	head := e.lastHead()
	for _, want := range []string{"X-Forwarded-For: 127.0.0.1\r\n", "X-Forwarded-Proto: https\r\n", "Forwarded: for=127.0.0.1;proto=https\r\n"} {
		if !strings.Contains(head, want) {
			t.Errorf("backend did not get %q in:\n%s", want, head)
		}
	}
	if strings.Count(head, "X-Forwarded-Proto") != 1 {
		t.Errorf("the client's own X-Forwarded-Proto went through:\n%s", head)
	}

	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		old, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err == nil {
			old.Close()
			t.Errorf("TLS version %x was accepted", v)
		}
	}
	// A client's handshake ends before the server has read its Finished,
	// and a refused one at the server's alert: the server's side may not
	// have counted either yet.
	testutil.Eventually(t, 5*time.Second, "seven handshakes made and two failed counted", func() bool {
		made, failed := b.Handshakes()
		return made >= 7 && failed >= 2
	})
	if made, failed := b.Handshakes(); made != 7 || failed != 2 {
		t.Errorf("handshakes: %d made, %d failed; want 7 and 2", made, failed)
	}
	if n := b.front.bridged.Load(); n != 1 {
		t.Errorf("%d connections bridged; want 1, the TLS 1.2 one: TLS 1.3 goes to the loops", n)
	}
}

// In tcp mode the balancer offloads TLS: the backend gets plaintext, the
// bytes both ways whole, the ends of sending passed on; over TLS 1.3,
// whose records the loop reads itself, and TLS 1.2, bridged.
func TestBalanceOffloadsTLSInTCPMode(t *testing.T) {
	var mu sync.Mutex
	var firstBytes []byte
	echo := serveEach(t, func(c net.Conn) {
		var head [4]byte
		io.ReadFull(c, head[:])
		mu.Lock()
		firstBytes = append([]byte(nil), head[:]...)
		mu.Unlock()
		c.Write(head[:])
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
	p, _ := certFiles(t, "localhost")
	b := startBalancer(t, Config{Backends: []BackendConfig{{Addr: echo}}, Check: CheckConfig{Kind: "none"}, TLS: []tlsx.Pair{p}})
	sent := make([]byte, 2<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range sent {
		sent[i] = byte(rng.Uint32())
	}
	copy(sent, "PING")
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		c, _ := tlsDial(t, b.Addr().String(), "localhost", &tls.Config{MaxVersion: version})
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			c.Write(sent)
			c.CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("TLS %x, after %d bytes: %v", version, len(got), err)
		}
		if !bytes.Equal(got, sent) {
			t.Fatalf("TLS %x, echo through the balancer: got %d bytes, sent %d", version, len(got), len(sent))
		}
		mu.Lock()
		if string(firstBytes) != "PING" {
			t.Errorf("TLS %x: the backend's first bytes were %q, not the client's plaintext", version, firstBytes)
		}
		firstBytes = nil
		mu.Unlock()
	}
}

// Clients that connect and never finish a handshake, or send garbage,
// hold nothing: a real client is served meanwhile, and the stalled ones
// are closed at the head timeout.
func TestBalanceTLSStalledHandshakesHarmNothing(t *testing.T) {
	p, _ := certFiles(t, "localhost")
	e := startEcho(t)
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: e.addr}}, Check: CheckConfig{Kind: "none"},
		TLS: []tlsx.Pair{p}, HeadTimeout: 500 * time.Millisecond})
	before := runtime.NumGoroutine()
	var stalled []net.Conn
	for i := range 200 {
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a ClientHello's first bytes, then nothing
		} else {
			c.Write([]byte("GET / HTTP/1.1\r\n\r\n")) // plaintext to a TLS port
		}
		stalled = append(stalled, c)
	}
	c, _ := tlsDial(t, b.Addr().String(), "localhost", nil)
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a real client beside 200 stalled ones: %v %v", resp, err)
	}
	for _, s := range stalled {
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, s); os.IsTimeout(err) {
			t.Fatal("a stalled handshake was kept past the head timeout")
		}
	}
	if _, failed := b.Handshakes(); failed != 200 {
		t.Errorf("%d failed handshakes counted, want 200", failed)
	}
	c.Close()
	testutil.Eventually(t, 5*time.Second, "the stalled clients' goroutines gone", func() bool {
		return runtime.NumGoroutine() <= before+2
	})
}

// A client whose records after the handshake do not open (forged, or
// not TLS at all) is closed by the loop that holds it, which goes on
// serving the others, in both modes.
func TestBalanceTLSForgedRecordsCloseTheirConnection(t *testing.T) {
	p, _ := certFiles(t, "localhost")
	for _, mode := range []string{"http", "tcp"} {
		t.Run(mode, func(t *testing.T) {
			e := startEcho(t)
			b := startBalancer(t, Config{Mode: mode, Backends: []BackendConfig{{Addr: e.addr}}, Check: CheckConfig{Kind: "none"},
				TLS: []tlsx.Pair{p}})
			for _, junk := range [][]byte{
				append([]byte{23, 3, 3, 0, 40}, bytes.Repeat([]byte{9}, 40)...), // the right shape, a tag that fails
				{23, 3, 3, 0xff, 0xff},           // longer than a record may be
				[]byte("GET / HTTP/1.1\r\n\r\n"), // plaintext after the handshake
			} {
				raw, err := net.Dial("tcp", b.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
				if err := c.Handshake(); err != nil {
					t.Fatal(err)
				}
				raw.Write(junk)
				raw.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.Copy(io.Discard, raw); os.IsTimeout(err) {
					t.Fatalf("%q: the connection stayed open", junk)
				}
				raw.Close()
			}
			good, _ := tlsDial(t, b.Addr().String(), "localhost", nil)
			io.WriteString(good, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(good), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("a good client after the forged ones: %v %v", resp, err)
			}
		})
	}
}

// SIGHUP's reload re-reads the certificate files: a new certificate is
// shown to new connections, a bad file is refused and the old one stays.
func TestBalanceReloadsCertificates(t *testing.T) {
	p, first := certFiles(t, "localhost")
	e := startEcho(t)
	cfg := Config{Listen: "127.0.0.1:0", Mode: "http", Backends: []BackendConfig{{Addr: e.addr}}, Check: CheckConfig{Kind: "none"}, TLS: []tlsx.Pair{p}}
	b := startBalancer(t, cfg)
	if _, got := tlsDial(t, b.Addr().String(), "localhost", nil); !got.Equal(first) {
		t.Fatal("not the first certificate")
	}
	next, second := certFiles(t, "localhost")
	os.WriteFile(p.CertFile, testutil.ReadFile(t, next.CertFile), 0o600)
	os.WriteFile(p.KeyFile, testutil.ReadFile(t, next.KeyFile), 0o600)
	if err := b.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, got := tlsDial(t, b.Addr().String(), "localhost", nil); !got.Equal(second) {
		t.Error("after a reload, not the new certificate")
	}
	os.WriteFile(p.CertFile, []byte("not a certificate"), 0o600)
	err := b.Reload(cfg)
	if err == nil || !strings.Contains(err.Error(), p.CertFile) {
		t.Errorf("a bad certificate file: %v, want an error naming it", err)
	}
	if _, got := tlsDial(t, b.Addr().String(), "localhost", nil); !got.Equal(second) {
		t.Error("a refused reload changed the certificate")
	}
	if info := b.Certificates(); len(info) != 1 || info[0].Names[0] != "localhost" || info[0].NotAfter.Before(time.Now()) {
		t.Errorf("certificates listed: %+v", info)
	}
	plain := cfg
	plain.TLS = nil
	if err := b.Reload(plain); err == nil {
		t.Error("a reload turned TLS off")
	}
}

// A stop with TLS clients open ends them and leaves nothing running.
func TestBalanceTLSShutdown(t *testing.T) {
	p, _ := certFiles(t, "localhost")
	e := startEcho(t)
	b, err := Start(Config{Listen: "127.0.0.1:0", Mode: "http", Backends: []BackendConfig{{Addr: e.addr}},
		Check: CheckConfig{Kind: "none"}, TLS: []tlsx.Pair{p}})
	if err != nil {
		t.Fatal(err)
	}
	idle, _ := tlsDial(t, b.Addr().String(), "localhost", nil)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(r, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	stalled, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("the idle keep-alive client read %v, want a clean end (close_notify)", err)
	}
	stalled.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := stalled.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Errorf("a client mid-handshake was left open: %v", err)
	}
}

// The admin shows what TLS is ended with: the certificates on the page
// and at /api/certificates, the handshakes in the metrics.
func TestBalanceAdminShowsCertificates(t *testing.T) {
	p, _ := certFiles(t, "shop.test")
	e := startEcho(t)
	b := startBalancer(t, Config{Mode: "http", Backends: []BackendConfig{{Addr: e.addr}}, Check: CheckConfig{Kind: "none"}, TLS: []tlsx.Pair{p}})
	a, err := StartAdmin(b, AdminConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// An answer over the connection: the client's handshake can end before
	// the balancer has read its Finished and counted it; a request cannot
	// be answered before.
	tc, _ := tlsDial(t, b.Addr().String(), "shop.test", nil)
	io.WriteString(tc, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a request over TLS: %v %v", resp, err)
	}
	if c, err := net.Dial("tcp", b.Addr().String()); err == nil {
		io.WriteString(c, "not TLS\r\n\r\n")
		io.Copy(io.Discard, c) // until the balancer gives up on it
		c.Close()
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + a.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	var certs []tlsx.CertInfo
	if body := get("/api/certificates"); json.Unmarshal([]byte(body), &certs) != nil || len(certs) != 1 ||
		certs[0].File != p.CertFile || !slices.Contains(certs[0].Names, "shop.test") || certs[0].NotAfter.Before(time.Now()) {
		t.Errorf("/api/certificates: %s", body)
	}
	if page := get("/"); !strings.Contains(page, "shop.test") || !strings.Contains(page, certs[0].Fingerprint) {
		t.Errorf("the stats page does not show the certificate:\n%s", page)
	}
	metrics := get("/metrics")
	for _, want := range []string{"loadlab_tls_handshakes_total 1\n", "loadlab_tls_handshake_errors_total 1\n", "loadlab_tls_certificate_expiry_seconds{file="} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// tlsServe starts a serve backend named name speaking TLS with the pair's
// certificate.
func tlsServe(t *testing.T, name string, p tlsx.Pair) string {
	t.Helper()
	store, _, err := tlsx.Load([]tlsx.Pair{p})
	if err != nil {
		t.Fatal(err)
	}
	return served.Start(t, server.Config{Name: name, Model: "async", TLS: store.ServerConfig()}).Addr().String()
}

// TLS to the backends, in both modes: verified against the CA given,
// the backend's certificate shown by the API, health checks over TLS
// keeping the backends up; with the wrong CA every connect fails as a
// connect does, the checks take the backends down, and the client gets
// 503, not a hang.
func TestBalanceBackendTLS(t *testing.T) {
	p, leaf := certFiles(t, "localhost")
	other, _ := certFiles(t, "localhost")
	b1, b2 := tlsServe(t, "one", p), tlsServe(t, "two", p)
	for _, mode := range []string{"http", "tcp"} {
		t.Run(mode, func(t *testing.T) {
			b := startBalancer(t, Config{Mode: mode, Backends: []BackendConfig{{Addr: b1}, {Addr: b2}},
				Check:      CheckConfig{Kind: "http", Interval: time.Second, Rise: 1, Fall: 3},
				BackendTLS: BackendTLSConfig{Enabled: true, CA: p.CertFile}})
			seen := map[string]int{}
			for range 10 {
				status, by, body, err := fetch(b.Addr().String(), "/")
				if err != nil || status != 200 || body != "Ini Adalah web Server percobaan" {
					t.Fatalf("through TLS backends: %d %q %v", status, body, err)
				}
				seen[by]++
			}
			if seen["one"] != 5 || seen["two"] != 5 {
				t.Errorf("served by %v, want five each", seen)
			}
			for _, be := range b.Pool().All() {
				var lc *CheckResult
				testutil.Eventually(t, 5*time.Second, be.Name+"'s check over TLS", func() bool {
					lc = be.LastCheck()
					return lc != nil && lc.OK
				})
				if lc.Status != "L7OK" || lc.Code != 200 {
					t.Errorf("%s: last check %+v, want L7OK 200 as HAProxy names an http check passed over TLS", be.Name, lc)
				}
			}
			for _, s := range b.Status() {
				if s.Certificate == nil || s.Certificate.Fingerprint != tlsx.Describe(leaf).Fingerprint {
					t.Errorf("%s: certificate %+v, want the backend's", s.Name, s.Certificate)
				}
			}

			wrong := startBalancer(t, Config{Mode: mode, Backends: []BackendConfig{{Addr: b1}, {Addr: b2}},
				Check:      CheckConfig{Kind: "tcp", Interval: 50 * time.Millisecond, Rise: 1, Fall: 1},
				BackendTLS: BackendTLSConfig{Enabled: true, CA: other.CertFile}})
			// Both backends fail their handshakes: a failed connect each,
			// counted against it (unless the checks took it down first).
			status, _, body, err := fetch(wrong.Addr().String(), "/")
			if mode == "http" && (status != 502 || !strings.Contains(body, "certificate")) && status != 503 || mode == "tcp" && err == nil {
				t.Errorf("with the wrong CA: %d %q %v, want a refusal", status, body, err)
			}
			var errs int64
			for _, be := range wrong.Pool().All() {
				waitState(t, be, Down, 5*time.Second)
				if lc := be.LastCheck(); lc == nil || !strings.Contains(lc.Detail, "certificate") || lc.Status != "L6RSP" {
					t.Errorf("%s: last check %+v, want a certificate failure", be.Name, lc)
				}
				errs += be.Errors.Load()
			}
			if status == 502 && errs == 0 {
				t.Error("the failed handshakes were not counted as errors")
			}
		})
	}
}

// Backend TLS sessions are resumed: after the first connection to a
// backend, the next ones (a new one per client in tcp mode) resume, and
// --backend-tls-insecure takes a certificate no CA vouches for.
func TestBalanceBackendTLSResumesSessions(t *testing.T) {
	p, _ := certFiles(t, "localhost")
	cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}}
	var mu sync.Mutex
	var resumed []bool
	addr := serveEach(t, func(c net.Conn) {
		tc := tls.Server(c, conf)
		if tc.Handshake() != nil {
			return
		}
		mu.Lock()
		resumed = append(resumed, tc.ConnectionState().DidResume)
		mu.Unlock()
		http.ReadRequest(bufio.NewReader(tc))
		io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		tc.Close()
	})
	b := startBalancer(t, Config{Backends: []BackendConfig{{Addr: addr}}, Check: CheckConfig{Kind: "none"},
		BackendTLS: BackendTLSConfig{Enabled: true, Insecure: true}})
	for i := range 5 {
		if status, _, body, err := fetch(b.Addr().String(), "/"); err != nil || status != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q %v", i+1, status, body, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(resumed) != 5 || resumed[0] || slices.Contains(resumed[1:], false) {
		t.Errorf("backend handshakes resumed: %v, want a full one, then four resumed", resumed)
	}
}

// hash_by sni in tcp mode with TLS passed through: the balancer reads the
// hello's server name, untouched, and every connection asking for one
// name lands on the backend the rendezvous hash gives it; a hello sent in
// pieces is waited for, a client without SNI or without TLS is placed by
// its address, and one that sends nothing first is placed at the head
// timeout (a server that speaks first still gets it).
func TestBalanceSourceHashBySNI(t *testing.T) {
	p, _ := certFiles(t, "localhost")
	names := map[string]string{} // backend address → its X-Served-By
	var cfgs []BackendConfig
	for _, n := range []string{"one", "two", "three"} {
		addr := tlsServe(t, n, p)
		names[addr] = n
		cfgs = append(cfgs, BackendConfig{Addr: addr})
	}
	// A head timeout far past the pause of a hello sent in pieces, however
	// slow the machine.
	b := startBalancer(t, Config{Algo: "sourcehash", HashBy: "sni", Backends: cfgs, Check: CheckConfig{Kind: "none"}, HeadTimeout: 10 * time.Second})
	servedOver := func(conn net.Conn, sni string) string {
		t.Helper()
		c := tls.Client(conn, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		resp.Body.Close()
		return resp.Header.Get("X-Served-By")
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, sni := range []string{"a.test", "b.test", "shop.test", "www.shop.test", "api.test"} {
		want := names[SourceHash{}.pickKey(b.pool.candidates(nil, false), []byte(sni)).Name]
		for range 4 {
			if got := servedOver(dial(), sni); got != want {
				t.Errorf("SNI %q: served by %s, want %s", sni, got, want)
			}
		}
		// The same hello in two pieces, the second after a pause.
		if got := servedOver(&slowStart{Conn: dial()}, sni); got != want {
			t.Errorf("SNI %q sent in pieces: served by %s, want %s", sni, got, want)
		}
	}
	if got := servedOver(dial(), "127.0.0.1"); got == "" { // an address: no SNI
		t.Error("a hello without SNI was not served")
	}

	banner := serveEach(t, func(c net.Conn) { io.WriteString(c, "220 ready\r\n") })
	speaks := startBalancer(t, Config{Algo: "sourcehash", HashBy: "sni", Backends: []BackendConfig{{Addr: banner}},
		Check: CheckConfig{Kind: "none"}, HeadTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", speaks.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); line != "220 ready\r\n" {
		t.Errorf("a client that waits for the server: %q %v", line, err)
	}
}

// slowStart writes its first write in two parts with a pause between:
// a TLS hello that arrives in pieces.
type slowStart struct {
	net.Conn
	done bool
}

func (s *slowStart) Write(p []byte) (int, error) {
	if s.done || len(p) < 20 {
		return s.Conn.Write(p)
	}
	s.done = true
	n, err := s.Conn.Write(p[:10])
	if err != nil {
		return n, err
	}
	time.Sleep(50 * time.Millisecond)
	m, err := s.Conn.Write(p[10:])
	return n + m, err
}
