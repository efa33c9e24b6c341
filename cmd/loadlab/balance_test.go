package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"loadlab"
	"loadlab/internal/balancer"
	"loadlab/internal/testutil"
)

// balance starts "loadlab balance" and returns it with its address and
// a channel of its later stderr lines.
func balance(t *testing.T, args ...string) (*exec.Cmd, string, <-chan string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"balance", "--listen", "127.0.0.1:0"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	sc := bufio.NewScanner(stderr)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for line := range lines {
		if rest, ok := strings.CutPrefix(line, "loadlab balance"+loadlab.ReadyMark); ok {
			return cmd, strings.Fields(rest)[0], lines
		}
	}
	t.Fatal("balancer exited without a ready line")
	return nil, "", nil
}

func waitLine(t *testing.T, lines <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("no line starting %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("no line starting %q within 5s", prefix)
		}
	}
}

func servedBy(t *testing.T, addr string) string {
	t.Helper()
	// A new connection each time: in tcp mode a kept-alive one stays with its backend.
	client := http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/santai")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-Served-By")
}

func TestBalanceReloadsOnSIGHUPAndKeepsOldConfigOnError(t *testing.T) {
	testutil.NoteSources()
	_, b1, _ := serve(t, "--quiet", "--name", "one")
	_, b2, _ := serve(t, "--quiet", "--name", "two")
	dir := t.TempDir()
	conf := filepath.Join(dir, "lb.yaml")
	write := func(s string) { os.WriteFile(conf, []byte(s), 0o644) }
	write(fmt.Sprintf("algo: first\ncheck: {kind: none}\nbackends:\n  - addr: %s\n", b1))
	cmd, addr, lines := balance(t, "--config", conf, "--quiet")
	if by := servedBy(t, addr); by != "one" {
		t.Fatalf("served by %q", by)
	}
	write("algo: first\nbackends:\n  - addr: [not yaml\n")
	cmd.Process.Signal(syscall.SIGHUP)
	if line := waitLine(t, lines, "loadlab balance: reload refused"); !strings.Contains(line, "lb.yaml") {
		t.Errorf("refusal does not name the file: %s", line)
	}
	if by := servedBy(t, addr); by != "one" {
		t.Errorf("after a broken reload served by %q", by)
	}
	write(fmt.Sprintf("algo: first\ncheck: {kind: none}\nbackends:\n  - addr: %s\n  - addr: %s\n", b2, b1))
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine(t, lines, "loadlab balance: reloaded (2 backends)")
	if by := servedBy(t, addr); by != "two" {
		t.Errorf("after the reload served by %q", by)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
}

func TestBalanceBadInput(t *testing.T) {
	testutil.NoteSources()
	for _, args := range [][]string{
		{"balance"},
		{"balance", "--backend", "nohostport"},
		{"balance", "--backend", "127.0.0.1:9002,weight=0"},
		{"balance", "--backend", "127.0.0.1:9002", "--algo", "fastest"},
		{"balance", "--backend", "127.0.0.1:9002", "--mode", "udp"},
		{"balance", "--backend", "127.0.0.1:9002", "--send-proxy", "v3"},
		{"balance", "--backend", "127.0.0.1:9002", "--max-body", "-1"},
		{"balance", "--config", "/no/such/file.yaml"},
		{"balance", "--backend", "127.0.0.1:9002", "--tls-cert", "c.pem"},
		{"balance", "--backend", "127.0.0.1:9002", "--tls-cert", "/no/c.pem", "--tls-key", "/no/k.pem"},
		{"balance", "--backend", "127.0.0.1:9002", "--tls-self-signed", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
		{"balance", "--backend", "127.0.0.1:9002", "--backend-ca", "ca.pem"},
		{"balance", "--backend", "127.0.0.1:9002", "--hash-by", "sni"},
		{"balance", "--backend", "127.0.0.1:9002", "--algo", "sourcehash", "--hash-by", "host"},
		{"balance", "--backend", "127.0.0.1:9002", "--algo", "sourcehash", "--hash-by", "sni", "--mode", "http"},
		{"balance", "--backend", "127.0.0.1:9002", "--backend-tls", "--backend-ca", "/no/ca.pem"},
		{"balance", "--backend", "127.0.0.1:9002", "--backend-tls", "--backend-ca", "ca.pem", "--backend-tls-insecure"},
	} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() == 0 || !strings.HasPrefix(string(out), "loadlab: ") || strings.Contains(string(out), "goroutine") {
			t.Errorf("%v: %v %q", args, err, out)
		}
	}
}

// --check validates as haproxy -c does (exit 0 or 1, one line), and
// --print-config prints the effective configuration, flags over the file,
// as YAML that loads back.
func TestBalanceCheckAndPrintConfig(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("backends:\n  - 127.0.0.1:9002\ncheck:\n  interval: 2\n"), 0o644)
	noCert := filepath.Join(dir, "nocert.yaml")
	os.WriteFile(noCert, []byte("backends: [127.0.0.1:9002]\ntls: [{cert: /no/such.pem, key: /no/such.key}]\n"), 0o644)
	for _, tc := range []struct {
		file, want string
		code       int
	}{
		{"../../examples/balance/lab.yaml", "configuration ../../examples/balance/lab.yaml is valid: mode tcp, algo roundrobin, 4 backends\n", 0},
		{broken, "loadlab: configuration " + broken + " is not valid: config " + broken + ": line 4: check.interval: want a duration such as 2s or 500ms, got 2\n", 1},
		{noCert, "/no/such.pem", 1},
	} {
		out, err := exec.Command(binary, "balance", "--check", "--config", tc.file).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) || strings.Count(string(out), "\n") != 1 {
			t.Errorf("--check %s: exit %d, %q; want exit %d and %q", tc.file, code, out, tc.code, tc.want)
		}
	}

	out, err := exec.Command(binary, "balance", "--print-config", "--config", "../../examples/balance/http.yaml", "--mode", "tcp").Output()
	if err != nil {
		t.Fatal(err)
	}
	printed := filepath.Join(dir, "printed.yaml")
	os.WriteFile(printed, out, 0o644)
	cfg, err := balancer.LoadConfig(printed)
	if err != nil || cfg.Mode != "tcp" || len(cfg.Backends) != 3 || cfg.Backends[1].Weight != 3 || cfg.Admin.User != "ops" || cfg.Check.Timeout != 500*time.Millisecond {
		t.Errorf("printed configuration: %+v %v\n%s", cfg, err, out)
	}
	if out, err := exec.Command(binary, "balance", "--check", "--config", printed).CombinedOutput(); err != nil {
		t.Errorf("the printed configuration does not check: %v %s", err, out)
	}
}
