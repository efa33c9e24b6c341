package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"loadlab/internal/procstat"
	"loadlab/internal/report"
	"loadlab/internal/testutil"
)

// labServer is a server already running, for url: systems.
func labServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("Ini Adalah web Server percobaan"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// runAndReport runs cfg on free ports and writes its report into a
// directory of the test's, which it returns with the results.
func runAndReport(t *testing.T, opts Options) (*report.Results, string) {
	t.Helper()
	opts.Binary, opts.PortsAuto = binary, true
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := report.Write(out, res); err != nil {
		t.Fatal(err)
	}
	return res, out
}

// pythonScript is python3's path, and a file of the test's holding
// source; the test skips where there is no python3.
func pythonScript(t *testing.T, source string) (python, script string) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3")
	}
	script = filepath.Join(t.TempDir(), "server.py")
	if err := os.WriteFile(script, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	return python, script
}

// startPyServer starts pyServer (in its default mode: it exits on its
// 71st request) on a port of its choosing, as a server already running
// for url: systems; it gives the server's pid and port.
func startPyServer(t *testing.T) (pid int, port string) {
	t.Helper()
	python, script := pythonScript(t, pyServer)
	server := exec.Command(python, script, "0")
	stdout, _ := server.StdoutPipe()
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	first, _ := bufio.NewReader(stdout).ReadString('\n')
	port, ok := strings.CutPrefix(strings.TrimSpace(first), "listening on ")
	if !ok {
		t.Fatalf("the server said %q", first)
	}
	return server.Process.Pid, port
}

func parse(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(yaml), "test")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Rounds rotate the order of the systems, every cell has every
// repetition, the lab table shows the median repetition, and spreads are
// in results.json and REPORT.md.
func TestRoundsRotateAndReportSpreads(t *testing.T) {
	testutil.NoteSources()
	cfg := parse(t, fmt.Sprintf(`requests: 30
levels: [1, 3]
repetitions: 3
systems:
  - name: a
    lab_table: thread
    processes: [{name: s, run: serve, port: 8000, args: [--model, thread, --quiet]}]
    target: s
  - name: b
    processes: [{name: s, run: serve, port: 8001, args: [--model, async, --quiet]}]
    target: s
  - name: c
    url: %s
`, labServer(t)))
	res, err := Run(context.Background(), Options{Config: cfg, Binary: binary, PortsAuto: true})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}}
	if fmt.Sprint(res.Rounds) != fmt.Sprint(want) {
		t.Errorf("rounds %v, want %v", res.Rounds, want)
	}
	for _, s := range res.Systems {
		if len(s.Cells) != 2 || len(s.Runs) != 2 {
			t.Fatalf("%s: %d cells, %d runs", s.Name, len(s.Cells), len(s.Runs))
		}
		for i, cell := range s.Cells {
			var rps []float64
			for _, r := range cell.Repetitions {
				rps = append(rps, r.RequestsPerSecond)
				if r.Failed != 0 {
					t.Errorf("%s c=%d: %d failed", s.Name, cell.Level, r.Failed)
				}
			}
			if len(rps) != 3 || cell.Median.RequestsPerSecond != report.Median(rps) ||
				cell.Low.RequestsPerSecond != slices.Min(rps) || cell.High.RequestsPerSecond != slices.Max(rps) {
				t.Errorf("%s c=%d: median %v low %v high %v of %v", s.Name, cell.Level, cell.Median.RequestsPerSecond, cell.Low.RequestsPerSecond, cell.High.RequestsPerSecond, rps)
			}
			if s.Runs[i].RequestsPerSecond != cell.Median.RequestsPerSecond {
				t.Errorf("%s c=%d: the table's run has %v req/s, not the median %v", s.Name, cell.Level, s.Runs[i].RequestsPerSecond, cell.Median.RequestsPerSecond)
			}
			if (s.Name == "c") != (cell.Median.ServerCPU == 0) {
				t.Errorf("%s c=%d: server CPU %v µs/request (none for a server in the lab's own process)", s.Name, cell.Level, cell.Median.ServerCPU)
			}
			for _, r := range cell.Repetitions {
				if r.ServerCPU > 0 && math.Abs(r.ServerPerClientCPU-r.ServerCPU/r.ClientCPU) > 1e-9 {
					t.Errorf("%s c=%d: server ÷ client CPU %v, from %v and %v", s.Name, cell.Level, r.ServerPerClientCPU, r.ServerCPU, r.ClientCPU)
				}
			}
		}
	}
	out := t.TempDir()
	if err := report.Write(out, res); err != nil {
		t.Fatal(err)
	}
	var back report.Results
	data, _ := os.ReadFile(filepath.Join(out, "results.json"))
	if err := json.Unmarshal(data, &back); err != nil || back.Repetitions != 3 || len(back.Systems[0].Cells[0].Repetitions) != 3 ||
		back.Systems[0].Cells[0].High.RequestsPerSecond == 0 {
		t.Errorf("results.json: %v, %+v", err, back.Systems[0].Cells)
	}
	md, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
	a := res.Systems[0]
	median := fmt.Sprintf("%.2f", a.Runs[0].RequestsPerSecond)
	spread := fmt.Sprintf("%.0f (%.0f–%.0f)", a.Cells[0].Median.RequestsPerSecond, a.Cells[0].Low.RequestsPerSecond, a.Cells[0].High.RequestsPerSecond)
	if !strings.Contains(string(md), median) || !strings.Contains(string(md), spread) {
		t.Errorf("REPORT.md lacks the median run's %s or the spread %s", median, spread)
	}
	c := a.Cells[0]
	perClient := fmt.Sprintf("%.2f (%.2f–%.2f)", c.Median.ServerPerClientCPU, c.Low.ServerPerClientCPU, c.High.ServerPerClientCPU)
	if c.Median.ServerPerClientCPU <= 0 || !strings.Contains(string(md), perClient) {
		t.Errorf("REPORT.md lacks server ÷ client CPU %s", perClient)
	}
}

