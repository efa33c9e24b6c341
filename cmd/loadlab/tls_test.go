package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
			p := testutil.SelfSigned(t).Pair
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

			certPEM, keyPEM, _ := tlsx.SelfSigned()
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
// self-signed certificate, the one on the ready line, a SIGHUP reload
// keeps it, and a server killed outright leaves no key behind.
func TestServeSelfSignedPrefork(t *testing.T) {
	tmp := t.TempDir()
	srv := testutil.Start(t, func(c *exec.Cmd) { c.Env = append(os.Environ(), "TMPDIR="+tmp) },
		binary, "serve", "--model", "prefork", "--procs", "2", "--listen", "127.0.0.1:0", "--quiet", "--tls-self-signed")
	want := readyFingerprint(srv)
	if len(want) != 95 {
		t.Fatalf("no fingerprint on the ready line:\n%s", srv.Output())
	}
	for i := range 20 { // new connections land on either child
		if got := servedFingerprint(t, srv.Addr()); got != want {
			t.Fatalf("connection %d: certificate %s, want %s", i, got, want)
		}
	}
	srv.Cmd.Process.Signal(syscall.SIGHUP) // the parent passes it to its children
	testutil.Eventually(t, 5*time.Second, "a reload in the parent and each child", func() bool { return srv.Count("certificates reloaded") == 3 })
	if got := servedFingerprint(t, srv.Addr()); got != want {
		t.Errorf("after SIGHUP: certificate %s, want %s", got, want)
	}
	srv.Kill()
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("a killed server left %d files in its TMPDIR, %s first", len(left), left[0].Name())
	}
}

// tlsLines are ab's TLS report lines, label and value.
func tlsLines(out string) map[string]string {
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		for _, label := range []string{"SSL/TLS Protocol", "Server Temp Key", "TLS Server Name"} {
			if v, ok := strings.CutPrefix(l, label+":"); ok {
				lines[label] = strings.TrimSpace(v)
			}
		}
	}
	return lines
}

// TestBenchTLSAgreesWithAB: on HTTPS, bench's report has ab's lines, its
// TLS lines word for word, and the same counts, with -f, -Z and -I too.
func TestBenchTLSAgreesWithAB(t *testing.T) {
	ab, err := exec.LookPath("ab")
	if err != nil {
		t.Skip("ab not installed (apt-get install apache2-utils); .ci/run installs it")
	}
	srv := testutil.Start(t, nil, binary, "serve", "--listen", "127.0.0.1:0", "--quiet", "--tls-self-signed")
	_, port, _ := net.SplitHostPort(srv.Addr())
	byName, byAddr := "https://localhost:"+port, "https://"+srv.Addr()
	for _, args := range [][]string{
		{"-n", "300", "-c", "10", byName + "/"},
		{"-k", "-n", "300", "-c", "10", byAddr + "/"},
		{"-f", "TLS1.2", "-Z", "ECDHE-ECDSA-AES128-GCM-SHA256", "-n", "50", "-c", "5", byName + "/santai"},
		{"-f", "TLS1.2", "-Z", "ECDHE-ECDSA-CHACHA20-POLY1305", "-n", "20", "-c", "2", byName + "/"},
		{"-I", "-n", "50", "-c", "5", byName + "/testing.txt"},
	} {
		abOut, ours := agreesWithAB(t, ab, args)
		if a, o := tlsLines(abOut), tlsLines(ours); fmt.Sprint(a) != fmt.Sprint(o) || a["SSL/TLS Protocol"] == "" {
			t.Errorf("%v: TLS lines differ:\nab:   %q\nours: %q", args, a, o)
		}
	}
}

