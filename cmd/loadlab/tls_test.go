package main

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"loadlab/internal/testutil"
	"loadlab/internal/tlsx"
)

// servedFingerprint is the SHA-256 of the certificate a TLS client gets
// from addr, in the ready line's form.
func servedFingerprint(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
	var parts []string
	for _, b := range sum {
		parts = append(parts, fmt.Sprintf("%02X", b))
	}
	return strings.Join(parts, ":")
}

// readyFingerprint is the fingerprint on a process's ready line.
func readyFingerprint(p *testutil.Proc) string {
	for _, l := range p.Lines() {
		if _, fp, ok := strings.Cut(l, "sha256 "); ok {
			return strings.TrimSuffix(fp, ")")
		}
	}
	return ""
}

// TestServeTLSReloadsOnSIGHUP: serve's ready line names the certificate
// it serves; SIGHUP takes new files, and a bad file is refused in one
// line with the old certificate kept. A key others may read is warned of.
func TestServeTLSReloadsOnSIGHUP(t *testing.T) {
	for _, model := range []string{"async", "prefork"} {
		t.Run(model, func(t *testing.T) {
			dir := t.TempDir()
			certPEM, keyPEM, _ := tlsx.SelfSigned()
			p, err := tlsx.WritePair(dir, certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			os.Chmod(p.KeyFile, 0o640)
			srv := testutil.Start(t, nil, binary, "serve", "--model", model, "--listen", "127.0.0.1:0", "--quiet",
				"--tls-cert", p.CertFile, "--tls-key", p.KeyFile)
			if !srv.Saw("warning: private key " + p.KeyFile + " is readable by others") {
				t.Errorf("no warning for a key of mode 640:\n%s", srv.Output())
			}
			first := servedFingerprint(t, srv.Addr())
			if ready := readyFingerprint(srv); ready != first {
				t.Fatalf("ready line says %s, the client got %s", ready, first)
			}

			certPEM, keyPEM, _ = tlsx.SelfSigned()
			os.WriteFile(p.CertFile, certPEM, 0o644)
			os.WriteFile(p.KeyFile, keyPEM, 0o600)
			srv.Cmd.Process.Signal(syscall.SIGHUP)
			var second string
			testutil.Eventually(t, 10*time.Second, "the new certificate served on 8 connections in a row", func() bool {
				second = servedFingerprint(t, srv.Addr())
				for range 7 { // prefork: both children have it
					if got := servedFingerprint(t, srv.Addr()); got != second {
						return false
					}
				}
				return second != first
			})

			os.WriteFile(p.CertFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o644)
			srv.Cmd.Process.Signal(syscall.SIGHUP)
			testutil.Eventually(t, 10*time.Second, "the reload refused", func() bool {
				return srv.Saw("certificate reload refused, the old certificate stays: certificate " + p.CertFile)
			})
			for range 8 {
				if got := servedFingerprint(t, srv.Addr()); got != second {
					t.Fatalf("after a bad file the certificate changed: %s, want %s", got, second)
				}
			}
			if !srv.Alive() {
				t.Fatalf("serve exited:\n%s", srv.Output())
			}
		})
	}
}

// TestServeSelfSignedPrefork: every prefork child serves the parent's
// self-signed certificate, the one on the ready line.
func TestServeSelfSignedPrefork(t *testing.T) {
	srv := testutil.Start(t, nil, binary, "serve", "--model", "prefork", "--procs", "2", "--listen", "127.0.0.1:0", "--quiet", "--tls-self-signed")
	want := readyFingerprint(srv)
	if len(want) != 95 {
		t.Fatalf("no fingerprint on the ready line:\n%s", srv.Output())
	}
	for i := range 20 { // new connections land on either child
		if got := servedFingerprint(t, srv.Addr()); got != want {
			t.Fatalf("connection %d: certificate %s, want %s", i, got, want)
		}
	}
}