// The reference runs √k times a round beside k others, and a system with
// runs_per_round that often, spread through the round's order while the
// others rotate; every system's req/s is
// related to the reference's at the same level, in results.json and in
// REPORT.md's table.
func TestReferenceRunsMoreAndRelates(t *testing.T) {
	testutil.NoteSources()
	url := labServer(t)
	cfg := parse(t, fmt.Sprintf(`requests: 20
levels: [1, 2]
repetitions: 2
reference: r
systems:
  - {name: a, url: %[1]s, runs_per_round: 2}
  - {name: r, url: %[1]s}
  - {name: b, url: %[1]s}
  - {name: c, url: %[1]s}
  - {name: d, url: %[1]s}
`, url))
	res, out := runAndReport(t, Options{Config: cfg})
	want := [][]string{{"r", "a", "b", "r", "a", "c", "d"}, {"r", "b", "c", "a", "r", "d", "a"}}
	if fmt.Sprint(res.Rounds) != fmt.Sprint(want) || res.Reference != "r" {
		t.Errorf("rounds %v (reference %q), want %v", res.Rounds, res.Reference, want)
	}
	ref := res.Systems[1]
	md, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
	for _, s := range res.Systems {
		for _, cell := range s.Cells {
			n := 2
			if s == ref || s.Name == "a" {
				n = 4 // √4 runs (a: runs_per_round 2) in each of 2 rounds
			}
			if len(cell.Repetitions) != n {
				t.Errorf("%s c=%d: %d repetitions, want %d", s.Name, cell.Level, len(cell.Repetitions), n)
			}
			// A multiple per repetition, within its round (their
			// arithmetic is TestPerReferenceWithinRounds's).
			if s != ref && (cell.PerReference <= 0 || cell.PerReferenceLow > cell.PerReference || cell.PerReference > cell.PerReferenceHigh || cell.PerReferenceVerdict == "") {
				t.Errorf("%s c=%d: %v × the reference (%v–%v, %s)", s.Name, cell.Level, cell.PerReference, cell.PerReferenceLow, cell.PerReferenceHigh, cell.PerReferenceVerdict)
			}
		}
		multiple := func(i int) string {
			c := s.Cells[i]
			return fmt.Sprintf("%.2f× (%.2f–%.2f), %s", c.PerReference, c.PerReferenceLow, c.PerReferenceHigh, c.PerReferenceVerdict)
		}
		row := fmt.Sprintf("| %s | %s | %s |", s.Name, multiple(0), multiple(1))
		if s == ref {
			row = "| r | 1 | 1 |"
		}
		if !strings.Contains(string(md), row) {
			t.Errorf("REPORT.md lacks the row %q", row)
		}
	}
	if !strings.Contains(string(md), "## Against r\n") || !strings.Contains(string(md), "r ran more than once a round, spread through it (its mean in the round is the divisor): 4 repetitions a cell at c = 1, 2.") ||
		!strings.Contains(string(md), "It ran more than once a round: 4 repetitions a cell at c = 1, 2.") {
		t.Errorf("REPORT.md lacks the section against the reference:\n%s", md)
	}
}

