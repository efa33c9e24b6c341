package testutil

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// ServeEach runs handle for every connection to ln, closing each after,
// until the test ends; ln is closed then.
func ServeEach(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// Listen listens on a free loopback port, or fails the test.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// ReadFile reads a file the test needs, or fails the test.
func ReadFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CombinedPEM writes the certificate and its key into one PEM file, as
// ab's -E and HAProxy's crt take them, and returns its name.
func (c Certificate) CombinedPEM(t testing.TB) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "combined.pem")
	if err := os.WriteFile(name, append(ReadFile(t, c.CertFile), ReadFile(t, c.KeyFile)...), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}
