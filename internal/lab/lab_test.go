package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"loadlab/internal/report"
	"loadlab/internal/testutil"
)

var binary string

// TestMain builds loadlab: the lab starts its servers and balancers as
// child processes of that binary, as a user's run does.
func TestMain(m *testing.M) {
	var err error
	if binary, err = testutil.BuildBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestQuickLabEndToEnd(t *testing.T) {
	testutil.NoteSources()
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Quick()
	// The host's own steal would make the repeats, and so the requests
	// the balancer's backends serve, differ from run to run: one repeat,
	// of whichever system runs first, is this test's.
	res, out := runAndReport(t, Options{Config: cfg, ReadCPU: stealOnFirst()})
	if left := testutil.Descendants(os.Getpid()); len(left) > 0 { // the lab's processes are this test's children
		t.Errorf("processes left behind: %v", left)
	}
	md, _ := os.ReadFile(filepath.Join(out, "REPORT.md"))
	text := string(md)
	for _, heading := range []string{"## Tabel Hasil Benchmark async_server.py dengan Load-Balancer", "## Tabel Hasil Benchmark server_thread_http.py"} {
		i := strings.Index(text, heading)
		if i < 0 {
			t.Fatalf("REPORT.md lacks %q", heading)
		}
		rows := labRows(text[i:])
		if len(rows) != 7 {
			t.Fatalf("%s: %d rows, want the seed's 7", heading, len(rows))
		}
		for _, r := range rows[:2] { // c = 1 and 5 ran
			if r[3] != "50" || r[4] != "0" || r[6] == "-" {
				t.Errorf("%s: row %v, want 50 complete and 0 failed", heading, r)
			}
		}
		for _, r := range rows[2:] {
			if r[3] != "-" {
				t.Errorf("%s: row %v should be blank: that level did not run", heading, r)
			}
		}
	}
	var back report.Results
	data, _ := os.ReadFile(filepath.Join(out, "results.json"))
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	lb := back.Systems[0]
	if lb.Name != "async-balancer" || len(lb.Runs) != 2 || !strings.Contains(text, fmt.Sprintf("%.2f", lb.Runs[0].RequestsPerSecond)) {
		t.Errorf("results.json does not agree with the table: %+v", lb.Runs)
	}
	// Every request of the warm-up and of every repetition, round robin,
	// counting the repetitions this system ran again: another system's
	// repeats (back.Repeated counts all) never reached these backends.
	repeated := 0
	for _, c := range lb.Cells {
		repeated += c.Repeated
	}
	var served int64
	want := int64(cfg.Requests * (1 + repeated + len(cfg.Levels)*cfg.Repetitions))
	for _, b := range lb.Backends {
		served += b.Requests
		if d := b.Requests - want/4; d < -1 || d > 1 {
			t.Errorf("backend %s served %d, want a quarter of %d", b.Name, b.Requests, want)
		}
	}
	if len(lb.Backends) != 4 || served < want {
		t.Errorf("backend shares %v, want four adding up to %d", lb.Backends, want)
	}
	for _, name := range []string{"rps", "p50", "p99"} {
		f, err := os.Open(filepath.Join(out, "charts", name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.DecodeConfig(f); err != nil {
			t.Errorf("%s.png: %v", name, err)
		}
		f.Close()
		svg, _ := os.ReadFile(filepath.Join(out, "charts", name+".svg"))
		if !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "</svg>") {
			t.Errorf("%s.svg is not SVG", name)
		}
	}
	page, _ := os.ReadFile(filepath.Join(out, "index.html"))
	if !strings.Contains(string(page), "<svg") || strings.Contains(string(page), "http://") && strings.Contains(string(page), "<script") {
		t.Errorf("index.html is not the self-contained page")
	}
	for _, s := range res.Systems {
		for _, r := range s.Runs {
			if _, err := os.Stat(filepath.Join(out, "runs", fmt.Sprintf("%s-c%d.txt", s.Name, r.Concurrency))); err != nil {
				t.Error(err)
			}
		}
	}
}

// labRows reads the rows of the first markdown table after a heading.
func labRows(md string) [][]string {
	var rows [][]string
	lines := strings.Split(md, "\n")
	inTable := false
	for _, line := range lines[1:] {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		if strings.Contains(line, "No test") || strings.Contains(line, ":---") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	return rows
}

func TestPortInUseIsOneClearError(t *testing.T) {
	testutil.NoteSources()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg, err := Parse([]byte(fmt.Sprintf(`requests: 10
levels: [1]
systems:
  - name: thread
    processes:
      - {name: s, run: serve, port: %d, args: [--model, thread]}
    target: s
`, port)), "test")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Options{Config: cfg, Binary: binary})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d (system thread, process s) is in use", port)) {
		t.Errorf("got %v", err)
	}

	// One port given to two systems' processes: the second is told whose
	// it is, not that "another server" is on it.
	free, err := freePort(map[int]string{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err = Parse([]byte(fmt.Sprintf(`requests: 10
levels: [1]
systems:
  - {name: a, target: s, processes: [{name: s, run: serve, port: %d, args: [--quiet]}]}
  - {name: b, target: s, processes: [{name: s, run: serve, port: %d, args: [--quiet]}]}
`, free, free)), "test")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Options{Config: cfg, Binary: binary})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d (system b, process s) is given to system a, process s too", free)) {
		t.Errorf("got %v", err)
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", free)); err == nil {
		c.Close()
		t.Errorf("system a is still up after the error")
	}
}

func TestConfigErrors(t *testing.T) {
	testutil.NoteSources()
	for _, bad := range []string{
		"requests: 0\nlevels: [1]\nsystems: []\n",
		"requests: 10\nlevels: []\nsystems: []\n",
		"requests: 10\nlevels: [1]\nsystems:\n  - {name: x, target: s, processes: [{name: s, run: apache, port: 80}]}\n",
		"requests: 10\nlevels: [1]\nsystems:\n  - {name: x, target: t, processes: [{name: s, run: serve, port: 80}]}\n",
		"requests: 10\nlevels: [1]\nsystems:\n  - {name: x, target: s, processes: [{name: s, run: balance, port: 80, args: ['{b9}']}]}\n",
		"requests: 10\nlevels: [1]\nunknown_key: 1\n",
		"requests: 10\nlevels: [1, 20]\nsystems:\n  - {name: x, target: s, processes: [{name: s, run: serve, port: 80}]}\n",
		"requests: 10\nlevels: [1]\ntimeout: 1ms\nsystems:\n  - {name: x, target: s, processes: [{name: s, run: serve, port: 80}]}\n",
		"requests: 10\nlevels: [1]\nsystems:\n  - {name: x, levels: [2], target: s, processes: [{name: s, run: serve, port: 80}]}\n",
		"requests: 10\nlevels: [1]\nsystems:\n  - {name: x, plain: y, target: s, processes: [{name: s, run: serve, port: 80}]}\n",
		"requests: 10\nlevels: [1]\nsystems:\n  - {name: x, target: s, processes: [{name: s, run: serve, port: 80}, {name: s, run: serve, port: 81}]}\n",
		"requests: 10\nlevels: [1]\nrepetitions: 100\nsystems:\n  - {name: x, target: s, processes: [{name: s, run: serve, port: 80}]}\n",
		"requests: 10\nlevels: [1]\nrepetitions: -1\nsystems:\n  - {name: x, target: s, processes: [{name: s, run: serve, port: 80}]}\n",
		"requests: 10\nlevels: [1]\ntime_budget: -1s\nsystems:\n  - {name: x, target: s, processes: [{name: s, run: serve, port: 80}]}\n",
	} {
		if _, err := Parse([]byte(bad), "bad.yaml"); err == nil || !strings.HasPrefix(err.Error(), "config bad.yaml: ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestRateAndPathPerSystem(t *testing.T) {
	testutil.NoteSources()
	cfg, err := Parse([]byte(`requests: 40
levels: [2]
repetitions: 1
systems:
  - name: paced
    rate: 200
    path: /santai
    processes:
      - {name: s, run: serve, port: 8000, args: [--model, thread, --quiet]}
    target: s
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Config: cfg, Binary: binary, PortsAuto: true})
	if err != nil {
		t.Fatal(err)
	}
	run := res.Systems[0].Runs[0]
	if run.Complete != 40 || run.Rate != 200 || run.DocumentLength != int64(len("santai saja")) || run.TimeTaken < 0.15 {
		t.Errorf("paced run: complete %d, rate %g, doclen %d, %.3fs", run.Complete, run.Rate, run.DocumentLength, run.TimeTaken)
	}
}