// The reference runs in the TLS series too, beside the TLS systems at
// their levels only; without a reference each system runs once a round;
// a reference that names no system is an error.
func TestRoundOrderAtEachLevel(t *testing.T) {
	if got := referenceRuns(8); got != 3 {
		t.Errorf("beside 8 others the reference runs %d times, want 3", got)
	}
	if got := referenceRuns(0); got != 1 {
		t.Errorf("alone the reference runs %d times, want 1", got)
	}
	r := &live{sys: System{Name: "r"}}
	systems := []*live{{sys: System{Name: "a"}}, r, {sys: System{Name: "b"}}, {sys: System{Name: "t", TLS: true, Levels: []int{4}}}}
	names := func(ls []*live) string {
		var n []string
		for _, x := range ls {
			n = append(n, x.sys.Name)
		}
		return strings.Join(n, " ")
	}
	for _, c := range []struct {
		reference *live
		round     int
		level     int
		want      string
	}{
		{r, 0, 1, "r a b"},
		{r, 1, 1, "r b a"},
		{r, 0, 4, "r a b r t"},
		{nil, 0, 1, "a r b"},
		{nil, 1, 1, "r b a"},
		{nil, 1, 4, "r b a t"},
	} {
		if got := names(atLevel(roundOrder(systems, c.reference, c.round), c.reference, c.level)); got != c.want {
			t.Errorf("reference %v, round %d, c=%d: %q, want %q", c.reference != nil, c.round, c.level, got, c.want)
		}
	}
	// A system that runs three times a round, among four: its runs spread.
	k := &live{sys: System{Name: "k", RunsPerRound: 3}}
	four := []*live{{sys: System{Name: "a"}}, {sys: System{Name: "b"}}, k, {sys: System{Name: "c"}}}
	if got := names(atLevel(roundOrder(four, nil, 0), nil, 1)); got != "a k b k c k" {
		t.Errorf("runs_per_round 3: %q", got)
	}
	_, err := Parse([]byte("requests: 5\nlevels: [1]\nreference: nope\nsystems:\n  - {name: u, url: http://127.0.0.1:1/}\n"), "test")
	if err == nil || !strings.Contains(err.Error(), `reference "nope" names no system`) {
		t.Errorf("a reference naming no system: %v", err)
	}
}

// Without repetitions, the rounds fill the time budget: 13 at least, two
// more at a time while they are expected to end within it, never past 99,
// always odd; counted with each coming round as long as the longest.
func TestAutoRounds(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		done             int
		elapsed, longest time.Duration
		budget           time.Duration
		want             int
	}{
		{1, 10 * s, 5 * s, 160 * s, 31},         // 1 + 30 fit
		{1, 10 * s, 20 * s, 160 * s, 13},        // 1 + 7 fit: the least
		{13, 100 * s, 6 * s, 160 * s, 23},       // 13 + 10 fit
		{14, 100 * s, 6 * s, 160 * s, 23},       // the same, mid-pair
		{14, 159 * s, 6 * s, 160 * s, 15},       // none fits: the pair under way ends
		{15, 170 * s, 6 * s, 160 * s, 15},       // past the budget: stop
		{1, 0, time.Millisecond, time.Hour, 99}, // the most
		{13, 10 * s, 0, 160 * s, 13},
	} {
		if got := autoRounds(tc.done, tc.elapsed, tc.longest, tc.budget); got != tc.want {
			t.Errorf("autoRounds(%d, %v, %v, %v) = %d, want %d", tc.done, tc.elapsed, tc.longest, tc.budget, got, tc.want)
		}
	}
}

