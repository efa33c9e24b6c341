package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"loadlab/internal/bench"
)

func summary(c int, rps float64) *bench.Summary {
	s := &bench.Summary{Concurrency: c, Complete: 1000, TimeTaken: 1000 / rps, RequestsPerSecond: rps,
		TimePerRequestAll: 1000 / rps, TotalTransferred: 190000, TransferRate: 190000 / 1024 / (1000 / rps)}
	s.Total.P99 = 1.5
	return s
}

func results(rps float64) *Results {
	return &Results{
		Started: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), Requests: 1000, Levels: []int{1, 5}, Path: "/",
		Systems: []*System{
			{Name: "async-balancer", Title: "four async behind a balancer", LabTable: "async_lb",
				Runs: []*bench.Summary{summary(1, rps), summary(5, 2*rps)}, Backends: []BackendShare{{"b1", 1000}, {"b2", 1000}}},
			{Name: "thread", Title: "thread", LabTable: "thread", Runs: []*bench.Summary{summary(1, rps)}},
			{Name: "nginx", Title: "nginx", Peer: true, Skipped: "nginx is not installed"},
		},
	}
}

func TestReportFromKnownResults(t *testing.T) {
	dir := t.TempDir()
	res := results(4218)
	res.Baseline, res.BaselineName = results(2109), "old/results.json"
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	text := string(md)
	for _, want := range []string{
		"|    1    |         1         |             0.237             |       1000       |        0       |           190000          |       4218.00      |         0.237         |",
		"|    3    |         10        |               -               |         -        |",
		"| 1 | 1 | 42.18 | 4218.00 | 100× | 0 | 0 |",
		"| 3 | 10 | - | - | - | - | - |",
		"| 2 | 5 | 64.29 | 8436.00 | 131× | 0 | 0 |",
		"| 1 | 1 | 5.04 | 4218.00 | 837× | 0 | 0 |",
		"Skipped: nginx is not installed.",
		"| b1 | 1000 |",
		"## Change against old/results.json",
		"| async-balancer | 1 | 2109.00 | 4218.00 | +100.0% |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("REPORT.md lacks %q", want)
		}
	}
	for _, f := range []string{"index.html", "results.json", "results.csv", "charts/rps.svg", "charts/p99.png", "runs/async-balancer-c5.txt"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	back, err := LoadResults(filepath.Join(dir, "results.json"))
	if err != nil || len(back.Systems) != 3 || back.Systems[0].Runs[1].RequestsPerSecond != 8436 {
		t.Errorf("results.json: %v %+v", err, back)
	}
	if _, err := LoadResults(filepath.Join(dir, "REPORT.md")); err == nil || !strings.Contains(err.Error(), "not a loadlab results.json") {
		t.Errorf("a non-JSON baseline: %v", err)
	}
}
