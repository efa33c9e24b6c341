package lab

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"loadlab/internal/testutil"
)

// A command that puts its server in the background is one clear line,
// whenever the lab sees it go: it exited (status 0), leaving the named
// process running, which the lab has stopped. Nothing outlives the lab,
// not even a process that left the command's process group and session.
func TestCommandThatDaemonizes(t *testing.T) {
	testutil.NoteSources()
	python, script := pythonScript(t, pyServer)
	left := regexp.MustCompile(`\), leaving \S+ \(pid (\d+)\) running in the background \(stopped now: a command must stay in the foreground`)
	for _, mode := range []string{"daemon", "daemon-bind-first"} {
		cfg := parse(t, `requests: 20
levels: [1]
systems:
  - name: daemon
    processes: [{name: s, run: command, port: 8000, command: [`+python+`, `+script+`, "{port}", `+mode+`]}]
    target: s
`)
		// Its parent's exit is seen while it starts, or else after the
		// first repetition: one line says so either way.
		res, err := Run(context.Background(), Options{Config: cfg, Binary: binary, PortsAuto: true})
		var said string
		switch {
		case err != nil:
			said = err.Error()
		case res.Systems[0].Lost != "":
			said = "system daemon, process s (command on " + res.Systems[0].Lost
			for _, cell := range res.Systems[0].Cells {
				if len(cell.Repetitions) > 0 {
					t.Errorf("%s: measured %d repetitions of a server left in the background", mode, len(cell.Repetitions))
				}
			}
		default:
			t.Fatalf("%s: the lab measured a server its command left in the background", mode)
		}
		t.Logf("%s: %s", mode, said)
		m := left.FindStringSubmatch(said)
		if m == nil || !strings.Contains(said, "(exit status 0), leaving ") || strings.Contains(said, "\n") {
			t.Fatalf("%s: %s", mode, said)
		}
		pid, _ := strconv.Atoi(m[1])
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s: the server it left, pid %d, is still there (kill 0: %v)", mode, pid, err)
		}

	}
}

// A command that stays in the foreground but starts a helper in a session
// of its own is measured as usual, and the helper is stopped at the end
// with a line that names it.
func TestLabStopsWhatACommandLeftInTheBackground(t *testing.T) {
	testutil.NoteSources()
	python, _ := pythonScript(t, "")
	cfg := parse(t, `requests: 20
levels: [1]
repetitions: 2
systems:
  - name: helped
    processes: [{name: s, run: command, port: 8000, command: [sh, -c, "setsid sleep 60 & exec `+python+` -m http.server {port} --bind 127.0.0.1"]}]
    target: s
`)
	var log strings.Builder
	res, err := Run(context.Background(), Options{Config: cfg, Binary: binary, PortsAuto: true, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if reps := res.Systems[0].Cells[0].Repetitions; len(reps) != 2 || reps[0].Failed+reps[1].Failed != 0 || res.Systems[0].Lost != "" {
		t.Errorf("helped: %+v, lost: %q", reps, res.Systems[0].Lost)
	}
	m := regexp.MustCompile(`loadlab lab: stopped what a command had left running in the background: sleep \(pid (\d+)\)\n`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no line naming the helper; log:\n%s", log.String())
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the helper, pid %d, is still there (kill 0: %v)", pid, err)
	}
}