// A run without repetitions makes as many rounds as its time budget
// holds: all 99 in an hour's budget, the 13 it always makes in a budget
// already spent; with repetitions, exactly those. The report says which.
func TestTimeBudgetChoosesTheRounds(t *testing.T) {
	testutil.NoteSources()
	url := labServer(t)
	for _, tc := range []struct {
		extra      string
		want       int
		saysBudget bool
	}{
		{"time_budget: 1h\n", 99, true},
		{"time_budget: 1ns\n", 13, true},
		{"repetitions: 4\ntime_budget: 1h\n", 4, false},
	} {
		cfg := parse(t, fmt.Sprintf("requests: 5\nlevels: [1]\n%ssystems:\n  - {name: u, url: %s}\n", tc.extra, url))
		res, out := runAndReport(t, Options{Config: cfg})
		cell := res.Systems[0].Cells[0]
		if res.Repetitions != tc.want || len(res.Rounds) != tc.want || len(cell.Repetitions) != tc.want {
			t.Errorf("%q: %d repetitions (%d rounds, %d in the cell), want %d", tc.extra, res.Repetitions, len(res.Rounds), len(cell.Repetitions), tc.want)
		}
		md, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
		if !strings.Contains(string(md), fmt.Sprintf("ran %d times", tc.want)) || strings.Contains(string(md), "time budget") != tc.saysBudget {
			t.Errorf("%q: REPORT.md does not say it ran %d times, the budget said %v", tc.extra, tc.want, tc.saysBudget)
		}
	}
}

// stealOnFirst is a /proc/stat reader that makes a run's steal known:
// readings come in pairs around a repetition, and the first pair (after
// the warm-ups) shows half the CPU stolen, every other none.
func stealOnFirst() func() (procstat.CPUTimes, error) {
	var calls atomic.Int64
	return func() (procstat.CPUTimes, error) {
		n := uint64(calls.Add(1))
		t := procstat.CPUTimes{Total: 1000 * n}
		if n >= 2 {
			t.Steal = 500
		}
		return t, nil
	}
}

// A repetition during which more than max_steal of the CPU was stolen
// runs again, and the report counts it.
func TestStealRepeatsARepetition(t *testing.T) {
	testutil.NoteSources()
	cfg := parse(t, fmt.Sprintf("requests: 20\nlevels: [1]\nrepetitions: 2\nsystems:\n  - {name: u, url: %s}\n", labServer(t)))
	res, err := Run(context.Background(), Options{Config: cfg, ReadCPU: stealOnFirst()})
	if err != nil {
		t.Fatal(err)
	}
	cell := res.Systems[0].Cells[0]
	if res.Repeated != 1 || cell.Repeated != 1 || len(cell.Repetitions) != 2 {
		t.Errorf("repeated %d (cell %d), %d repetitions kept; want 1, 1, 2", res.Repeated, cell.Repeated, len(cell.Repetitions))
	}
	var md strings.Builder
	out := t.TempDir()
	report.Write(out, res)
	b, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
	md.Write(b)
	if !strings.Contains(md.String(), "1 repetitions saw more than 5 %") {
		t.Errorf("REPORT.md does not say a repetition was run again")
	}
}

