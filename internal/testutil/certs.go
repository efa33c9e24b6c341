package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"loadlab/internal/tlsx"
)

// Certificate is a self-signed certificate a test made: its files, the
// store a server loads from them, and the leaf a client is shown.
type Certificate struct {
	tlsx.Pair
	Store *tlsx.Store
	Leaf  *x509.Certificate
}

// SelfSigned makes an ECDSA certificate for localhost, 127.0.0.1 and
// hosts, in a directory of its own under the test's, and loads it.
func SelfSigned(t testing.TB, hosts ...string) Certificate {
	t.Helper()
	certPEM, keyPEM, err := tlsx.SelfSigned(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(t.TempDir(), "cert")
	if err != nil {
		t.Fatal(err)
	}
	p, err := tlsx.WritePair(dir, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	store, _, err := tlsx.Load([]tlsx.Pair{p})
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	return Certificate{Pair: p, Store: store, Leaf: leaf}
}