// TestBenchTLSJSONHasHandshakes: the JSON report carries the handshakes'
// own percentiles, one per new connection, and --tls-verify refuses a
// certificate it cannot trust.
func TestBenchTLSJSONHasHandshakes(t *testing.T) {
	p := testutil.SelfSigned(t).Pair
	srv := testutil.Start(t, nil, binary, "serve", "--listen", "127.0.0.1:0", "--quiet", "--tls-cert", p.CertFile, "--tls-key", p.KeyFile)
	url := "https://" + srv.Addr() + "/"
	out, err := exec.Command(binary, "bench", "-q", "-n", "40", "-c", "4", "--format", "json", "--tls-verify", "--tls-ca", p.CertFile, url).Output()
	if err != nil {
		t.Fatalf("bench --tls-ca: %v\n%s", err, out)
	}
	var report struct {
		Runs []struct {
			Complete  int64 `json:"complete"`
			Handshake *struct {
				Min float64 `json:"min_ms"`
				P99 float64 `json:"p99_ms"`
			} `json:"handshake"`
			TLS *struct {
				Protocol string `json:"protocol"`
			} `json:"tls"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(out, &report); err != nil || len(report.Runs) != 1 {
		t.Fatalf("%v:\n%s", err, out)
	}
	s := report.Runs[0]
	if s.Complete != 40 || s.Handshake == nil || s.Handshake.Min <= 0 || s.Handshake.P99 < s.Handshake.Min || s.TLS == nil || !strings.HasPrefix(s.TLS.Protocol, "TLSv1.3,") {
		t.Errorf("JSON: %s", out)
	}
	other, _, _ := tlsx.SelfSigned()
	os.WriteFile(p.CertFile+".other", other, 0o644)
	out, _ = exec.Command(binary, "bench", "-q", "-n", "5", "--tls-verify", "--tls-ca", p.CertFile+".other", url).CombinedOutput()
	if !strings.Contains(string(out), "TLS: x509: certificate signed by unknown authority") || !strings.Contains(string(out), "(trust its CA with --tls-ca FILE") {
		t.Errorf("a certificate the CA did not sign was accepted:\n%s", out)
	}
}

// TestBalanceTLSFromYAMLReloadsOnSIGHUP: balance ends TLS with the
// certificates of its YAML file, names the default one on its ready
// line, takes new files on SIGHUP and refuses a bad one in one line,
// keeping the old. --tls-self-signed works in tcp mode too.
func TestBalanceTLSFromYAMLReloadsOnSIGHUP(t *testing.T) {
	_, backend, _ := serve(t, "--quiet", "--name", "one")
	p := testutil.SelfSigned(t).Pair
	conf := filepath.Join(t.TempDir(), "lb.yaml")
	os.WriteFile(conf, fmt.Appendf(nil, "mode: http\ncheck: {kind: none}\nbackends: [{addr: %q}]\ntls:\n  - {cert: %q, key: %q}\n",
		backend, p.CertFile, p.KeyFile), 0o644)
	cmd, addr, lines := balance(t, "--config", conf, "--quiet")
	first := servedFingerprint(t, addr)
	client := http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Served-By") != "one" || resp.TLS == nil {
		t.Fatalf("over HTTPS: %v, served by %q", resp.Status, resp.Header.Get("X-Served-By"))
	}

	certPEM, keyPEM, _ := tlsx.SelfSigned()
	os.WriteFile(p.CertFile, certPEM, 0o644)
	os.WriteFile(p.KeyFile, keyPEM, 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	line := waitLine(t, lines, "loadlab balance: reloaded (1 backend, 1 certificates, sha256 ")
	second := servedFingerprint(t, addr)
	if second == first || !strings.HasSuffix(line, second+")") {
		t.Errorf("after the reload %s is served, the line says: %s", second, line)
	}

	os.WriteFile(p.KeyFile, []byte("not a key"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	if line := waitLine(t, lines, "loadlab balance: reload refused"); !strings.Contains(line, p.KeyFile) {
		t.Errorf("the refusal does not name the key file: %s", line)
	}
	if got := servedFingerprint(t, addr); got != second {
		t.Errorf("a refused reload changed the certificate to %s", got)
	}

	_, tcpAddr, _ := balance(t, "--backend", backend, "--health-check", "none", "--quiet", "--tls-self-signed")
	c, err := tls.Dial("tcp", tcpAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
	out, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(out), "HTTP/1.1 200 OK") || !strings.Contains(string(out), "X-Served-By: one") {
		t.Errorf("tcp mode over TLS: %q", out)
	}
}
