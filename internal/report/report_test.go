package report

import (
	"fmt"
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

// cellsOf gives runs the cells of one repetition each, a spread of ±10 %.
func cellsOf(runs ...*bench.Summary) []*Cell {
	var cells []*Cell
	for _, r := range runs {
		f := Figures{RequestsPerSecond: r.RequestsPerSecond, P99: r.Total.P99, ServerCPU: 50}
		lo, hi := f, f
		lo.RequestsPerSecond, hi.RequestsPerSecond = 0.9*f.RequestsPerSecond, 1.1*f.RequestsPerSecond
		cells = append(cells, &Cell{Level: r.Concurrency, Median: f, Low: lo, High: hi, Repetitions: []Repetition{{Figures: f}}})
	}
	return cells
}

func results(rps float64) *Results {
	res := &Results{
		Started: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), Requests: 1000, Levels: []int{1, 5}, Path: "/", Repetitions: 1,
		Systems: []*System{
			{Name: "async-balancer", Title: "four async behind a balancer", LabTable: "async_lb",
				Runs: []*bench.Summary{summary(1, rps), summary(5, 2*rps)}, Backends: []BackendShare{{"b1", 1000}, {"b2", 1000}}},
			{Name: "thread", Title: "thread", LabTable: "thread", Runs: []*bench.Summary{summary(1, rps)}},
			{Name: "nginx", Title: "nginx", Peer: true, Skipped: "nginx is not installed"},
		},
	}
	for _, s := range res.Systems {
		s.Cells = cellsOf(s.Runs...)
	}
	return res
}

// "Faster" and "slower" only when the spreads do not overlap; otherwise
// "within noise", in Verdict and in the --compare table.
func TestWithinNoise(t *testing.T) {
	cell := func(lo, med, hi float64) *Cell {
		return &Cell{Low: Figures{RequestsPerSecond: lo}, Median: Figures{RequestsPerSecond: med}, High: Figures{RequestsPerSecond: hi}}
	}
	for _, c := range []struct {
		a, b *Cell
		want string
	}{
		{cell(90, 100, 110), cell(105, 115, 125), "within noise"},
		{cell(120, 130, 140), cell(90, 100, 110), "faster"},
		{cell(50, 60, 70), cell(90, 100, 110), "slower"},
		{cell(100, 100, 100), cell(100, 100, 100), "within noise"},
	} {
		if got := Verdict(c.a, c.b, rps, true); got != c.want {
			t.Errorf("%+v against %+v: %q, want %q", c.a, c.b, got, c.want)
		}
	}
	dir := t.TempDir()
	res := results(4218)
	res.Baseline, res.BaselineName = results(4000), "old/results.json" // 4218 ± 10 % overlaps 4000 ± 10 %
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if !strings.Contains(string(md), "| async-balancer | 1 | 4000 (3600–4400) | 4218 (3796–4640) | +5.4% | within noise |") {
		t.Errorf("the comparison does not say within noise:\n%s", md)
	}

	// Server ÷ client CPU gets its own verdict: cheaper only when the
	// spreads do not overlap.
	perClient := func(res *Results, c int, lo, med, hi float64) {
		cell := res.Systems[0].cell(c)
		cell.Low.ServerPerClientCPU, cell.Median.ServerPerClientCPU, cell.High.ServerPerClientCPU = lo, med, hi
	}
	perClient(res.Baseline, 1, 0.60, 0.65, 0.70)
	perClient(res, 1, 0.50, 0.52, 0.55)
	perClient(res.Baseline, 5, 0.60, 0.65, 0.70)
	perClient(res, 5, 0.62, 0.66, 0.72)
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	md, _ = os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if strings.Contains(string(md), "Not like for like") {
		t.Error("runs of the same size called not like for like")
	}
	// The generator's own CPU per request, the same work in both runs,
	// shows the machine's change of speed; the multiples of a reference
	// both runs share sit beside req/s.
	for run, cpu := range map[*Results]float64{res.Baseline: 40, res: 48} {
		for _, s := range run.Systems {
			for _, c := range s.Cells {
				c.Median.ClientCPU = cpu
			}
		}
		run.Reference = "thread"
		run.RelateToReference()
	}
	// A baseline from before multiples were taken within rounds has no
	// spread for them.
	old := res.Baseline.Systems[0].cell(1)
	old.PerReferenceLow, old.PerReferenceHigh = 0, 0
	res.Requests = 50
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	md, _ = os.ReadFile(filepath.Join(dir, "REPORT.md"))
	for _, want := range []string{
		"**Not like for like:** the baseline ran 1000 requests per repetition and this run 50",
		"| +5.4% | within noise | 1.00 → 1.00 (1.00–1.00) | 0.65 (0.60–0.70) → 0.52 (0.50–0.55) | cheaper |",
		"| change | verdict | × thread then → now |",
		"its CPU per request moved by +20 % (median over the cells in both): **the machine ran at another speed**",
		"| 0.65 (0.60–0.70) → 0.66 (0.62–0.72) | within noise |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("the comparison lacks %q:\n%s", want, md)
		}
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
		"| 1 | 1 | 42.18 | 4218 (3796–4640) | 100× (90–110×) | 0 | 0 |",
		"| 3 | 10 | - | - | - | - | - |",
		"| 2 | 5 | 64.29 | 8436 (7592–9280) | 131× (118–144×) | 0 | 0 |",
		"| 1 | 1 | 5.04 | 4218 (3796–4640) | 837× (753–921×) | 0 | 0 |",
		"Skipped: nginx is not installed.",
		"| b1 | 1000 |",
		"## Change against old/results.json",
		"| async-balancer | 1 | 2109 (1898–2320) | 4218 (3796–4640) | +100.0% | faster |",
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

// A report written where an earlier one was leaves nothing of the earlier
// run's that it did not write itself: no run file of a system it did not
// measure, no screenshot it did not take; what is not the report's stays.
func TestReportReplacesAnEarlierOne(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "screenshots"), 0o755)
	for _, f := range []string{"runs/gone-c1.txt", "charts/tls.svg", "screenshots/old.png", "screenshots/page.png", "notes.txt"} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), []byte("earlier"), 0o644)
	}
	res := results(4218)
	res.Screenshots = []string{"page.png"}
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{
		"runs/gone-c1.txt": false, "charts/tls.svg": false, "screenshots/old.png": false,
		"screenshots/page.png": true, "notes.txt": true, "runs/thread-c1.txt": true, "charts/rps.svg": true,
	} {
		if _, err := os.Stat(filepath.Join(dir, f)); (err == nil) != want {
			t.Errorf("%s: there %v, want %v", f, err == nil, want)
		}
	}
}

