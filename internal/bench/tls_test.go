package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"loadlab/internal/server"
	"loadlab/internal/testutil"
	"loadlab/internal/testutil/served"
	"loadlab/internal/tlsx"
)

// tlsServer starts the project's server over TLS and returns its https URL.
func tlsServer(t *testing.T) string {
	t.Helper()
	cert := testutil.SelfSigned(t)
	return "https://" + served.Start(t, server.Config{Model: "async", TLS: cert.Store.ServerConfig()}).Addr().String() + "/"
}

// TestTLSRunsEndAsTheirPlainTwins: over HTTPS, exact counts, a time
// limit that ends the run promptly with answers in flight cut, a held
// rate, and a Ctrl-C.
func TestTLSRunsEndAsTheirPlainTwins(t *testing.T) {
	url := tlsServer(t)
	s, err := Run(context.Background(), Work{URL: url, Requests: 333, Concurrency: 7}, nil)
	if err != nil || s.Complete != 333 || s.Failed != 0 || s.Handshake == nil || s.TLS == nil {
		t.Fatalf("-n 333 -c 7: %v %+v", err, s)
	}

	began := time.Now()
	s, err = Run(context.Background(), Work{URL: url, KeepAlive: true, Concurrency: 4, TimeLimit: 300 * time.Millisecond}, nil)
	if err != nil || s.Complete == 0 || s.Failed != 0 || s.KeepAliveRequests != s.Complete {
		t.Fatalf("-k -t 0.3: %v %+v", err, s)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("a 0.3 s run took %v", took)
	}

	s, err = Run(context.Background(), Work{URL: url, Requests: 40, Concurrency: 4, Rate: 400}, nil)
	if err != nil || s.Complete != 40 || s.Failed != 0 {
		t.Fatalf("--rate 400: %v %+v", err, s)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	s, err = Run(ctx, Work{URL: url, Requests: 1 << 30, Concurrency: 3, KeepAlive: true}, nil)
	if err != nil || s.Complete == 0 || s.Failed != 0 {
		t.Fatalf("cancelled: %v %+v", err, s)
	}
}

// TestTLSServerThatStallsIsATimeout: a server that accepts and never
// answers the handshake is ab's receive timeout, not a hang.
func TestTLSServerThatStallsIsATimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s, err := Run(context.Background(), Work{URL: "https://" + ln.Addr().String() + "/", Requests: 2, Timeout: 200 * time.Millisecond, ContinueOnError: true}, nil)
	if s == nil || s.Complete != 0 || s.Failed == 0 {
		t.Fatalf("%v %+v", err, s)
	}
}

// -E shows the client's certificate to a server that requires one; without
// it, that server's refusal is a failed request, not a hang.
func TestTLSClientCertificate(t *testing.T) {
	srvCert := testutil.SelfSigned(t)
	client := testutil.SelfSigned(t)
	pem := client.CombinedPEM(t)
	conf := srvCert.Store.ServerConfig()
	conf.ClientAuth = tls.RequireAnyClientCert
	var mu sync.Mutex
	var shown []string
	conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		mu.Lock()
		defer mu.Unlock()
		if c, err := x509.ParseCertificate(raw[0]); err == nil {
			shown = append(shown, tlsx.Describe(c).Fingerprint)
		}
		return nil
	}
	url := "https://" + served.Start(t, server.Config{Model: "async", TLS: conf}).Addr().String() + "/"
	s, err := Run(context.Background(), Work{URL: url, Requests: 5, TLS: TLS{ClientCert: pem}}, nil)
	if err != nil || s.Complete != 5 || s.Failed != 0 {
		t.Fatalf("-E: %v %+v", err, s)
	}
	mu.Lock()
	if len(shown) != 5 || shown[0] != tlsx.Describe(client.Leaf).Fingerprint {
		t.Errorf("the server was shown %v, want the client's certificate five times", shown)
	}
	mu.Unlock()
	s, _ = Run(context.Background(), Work{URL: url, Requests: 3, ContinueOnError: true}, nil)
	if s == nil || s.Complete != 0 || s.Failed != 3 {
		t.Errorf("without -E against a server that requires one: %+v", s)
	}
	if _, err := Run(context.Background(), Work{URL: url, Requests: 1, TLS: TLS{ClientCert: client.CertFile}}, nil); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("-E with a certificate and no key: %v", err)
	}
}
