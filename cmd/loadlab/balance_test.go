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
