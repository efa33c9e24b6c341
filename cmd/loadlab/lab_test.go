package main

import (
	"bufio"
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
		{"lab", "--repetitions", "0"}, {"lab", "--repetitions", "101"}, {"lab", "--quick", "--out", file}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.HasPrefix(string(out), "loadlab: ") {
			t.Errorf("%v: %v %q", args, err, out)
		}
		if args[len(args)-1] == file && !strings.HasPrefix(string(out), "loadlab: --out "+file+": not a directory\n") {
			t.Errorf("--out a file: %q", out)
		}
	}
}
