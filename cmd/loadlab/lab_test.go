package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"loadlab/internal/testutil"
)

func TestLabCtrlCLeavesNothingBehind(t *testing.T) {
	testutil.NoteSources()
	out := t.TempDir()
	cmd := exec.Command(binary, "lab", "--ports", "auto", "--screenshots=false", "--out", out)
	mark := testutil.Mark(t) // the lab's processes, orphans too, carry it; other packages' do not
	cmd.Env = append(os.Environ(), mark)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var log []string
	for sc.Scan() { // wait until the first round is under way
		log = append(log, sc.Text())
		if strings.Contains(sc.Text(), "round 1/") {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	for sc.Scan() {
		log = append(log, sc.Text())
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("after Ctrl-C: %v\n%s", err, strings.Join(log, "\n"))
	}
	if !strings.Contains(strings.Join(log, "\n"), "interrupted after") {
		t.Errorf("no word of the interruption:\n%s", strings.Join(log, "\n"))
	}
	// What finished is reported.
	if md, err := os.ReadFile(filepath.Join(out, "REPORT.md")); err != nil || !strings.Contains(string(md), "Interrupted (Ctrl-C)") {
		t.Errorf("no partial report after Ctrl-C: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, "no loadlab process left after Ctrl-C", func() bool {
		return len(testutil.ProcessesOf(binary, mark)) == 0
	})
}

// A lab killed outright (SIGKILL: nothing of it runs after) leaves no
// server answering: its own children die with it (Pdeathsig), and so
// must what they started, a prefork server's children, nginx's workers.
func TestLabKilledLeavesNoServer(t *testing.T) {
	testutil.NoteSources()
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Skip("needs nginx (apt-get install nginx)")
		}
	}
	config := filepath.Join(t.TempDir(), "lab.yaml")
	os.WriteFile(config, []byte(`requests: 1000
levels: [1, 5]
repetitions: 99
systems:
  - {name: nginx, target: n, processes: [{name: n, run: nginx, port: 8000}]}
  - {name: prefork, target: s, processes: [{name: s, run: serve, port: 8001, args: [--model, prefork, --procs, "2", --quiet]}]}
`), 0o644)
	cmd := exec.Command(binary, "lab", "--config", config, "--ports", "auto", "--screenshots=false", "--out", t.TempDir())
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	var addrs, log []string
	for sc.Scan() && !strings.Contains(sc.Text(), "round 1/") {
		log = append(log, sc.Text())
		if _, url, ok := strings.Cut(sc.Text(), " up on http://"); ok {
			addrs = append(addrs, strings.TrimSuffix(url, "/"))
		}
	}
	if len(addrs) != 2 {
		t.Fatalf("up: %v\n%s", addrs, strings.Join(log, "\n"))
	}
	cmd.Process.Kill()
	cmd.Wait()
	for _, addr := range addrs {
		testutil.Eventually(t, 5*time.Second, addr+" refuses connections once the lab is killed", func() bool {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
	}
}

func TestLabPrintConfigAndBadFlags(t *testing.T) {
	testutil.NoteSources()
	out, err := exec.Command(binary, "lab", "--print-config").Output()
	if err != nil || !strings.Contains(string(out), "name: async-balancer") || !strings.Contains(string(out), "port: 44444") {
		t.Errorf("--print-config: %v\n%s", err, out)
	}
	// --out that cannot take a report is refused before anything runs.
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o644)
	for _, args := range [][]string{{"lab", "--ports", "random"}, {"lab", "--config", "/no/such.yaml"}, {"lab", "--compare", "/no/such.json"},
		{"lab", "--repetitions", "0"}, {"lab", "--repetitions", "100"}, {"lab", "--time-budget", "0s"}, {"lab", "--repetitions", "5", "--time-budget", "1m"},
		{"lab", "--quick", "--out", file}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.HasPrefix(string(out), "loadlab: ") {
			t.Errorf("%v: %v %q", args, err, out)
		}
		if args[len(args)-1] == file && !strings.HasPrefix(string(out), "loadlab: --out "+file+": not a directory\n") {
			t.Errorf("--out a file: %q", out)
		}
	}
}