// The machine's speed, round by round, comes from the generator's CPU per
// request against its median in each cell.
func TestRoundCost(t *testing.T) {
	res := results(4000)
	for _, s := range res.Systems {
		for _, c := range s.Cells {
			c.Median.ClientCPU = 50
			c.Repetitions = []Repetition{{Round: 0}, {Round: 1}, {Round: 2}}
			for i, cpu := range []float64{50, 60, 45} { // round 1 a fifth slower, round 2 a tenth faster
				c.Repetitions[i].ClientCPU = cpu
			}
		}
	}
	if got := fmt.Sprint(RoundCost(res)); got != "[1 1.2 0.9]" {
		t.Errorf("round cost %s, want [1 1.2 0.9]", got)
	}
	dir := t.TempDir()
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if !strings.Contains(string(md), "shows the machine's speed: 1.00 1.20 0.90 (") ||
		!strings.Contains(string(md), "**The machine's speed moved by 33 % during this run:**") {
		t.Errorf("REPORT.md does not show the rounds' speed and its move:\n%s", md)
	}
	// Within ±10 %, no warning.
	for _, s := range res.Systems {
		for _, c := range s.Cells {
			for i, cpu := range []float64{50, 53, 49} {
				c.Repetitions[i].ClientCPU = cpu
			}
		}
	}
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	md, _ = os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if !strings.Contains(string(md), "shows the machine's speed: 1.00 1.06 0.98 (") || strings.Contains(string(md), "speed moved by") {
		t.Errorf("a steady run's speed line:\n%s", md)
	}
}

