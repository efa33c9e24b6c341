package server

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"loadlab/internal/testutil"
)

// tlsFiles maps a test server's TLS configuration to its certificate
// files, for prefork's children to load.
var tlsFiles sync.Map

// testTLS makes a self-signed certificate in the test's directory and
// returns the server configuration and a client one that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	cert := testutil.SelfSigned(t)
	server = cert.Store.ServerConfig()
	tlsFiles.Store(server, cert.Pair)
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	return server, &tls.Config{RootCAs: roots, ServerName: "localhost"}
}

// tlsGet makes GET path requests on one TLS connection and checks each
// answer; it returns the connection's state.
func tlsGet(addr string, cfg *tls.Config, path, want string, times int) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	for i := range times {
		if _, err := io.WriteString(c, get(path)); err != nil {
			return tls.ConnectionState{}, err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return tls.ConnectionState{}, fmt.Errorf("request %d: %w", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != want {
			return tls.ConnectionState{}, fmt.Errorf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	return c.ConnectionState(), nil
}

// TestTLSEveryModel: each model speaks TLS 1.3 and 1.2 with ALPN
// http/1.1, keeps the connection alive, and refuses TLS 1.1 and 1.0.
func TestTLSEveryModel(t *testing.T) {
	eachModel(t, func(t *testing.T, model string) {
		serverTLS, clientTLS := testTLS(t)
		srv := start(t, model, "", func(c *Config) { c.TLS = serverTLS })
		addr := srv.Addr().String()
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			cfg := clientTLS.Clone()
			cfg.MaxVersion, cfg.NextProtos = v, []string{"http/1.1"}
			st, err := tlsGet(addr, cfg, "/santai", "santai saja", 3)
			if err != nil {
				t.Fatalf("%s: %v", tls.VersionName(v), err)
			}
			if st.Version != v || st.NegotiatedProtocol != "http/1.1" {
				t.Errorf("%s: version %s, ALPN %q", tls.VersionName(v), tls.VersionName(st.Version), st.NegotiatedProtocol)
			}
		}
		for _, v := range []uint16{tls.VersionTLS11, tls.VersionTLS10} {
			cfg := clientTLS.Clone()
			cfg.MinVersion, cfg.MaxVersion = v, v
			if _, err := tlsGet(addr, cfg, "/", "", 1); err == nil {
				t.Errorf("%s was accepted", tls.VersionName(v))
			}
		}
		cfg := clientTLS.Clone()
		cfg.NextProtos = []string{"h2"}
		if _, err := tlsGet(addr, cfg, "/", "", 1); err == nil {
			t.Error("a client offering only h2 was accepted")
		}
	})
}

// TestTLSStalledHandshakesHarmNothing: clients that connect and send
// nothing, half a ClientHello, or garbage take nothing with them: real
// clients are served meanwhile, and once the header timeout has passed
// the stalled ones are closed and their goroutines gone.
func TestTLSStalledHandshakesHarmNothing(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	for _, model := range []string{"async", "pool"} {
		t.Run(model, func(t *testing.T) {
			srv := start(t, model, "", func(c *Config) {
				c.TLS, c.HeaderTimeout, c.Workers = serverTLS, time.Second, 16
			})
			addr := srv.Addr().String()
			base := runtime.NumGoroutine()
			var stalled []net.Conn
			for i := range 150 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				switch i % 3 {
				case 1: // a TLS record header promising 512 bytes, and 5 of them
					c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03})
				case 2:
					c.Write([]byte("GET / HTTP/1.1\r\nHost: plain\r\n\r\n"))
				}
				stalled = append(stalled, c)
			}
			// The pool's workers are all held by stalled handshakes now,
			// and its queue has the rest: real clients wait for the
			// timeout there, as they would behind slow plaintext clients.
			for i := range 5 {
				if _, err := tlsGet(addr, clientTLS, "/", "Ini Adalah web Server percobaan", 5); err != nil {
					t.Fatalf("real client %d: %v", i, err)
				}
			}
			for i, c := range stalled {
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				if _, err := io.Copy(io.Discard, c); err != nil {
					t.Fatalf("stalled client %d was not closed: %v", i, err)
				}
			}
			testutil.Eventually(t, 10*time.Second, "the stalled handshakes' goroutines gone", func() bool {
				return runtime.NumGoroutine() <= base+5
			})
		})
	}
}

// TestTLSAfterProxyHeader: with --accept-proxy, the PROXY header comes
// before the handshake, and the access log names the client it gives.
func TestTLSAfterProxyHeader(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	var log testutil.Buffer
	srv := start(t, "async", "", func(c *Config) {
		c.TLS, c.AcceptProxy, c.Log = serverTLS, true, slog.New(slog.NewTextHandler(&log, nil))
	})
	raw, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(raw, "PROXY TCP4 203.0.113.7 127.0.0.1 40001 443\r\n")
	c := tls.Client(raw, clientTLS)
	io.WriteString(c, get("/santai"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "santai saja" {
		t.Fatalf("got %q", body)
	}
	testutil.Eventually(t, 5*time.Second, "the access log naming 203.0.113.7:40001", func() bool {
		return strings.Contains(log.String(), "client=203.0.113.7:40001")
	})
}