// Answers that are not 2xx (a wrong path: 404) are timed like any, and
// said: a warning when the system is warmed up, a count in each cell's
// note and in results.json, a line in its section of the report.
func TestAnswersNotTwoHundredAreSaid(t *testing.T) {
	testutil.NoteSources()
	cfg := parse(t, `requests: 20
levels: [1, 2]
repetitions: 2
systems:
  - name: lost
    path: /no-such-page
    processes: [{name: s, run: serve, port: 8000, args: [--quiet]}]
    target: s
  - name: found
    processes: [{name: s, run: serve, port: 8001, args: [--quiet]}]
    target: s
`)
	var log strings.Builder
	res, err := Run(context.Background(), Options{Config: cfg, Binary: binary, PortsAuto: true, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`lost +warning: 20 of 20 answers on http://127\.0\.0\.1:\d+/no-such-page were not 2xx`).MatchString(log.String()) ||
		strings.Contains(log.String(), "found   warning") {
		t.Errorf("log:\n%s", log.String())
	}
	for i, want := range []int64{20, 0} {
		for _, cell := range res.Systems[i].Cells {
			for _, r := range cell.Repetitions {
				if r.Non2xx != want || r.Complete != 20 || r.Failed != 0 {
					t.Errorf("%s c=%d: %d not 2xx of %d complete, %d failed; want %d of 20", res.Systems[i].Name, cell.Level, r.Non2xx, r.Complete, r.Failed, want)
				}
			}
		}
	}
	out := t.TempDir()
	if err := report.Write(out, res); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
	lost, found, _ := strings.Cut(string(md[strings.Index(string(md), "### lost"):]), "### found")
	if !strings.Contains(lost, "**Not 2xx:** 80 of its 80 answers had a status other than 2xx") || strings.Count(lost, "40 not 2xx |") != 2 {
		t.Errorf("lost's section:\n%s", lost)
	}
	if strings.Contains(found, "2xx") {
		t.Errorf("found's section:\n%s", found)
	}
}

// Any server goes in the lab with run: command; here Python's, also
// after a line of 100 KB: what a command prints is read to its end, or
// the command would block on a full pipe or die of SIGPIPE (as it did).
func TestRunCommandPythonServer(t *testing.T) {
	testutil.NoteSources()
	python, _ := pythonScript(t, "")
	cfg := parse(t, `requests: 20
levels: [1, 2]
repetitions: 1
systems:
  - name: python
    processes: [{name: s, run: command, port: 8000, command: [`+python+`, -m, http.server, "{port}", --bind, 127.0.0.1]}]
    target: s
  - name: chatty
    processes: [{name: s, run: command, port: 8000, command: [sh, -c, "head -c 100000 /dev/zero | tr '\\0' x; echo; exec `+python+` -m http.server {port} --bind 127.0.0.1"]}]
    target: s
`)
	res, err := Run(context.Background(), Options{Config: cfg, Binary: binary, PortsAuto: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Systems {
		for _, run := range s.Runs {
			if run.Complete != 20 || run.Failed != 0 || run.ServerSoftware == "" {
				t.Errorf("%s at c=%d: %d complete, %d failed, server %q", s.Name, run.Concurrency, run.Complete, run.Failed, run.ServerSoftware)
			}
		}
		if len(s.Runs) != 2 || s.Lost != "" {
			t.Errorf("%s: %d runs, lost: %q", s.Name, len(s.Runs), s.Lost)
		}
	}
	if cpu := res.Systems[0].Cells[0].Median.ServerCPU; cpu <= 0 {
		t.Errorf("python's CPU per request: %v", cpu)
	}
}

// A url: system on this machine has its server CPU too: that of the
// process found listening on its port, named in the report. One in the
// lab's own process (system c of TestRoundsRotateAndReportSpreads) has
// none: its CPU is the load generator's.
func TestURLSystemOnThisMachineHasServerCPU(t *testing.T) {
	testutil.NoteSources()
	server, port := startPyServer(t)
	cfg := parse(t, `requests: 10
levels: [1, 2]
repetitions: 2
systems:
  - name: mine
    url: http://localhost:`+port+`/
`)
	res, out := runAndReport(t, Options{Config: cfg})
	s := res.Systems[0]
	m := regexp.MustCompile(`^python[0-9.]* \(pid (\d+)\)$`).FindStringSubmatch(s.CPUOf)
	if m == nil {
		t.Fatalf("cpu_of %q", s.CPUOf)
	}
	if pid, _ := strconv.Atoi(m[1]); !slices.Contains(procstat.WithDescendants([]int{server}), pid) {
		t.Errorf("cpu_of %q: not the server started, pid %d", s.CPUOf, server)
	}
	for _, cell := range s.Cells {
		if cell.Median.ServerCPU <= 0 || cell.Median.ServerPerClientCPU <= 0 {
			t.Errorf("c=%d: server CPU %v µs/request, %v of the client's", cell.Level, cell.Median.ServerCPU, cell.Median.ServerPerClientCPU)
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
	if !strings.Contains(string(md), "its server CPU is that of what was found listening on its port: "+s.CPUOf+".") {
		t.Errorf("REPORT.md does not name whose CPU it gives")
	}
}

// A command that exits, or never listens, is one clear line naming the
// system, with what it printed; nothing it started is left running.
func TestRunCommandThatFails(t *testing.T) {
	testutil.NoteSources()
	for name, c := range map[string]struct{ command, want string }{
		"exits":         {`[sh, -c, "echo cannot bind; exit 3"]`, "exited before its port accepted (exit status 3); it said: cannot bind"},
		"never listens": {`[sh, -c, "echo waiting; exec sleep 60"]`, "its port did not accept within 1s; it said: waiting"},
	} {
		cfg := parse(t, `requests: 5
levels: [1]
systems:
  - name: broken
    processes: [{name: s, run: command, port: 8000, ready_timeout: 1s, command: `+c.command+`}]
    target: s
`)
		_, err := Run(context.Background(), Options{Config: cfg, Binary: binary, PortsAuto: true})
		if err == nil || !strings.Contains(err.Error(), "system broken, process s") || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
		if left := sleepers(); len(left) > 0 {
			t.Errorf("%s: left running: %v", name, left)
		}
	}
}

// pyServer answers GET with "ok" on the port its first argument names
// (0: any, which it says) and, as its second says:
//   - nothing: exits (status 3) on the 71st request, a server that goes
//     down mid-run at a point fixed by count;
//   - "hang": stops answering there instead, and stays;
//   - "daemon": puts itself in the background as nginx does without
//     `daemon off;`: it forks, the parent exits at once with status 0,
//     and the child leaves the session, listens and serves on, with the
//     parent's output still open, as a daemon that never closes its
//     stdio does; with "daemon-bind-first" it listens before it forks,
//     and the parent exits once the child has answered its first
//     request: after the lab has found its port ready.
const pyServer = `
import http.server, os, sys, time
mode = sys.argv[2] if len(sys.argv) > 2 else ""
n = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global n
        n += 1
        if n == 1 and mode == "daemon-bind-first":
            os.write(served, b"1")
        if n > 70 and not mode.startswith("daemon"):
            print("giving up after", n - 1, "requests", flush=True)
            if mode == "hang":
                time.sleep(3600)
            os._exit(3)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
addr = ("127.0.0.1", int(sys.argv[1]))
srv = None if mode == "daemon" else http.server.HTTPServer(addr, H)
if mode.startswith("daemon"):
    parent, served = os.pipe()
    if os.fork():
        if srv:
            os.read(parent, 1)
        os._exit(0)
    os.setsid()
    srv = srv or http.server.HTTPServer(addr, H)
print("listening on", srv.server_address[1], flush=True)
srv.serve_forever()
`

// A system that goes down mid-run is measured no further: a process the
// lab started that exits, a url: system whose address stops answering,
// or a process that hangs (its repetition times out, as does a single
// request after it). The lab says what happened, when, and (for a process) what
// it said, keeps the repetitions from before, drops the one it went down
// in, and goes on with the others.
func TestSystemThatDiesMidRun(t *testing.T) {
	testutil.NoteSources()
	python, script := pythonScript(t, pyServer)
	_, port := startPyServer(t)
	goneAddr := "127.0.0.1:" + port
	// Warm-up 20 requests, round 1 40 more, and round 2 meets the 71st.
	cfg := parse(t, fmt.Sprintf(`requests: 20
levels: [1, 2]
repetitions: 3
timeout: 500ms
systems:
  - name: steady
    url: %s
  - name: dies
    processes: [{name: s, run: command, port: 8000, command: [%[2]s, %[3]s, "{port}"]}]
    target: s
  - name: gone
    url: http://%[4]s/
  - name: hangs
    processes: [{name: s, run: command, port: 8000, command: [%[2]s, %[3]s, "{port}", hang]}]
    target: s
`, labServer(t), python, script, goneAddr))
	var log strings.Builder
	res, err := Run(context.Background(), Options{Config: cfg, Binary: binary, PortsAuto: true, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	steady := res.Systems[0]
	for i, want := range map[int]string{
		1: "process s (command) exited during round 2, at c = 1 (exit status 3); it said: listening on ",
		2: "its address " + goneAddr + " stopped answering during round 2, at c = 1 (",
		3: " stopped answering during round 2, at c = 1 (apr_pollset_poll: The timeout specified has expired (70007); then a single request: apr_pollset_poll: The timeout specified has expired (70007)). Its figures are of the repetitions before",
	} {
		s := res.Systems[i]
		if !strings.Contains(s.Lost, want) || !strings.Contains(log.String(), "measured no further: "+s.Lost) ||
			(i == 1) != strings.Contains(s.Lost, " | giving up after 70 requests. Its figures are of the repetitions before") {
			t.Errorf("%s lost: %q; log:\n%s", s.Name, s.Lost, log.String())
		}
		for _, cell := range s.Cells {
			if len(cell.Repetitions) != 1 || cell.Repetitions[0].Round != 0 || cell.Repetitions[0].Failed != 0 {
				t.Errorf("%s at c=%d kept %+v, want round 1's only", s.Name, cell.Level, cell.Repetitions)
			}
		}
	}
	for _, cell := range steady.Cells {
		if len(cell.Repetitions) != 3 {
			t.Errorf("steady at c=%d: %d repetitions, want all 3", cell.Level, len(cell.Repetitions))
		}
	}
	if steady.Lost != "" {
		t.Errorf("steady lost: %s", steady.Lost)
	}
	out := t.TempDir()
	if err := report.Write(out, res); err != nil {
		t.Fatal(err)
	}
	if md, _ := os.ReadFile(filepath.Join(out, "REPORT.md")); !strings.Contains(string(md), "**Measured no further:** process s (command) exited") {
		t.Errorf("REPORT.md does not say why dies was measured no further")
	}
}

// sleepers are "sleep 60" processes that are children of this test.
func sleepers() []int {
	var left []int
	for _, pid := range procstat.WithDescendants([]int{os.Getpid()})[1:] {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.HasPrefix(string(b), "sleep\x0060") {
			if syscall.Kill(pid, 0) == nil {
				left = append(left, pid)
			}
		}
	}
	return left
}

// The TLS series: a system with tls: true is measured over HTTPS with the
// lab's own certificate ({tls_cert} and {tls_key}), at its own levels
// only, and the report sets it beside its plain twin; nginx ssl joins as
// a peer when installed.
func TestTLSSeries(t *testing.T) {
	testutil.NoteSources()
	cfg := parse(t, `requests: 40
levels: [1, 4]
repetitions: 2
systems:
  - name: async
    processes:
      - {name: s, run: serve, port: 8000, args: [--model, async, --quiet]}
    target: s
  - name: async-tls
    tls: true
    plain: async
    levels: [4]
    processes:
      - {name: s, run: serve, port: 8001, args: [--model, async, --quiet, --tls-cert, "{tls_cert}", --tls-key, "{tls_key}"]}
    target: s
  - name: nginx
    peer: true
    processes:
      - {name: s, run: nginx, port: 8002}
    target: s
  - name: nginx-tls
    peer: true
    tls: true
    plain: nginx
    levels: [4]
    processes:
      - {name: s, run: nginx, port: 8003}
    target: s
`)
	res, out := runAndReport(t, Options{Config: cfg})
	md, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
	for _, s := range res.Systems {
		if s.Skipped != "" {
			continue
		}
		tlsOn := strings.HasSuffix(s.Name, "-tls")
		if !tlsOn && len(s.Cells) != 2 || tlsOn && (len(s.Cells) != 1 || s.Cells[0].Level != 4) {
			t.Errorf("%s: cells at %v", s.Name, cellLevels(s))
		}
		for _, r := range s.Runs {
			if r.Failed != 0 || r.Complete != 40 || (r.TLS != nil) != tlsOn {
				t.Errorf("%s at c=%d: %d complete, %d failed, TLS %+v", s.Name, r.Concurrency, r.Complete, r.Failed, r.TLS)
			}
		}
		if tlsOn && !strings.Contains(string(md), "| "+s.Name+" | "+s.Plain+" | 4 | ") {
			t.Errorf("REPORT.md has no cost row for %s:\n%s", s.Name, md)
		}
	}
	if !strings.Contains(string(md), "## What TLS costs") {
		t.Error("REPORT.md lacks the TLS section")
	}
}

func cellLevels(s *report.System) []int {
	var ls []int
	for _, c := range s.Cells {
		ls = append(ls, c.Level)
	}
	return ls
}