// A multiple of the reference is taken within each round: the machine
// slowed by half in round 1, which moves both systems' medians, not the
// multiples. Every round must agree before a system is called faster.
func TestPerReferenceWithinRounds(t *testing.T) {
	reps := func(rounds []int, rps ...float64) []Repetition {
		var out []Repetition
		for i, r := range rps {
			out = append(out, Repetition{Round: rounds[i], Figures: Figures{RequestsPerSecond: r}})
		}
		return out
	}
	ref := &Cell{Level: 1, Repetitions: reps([]int{0, 0, 1, 1, 2, 2}, 100, 100, 50, 50, 90, 110)}
	fast := &Cell{Level: 1, Repetitions: reps([]int{0, 1, 2}, 120, 66, 110)}  // 1.2, 1.32, 1.1
	mixed := &Cell{Level: 1, Repetitions: reps([]int{0, 1, 2}, 120, 45, 100)} // 1.2, 0.9, 1.0
	lone := &Cell{Level: 1, Repetitions: reps([]int{3}, 500)}                 // no reference in round 3
	res := &Results{Reference: "r", Systems: []*System{
		{Name: "r", Cells: []*Cell{ref}}, {Name: "fast", Cells: []*Cell{fast}},
		{Name: "mixed", Cells: []*Cell{mixed}}, {Name: "lone", Cells: []*Cell{lone}},
	}}
	res.RelateToReference()
	for _, tc := range []struct {
		c                 *Cell
		median, low, high float64
		verdict           string
	}{
		{fast, 1.2, 1.1, 1.32, "faster"},
		{mixed, 1.0, 0.9, 1.2, "within noise"},
		{ref, 0, 0, 0, ""},
		{lone, 0, 0, 0, ""},
	} {
		got := fmt.Sprintf("%.4g %.4g %.4g %s", tc.c.PerReference, tc.c.PerReferenceLow, tc.c.PerReferenceHigh, tc.c.PerReferenceVerdict)
		if want := fmt.Sprintf("%.4g %.4g %.4g %s", tc.median, tc.low, tc.high, tc.verdict); got != want {
			t.Errorf("multiple %s, want %s", got, want)
		}
	}
}

// Of an even number of repetitions no run has the median req/s: the lab
// tables say which of the two middle runs they show.
func TestEvenRepetitionsSayWhichRunTheTableShows(t *testing.T) {
	const note = "the slower of the two in the middle"
	for _, n := range []int{2, 3, 12, 13} {
		res := results(4218)
		res.Repetitions = n
		var md strings.Builder
		if err := writeMarkdown(&md, res, nil); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(md.String(), note); got != 2*(1-n%2) {
			t.Errorf("%d repetitions: the note %d times, want it under each lab table only when even", n, got)
		}
	}
}

func TestPlainNumber(t *testing.T) {
	for label, want := range map[string]string{
		"75000.00": "75,000",
		"0.50":     "0.5",
		"600":      "600",
		"2500.0":   "2500",
		"125000":   "125,000",
		"1234567":  "1,234,567",
		"-25000.0": "-25,000",
		"12.25":    "12.25",
		"1.5e+06":  "1.5e+06",
	} {
		if got := plainNumber(label); got != want {
			t.Errorf("plainNumber(%q) = %q, want %q", label, got, want)
		}
	}
}

// Strings the report did not write itself (a title from the
// configuration, the last lines a process printed, what listens on a
// port, a backend's name, the configuration) are shown as text in
// index.html, never as markup: it keeps the markdown's raw HTML for its
// own <details>.
func TestReportShowsOthersStringsAsText(t *testing.T) {
	dir := t.TempDir()
	res := results(4218)
	a := res.Systems[0]
	a.Title = `<img src=x onerror="alert(1)"> [click](javascript:alert(2)) | a\b`
	a.Lost = "its last lines:\n<script>alert(3)</script>"
	a.URL, a.CPUOf = "http://127.0.0.1:1/<b>", "pid 7 (<svg onload=1>)"
	a.Backends[0].Name = "<i>b1</i>"
	res.ConfigYAML = "systems:\n  - title: |\n      ```\n      <script>alert(4)</script>\n"
	res.Baseline, res.BaselineName = results(2109), "<u>old</u>.json"
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	for _, markup := range []string{"<img src=x", "<script>", "<svg onload", "<i>b1", "<b>", "<u>old", `href="javascript:`} {
		if strings.Contains(string(page), markup) {
			t.Errorf("index.html holds %q as markup", markup)
		}
	}
	for _, shown := range []string{"&lt;img src=x", "[click](javascript:alert(2))", "&lt;script&gt;alert(3)", "&lt;script&gt;alert(4)", "a\\b"} {
		if !strings.Contains(string(page), shown) {
			t.Errorf("index.html does not show %q", shown)
		}
	}
}
