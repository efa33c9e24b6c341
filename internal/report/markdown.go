package report

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"loadlab/internal/bench"
)

// seedRow is one filled row of the seed's tables (the original lab's
// figures); rows the seed left blank are absent.
type seedRow struct {
	timeTaken, rps, timePerReq, rate float64
	complete, failed, total          int64
}

// seed holds the write-up's tables: async_server.py behind its balancer,
// and server_thread_http.py, by concurrency level.
var seed = map[string]map[int]seedRow{
	"async_lb": {
		1: {23.710, 42.18, 23.710, 5.02, 1000, 0, 122000},
		5: {15.554, 64.29, 15.554, 7.66, 1000, 0, 122000},
	},
	"thread": {
		1: {198.237, 5.04, 198.237, 0.60, 1000, 0, 122000},
	},
}

// labTitles are the seed's headings for its two tables.
var labTitles = map[string]string{
	"async_lb": "Tabel Hasil Benchmark async_server.py dengan Load-Balancer",
	"thread":   "Tabel Hasil Benchmark server_thread_http.py",
}

func writeMarkdown(w io.Writer, res *Results, charts []chart) error {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# loadlab lab report\n\n")
	if res.Interrupted {
		p("**Interrupted (Ctrl-C): this report holds only the repetitions that finished.**\n\n")
	}
	p("The network-programming lab's experiment (Tugas Pemrograman Jaringan 10), run by `loadlab lab` on %s in %s: ",
		res.Started.UTC().Format("2006-01-02 15:04 MST"), res.Duration.Round(1e9))
	p("`loadlab bench -n %d -c C` (ab-compatible: the same requests and the same report as ApacheBench's `ab -n %d -c C`; ab itself did not run) for C = %s against `%s`, on every system below. ",
		res.Requests, res.Requests, joinInts(res.Levels), res.Path)
	p("Every system was started first and kept up; each cell (system × level) ran %d times, in rounds whose order of systems rotates (`rounds` in results.json), after one warm-up run per system that is not counted", res.Repetitions)
	if res.TimeBudget > 0 {
		p(" (as many rounds as were expected to end within the run's time budget, %v)", res.TimeBudget)
	}
	for _, s := range res.Systems {
		if repetitionCounts(s, res.Repetitions) != "" {
			p(" (a system that ran more than once a round has more, as its section says)")
			break
		}
	}
	p(". ")
	p("Tables give the median and the spread (min–max) over the repetitions; where two spreads overlap, the difference is called *within noise*.\n\n")
	p("\"Time per request\" in the lab tables is ab's \"mean, across all concurrent requests\": the run's time divided by its requests, in ms")
	if res.Requests == 1000 {
		p(" — at 1,000 requests that is \"Time taken\" again (s per 1,000 requests is ms per request), so the two columns show the same digits")
	}
	p(". ab's other figure, the mean per concurrent client, is C times larger; the tables under *Every system* give it.\n\n")
	for _, c := range charts {
		if c.name == "rps" {
			p("![%s](charts/%s.png)\n\n", c.title, c.name)
		}
	}
	for _, table := range []string{"async_lb", "thread"} {
		for _, s := range res.Systems {
			if s.LabTable != table {
				continue
			}
			p("## %s\n\n%s\n\n", labTitles[table], text(s.Title))
			p("Each row is one real run: the repetition with the median requests per second, so its figures agree with each other")
			if res.Repetitions%2 == 0 {
				p(" (of an even number of repetitions, the slower of the two in the middle: the median below is their mean)")
			}
			p(".\n\n")
			writeLabTable(w, s, res.Levels)
			p("\nThe seed's figures beside ours (requests per second, our median and spread; a blank seed row is a run that hung):\n\n")
			writeSeedComparison(w, s, table, res.Levels)
			p("\n")
		}
	}
	writeAgainstReference(w, res)
	p("## Every system\n\nMedian (min–max) over the repetitions. *Server CPU* is the CPU time the system's own processes spent per request (user and system, from the scheduler's counts in /proc), a steadier figure than req/s on a shared machine; *client CPU* is the load generator's. *Server ÷ client CPU* divides the two within each repetition: on a virtual machine whose host slows its CPUs (often without any steal showing), both slow alike, so this ratio is the figure to compare between runs, where microseconds move with the host. A cell is *client-bound* when the generator used most of a core: its req/s may be the client's limit.\n\n")
	for _, s := range res.Systems {
		kind := ""
		if s.Peer {
			kind = " (peer)"
		}
		p("### %s%s\n\n%s\n\n", s.Name, kind, text(s.Title))
		if s.Skipped != "" {
			p("Skipped: %s.\n\n", text(s.Skipped))
			continue
		}
		if s.Lost != "" {
			p("**Measured no further:** %s.\n\n", text(s.Lost))
		}
		if s.URL != "" && s.CPUOf != "" {
			p("Already running at %s; its server CPU is that of what was found listening on its port: %s.\n\n", text(s.URL), text(s.CPUOf))
		} else if s.URL != "" {
			p("Already running at %s; no server CPU: no other process of this machine that loadlab may read was found listening on its port.\n\n", text(s.URL))
		}
		if non2xx, answers := s.non2xx(); non2xx > 0 {
			p("**Not 2xx:** %d of its %d answers had a status other than 2xx (an error page, a redirect): its figures are of those answers, not of the page asked for. Check its path or url; `runs/` has each run's report.\n\n", non2xx, answers)
		}
		if counts := repetitionCounts(s, res.Repetitions); counts != "" {
			p("It ran more than once a round: %s.\n\n", counts)
		}
		writeSpreadTable(w, s)
		p("\n")
		if len(s.Backends) > 0 {
			p("Which backend served how many (from the balancer's admin API, over all levels):\n\n| backend | served |\n|---|---|\n")
			for _, b := range s.Backends {
				p("| %s | %d |\n", text(b.Name), b.Requests)
			}
			p("\n")
		}
	}
	writeHandshakeCost(w, res)
	if res.Baseline != nil {
		writeComparison(w, res)
	}
	p("## Charts\n\nThe requests-per-second chart is at the top; each is also in [charts/](charts/) as SVG.\n\n")
	for _, c := range charts {
		if c.name != "rps" {
			p("### %s\n\n![%s](charts/%s.png)\n\n", c.title, c.title, c.name)
		}
	}
	if len(res.Screenshots) > 0 {
		p("## Screenshots\n\nTaken with headless Chromium during the run: the lab's page through the balancer, the balancer's stats page, and this report's index.html.\n\n")
		for _, name := range res.Screenshots {
			p("![%s](screenshots/%s)\n\n", name, name)
		}
	}
	m := res.Machine
	p("## The machine\n\n| | |\n|---|---|\n| CPU | %s |\n| cores | %d |\n| kernel | %s |\n| OS | %s |\n| Go | %s |\n| loadlab | %s |\n\n",
		m.CPU, m.Cores, m.Kernel, m.OS, m.Go, m.Loadlab)
	p("CPU steal (time the hypervisor gave to others) was read from /proc/stat around every repetition: the most any kept repetition saw was %.1f %%; %d repetitions saw more than %.0f %% and were run again.\n\n", 100*res.StealMax, res.Repeated, 100*res.MaxSteal)
	if cost := RoundCost(res); len(cost) > 1 {
		var texts []string
		for _, c := range cost {
			texts = append(texts, fmt.Sprintf("%.2f", c))
		}
		p("Steal does not show every slowdown: some hosts slow a guest's CPUs without it. The load generator does the same work per request all run long, so its CPU per request, round by round against its median in each cell, shows the machine's speed: %s (1.00 is the run's usual speed; 1.20 would be a round in which the same work took a fifth longer). Req/s and CPU microseconds move with it; ratios taken within a round (server ÷ client CPU, one system against another) much less.", strings.Join(texts, " "))
		// Beyond the ±10 % within which two runs are said to agree, the
		// run's own medians mix speeds.
		if moved := slices.Max(cost)/slices.Min(cost) - 1; moved > 0.10 {
			hold := "server ÷ client CPU"
			if res.Reference != "" {
				hold += " and the multiples of " + res.Reference
			}
			p(" **The machine's speed moved by %.0f %% during this run:** its CPU microseconds mix rounds run at different speeds, and another run may not reproduce them; hold %s against other runs.", 100*moved, hold)
		}
		p("\n\n")
	}
	p("The median repetition of every cell has its ab-style text in [runs/](runs/); every figure of every repetition is in [results.json](results.json), and the median runs in [results.csv](results.csv).\n\n")
	fence := codeFence(res.ConfigYAML)
	p("## The configuration\n\n<details><summary>Repeat this run with <code>loadlab lab --config</code> on this file</summary>\n\n%syaml\n%s%s\n\n</details>\n", fence, res.ConfigYAML, fence)
	return nil
}

// text makes a string the report did not write itself (a title from the
// configuration, the last lines a process printed, what listens on a
// port) inert in markdown: index.html is rendered from the markdown with
// its raw HTML kept (the report's own <details>), so a title holding
// <script>, or [a link](javascript:…), would be live on the page. HTML
// cannot start without <, links not without [, a table cell not end
// without |; a newline would end the paragraph.
func text(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '<':
			b.WriteString("&lt;")
		case '\\', '[', ']', '|', '`':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\n', '\r':
			b.WriteByte(' ')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// codeFence is a fence for a code block holding body: longer than any run
// of backticks in it, so that nothing in it can close the block.
func codeFence(body string) string {
	longest, run := 0, 0
	for _, c := range body {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// seedLevels are the seed's seven concurrency levels.
var seedLevels = []int{1, 5, 10, 30, 50, 75, 100}

// labLevels are the rows of a lab table: the seed's levels and any other
// the experiment ran, in order.
func labLevels(levels []int) []int {
	all := append(slices.Clone(seedLevels), levels...)
	slices.Sort(all)
	return slices.Compact(all)
}

// writeLabTable writes the seed's table for s, a row per level; a level
// not run stays blank, as the seed's did.
func writeLabTable(w io.Writer, s *System, levels []int) {
	var rows [][]string
	for i, c := range labLevels(levels) {
		if run := s.run(c); run != nil {
			rows = append(rows, bench.LabRow(i+1, run))
		} else {
			rows = append(rows, bench.BlankLabRow(i+1, c))
		}
	}
	bench.WriteLabTable(w, rows)
}

func writeSeedComparison(w io.Writer, s *System, table string, levels []int) {
	fmt.Fprintln(w, "| No test | Concurrency level | seed (req/s) | loadlab (req/s) | speed-up | seed failed | loadlab failed |")
	fmt.Fprintln(w, "|:-------:|:-----------------:|:------------:|:---------------:|:--------:|:-----------:|:--------------:|")
	for i, c := range labLevels(levels) {
		ours, seedRun := "-", "-"
		speedup, seedFailed, ourFailed := "-", "-", "-"
		run, cell := s.run(c), s.cell(c)
		if run != nil {
			ours, ourFailed = fmt.Sprintf("%.2f", run.RequestsPerSecond), fmt.Sprint(run.Failed)
		}
		if cell != nil {
			ours = spreadText(cell.Median.RequestsPerSecond, cell.Low.RequestsPerSecond, cell.High.RequestsPerSecond, "%.0f")
		}
		if sr, ok := seed[table][c]; ok {
			seedRun, seedFailed = fmt.Sprintf("%.2f", sr.rps), fmt.Sprint(sr.failed)
			switch {
			case cell != nil && sr.rps >= cell.Low.RequestsPerSecond && sr.rps <= cell.High.RequestsPerSecond:
				speedup = "within noise"
			case cell != nil:
				speedup = fmt.Sprintf("%.0f× (%.0f–%.0f×)", cell.Median.RequestsPerSecond/sr.rps, cell.Low.RequestsPerSecond/sr.rps, cell.High.RequestsPerSecond/sr.rps)
			case run != nil:
				speedup = fmt.Sprintf("%.0f×", run.RequestsPerSecond/sr.rps)
			}
		} else if run != nil {
			speedup = "seed: no result"
		}
		fmt.Fprintf(w, "| %d | %d | %s | %s | %s | %s | %s |\n", i+1, c, seedRun, ours, speedup, seedFailed, ourFailed)
	}
}

// repetitionCounts says how many repetitions each of s's cells has, when
// any has more than the run's repetitions (a system that ran more than
// once a round); "" otherwise.
func repetitionCounts(s *System, repetitions int) string {
	var levels []string
	var counts []int
	other := false
	for _, c := range s.Cells {
		n := len(c.Repetitions)
		other = other || n > repetitions
		if len(counts) > 0 && counts[len(counts)-1] == n {
			levels[len(levels)-1] += fmt.Sprintf(", %d", c.Level)
			continue
		}
		counts = append(counts, n)
		levels = append(levels, fmt.Sprint(c.Level))
	}
	if !other {
		return ""
	}
	var parts []string
	for i, n := range counts {
		parts = append(parts, fmt.Sprintf("%d repetitions a cell at c = %s", n, levels[i]))
	}
	return strings.Join(parts, "; ")
}

// writeAgainstReference writes every system's req/s as a multiple of the
// reference's at the same level, a row per system.
func writeAgainstReference(w io.Writer, res *Results) {
	ref := res.system(res.Reference)
	if ref == nil || len(ref.Cells) == 0 {
		return
	}
	fmt.Fprintf(w, "## Against %s\n\n", ref.Name)
	fmt.Fprintf(w, "Each system's requests per second as a multiple of %s's at the same level, taken within each round: every repetition divided by %s's in the same round. In a round the systems of a level run moments apart, so the machine's change of speed, which moves req/s from one round and one run to the next, drops out of these multiples: they are the figures to compare between runs and machines. ", ref.Name, ref.Name)
	if counts := repetitionCounts(ref, res.Repetitions); counts != "" {
		fmt.Fprintf(w, "Every one divides by %s, so %s ran more than once a round, spread through it (its mean in the round is the divisor): %s. ", ref.Name, ref.Name, counts)
	}
	fmt.Fprintf(w, "The median multiple, and in brackets the smallest and largest over the rounds. A system is called faster or slower only when every round says so (the whole spread lies on one side of 1); otherwise *within noise*. TLS systems are against the plain %s: what a handshake per request costs.\n\n", ref.Name)
	fmt.Fprint(w, "| system |")
	for _, c := range res.Levels {
		fmt.Fprintf(w, " c=%d |", c)
	}
	fmt.Fprint(w, "\n|---|")
	for range res.Levels {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, s := range res.Systems {
		if len(s.Cells) == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s |", s.Name)
		for _, c := range res.Levels {
			cell := s.cell(c)
			switch {
			case s == ref:
				fmt.Fprint(w, " 1 |")
			case cell == nil || cell.PerReference == 0:
				fmt.Fprint(w, " - |")
			default:
				fmt.Fprintf(w, " %.2f× (%.2f–%.2f), %s |", cell.PerReference, cell.PerReferenceLow, cell.PerReferenceHigh, cell.PerReferenceVerdict)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// writeSpreadTable writes a system's cells: median and spread of each
// figure, failures, repetitions run again, and whether it is client-bound.
func writeSpreadTable(w io.Writer, s *System) {
	fmt.Fprintln(w, "| concurrency | req/s | time per request (ms) | p50 (ms) | p99 (ms) | server CPU (µs/req) | client CPU (µs/req) | server ÷ client CPU | failed | repeated | note |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, c := range s.Cells {
		var failed, non2xx int64
		for _, r := range c.Repetitions {
			failed += r.Failed
			non2xx += r.Non2xx
		}
		var notes []string
		if c.ClientBound {
			notes = append(notes, "client-bound")
		}
		if non2xx > 0 {
			notes = append(notes, fmt.Sprintf("%d not 2xx", non2xx))
		}
		note := strings.Join(notes, "; ")
		server, perClient := "-", "-"
		if c.Median.ServerCPU > 0 {
			server = spreadText(c.Median.ServerCPU, c.Low.ServerCPU, c.High.ServerCPU, "%.1f")
			perClient = spreadText(c.Median.ServerPerClientCPU, c.Low.ServerPerClientCPU, c.High.ServerPerClientCPU, "%.2f")
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s |\n", c.Level,
			spreadText(c.Median.RequestsPerSecond, c.Low.RequestsPerSecond, c.High.RequestsPerSecond, "%.0f"),
			spreadText(c.Median.TimePerRequest, c.Low.TimePerRequest, c.High.TimePerRequest, "%.3f"),
			spreadText(c.Median.P50, c.Low.P50, c.High.P50, "%.3f"),
			spreadText(c.Median.P99, c.Low.P99, c.High.P99, "%.3f"),
			server,
			spreadText(c.Median.ClientCPU, c.Low.ClientCPU, c.High.ClientCPU, "%.1f"),
			perClient, failed, c.Repeated, note)
	}
}

// writeComparison adds, for every system and level in both runs, the
// change in requests per second against the baseline run, called faster
// or slower only when the two spreads do not overlap.
func writeComparison(w io.Writer, res *Results) {
	fmt.Fprintf(w, "## Change against %s\n\nBaseline run on %s. Medians, with the spread (min–max) where a run has repetitions; a change is called faster or slower only when the spreads do not overlap.\n\n", text(res.BaselineName), res.Baseline.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintln(w, "Server ÷ client CPU is the server's CPU per request over the generator's in the same repetitions: the figure to hold between runs when the host's speed may have moved between them (req/s and microseconds move with it).")
	fmt.Fprintln(w)
	if drift, ok := GeneratorDrift(res.Baseline, res); ok {
		fmt.Fprintf(w, "The load generator did the same work per request in both runs, and its CPU per request moved by %+.0f %% (median over the cells in both)", 100*drift)
		if math.Abs(drift) > 0.05 {
			fmt.Fprint(w, ": **the machine ran at another speed**, and req/s and CPU microseconds moved with it; compare server ÷ client CPU and the multiples of the reference")
		}
		fmt.Fprint(w, ".\n\n")
	}
	if res.Baseline.Requests != res.Requests {
		fmt.Fprintf(w, "**Not like for like:** the baseline ran %d requests per repetition and this run %d; each repetition's fixed costs (connections opened, the generator's start) weigh differently per request, so compare runs of the same size.\n\n", res.Baseline.Requests, res.Requests)
	}
	// The multiples compare only when both runs had the same reference.
	related := res.Reference != "" && res.Reference == res.Baseline.Reference
	reference := "the reference"
	if related {
		reference = res.Reference
	}
	fmt.Fprintf(w, "| system | concurrency | req/s then | req/s now | change | verdict | × %s then → now | server ÷ client CPU then → now | CPU verdict | p99 then (ms) | p99 now (ms) | failed then → now |\n", reference)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|")
	for _, s := range res.Systems {
		old := res.Baseline.system(s.Name)
		if old == nil {
			continue
		}
		for _, run := range s.Runs {
			then := old.run(run.Concurrency)
			if then == nil || then.RequestsPerSecond == 0 {
				continue
			}
			nowCell, thenCell := s.cell(run.Concurrency), old.cell(run.Concurrency)
			thenText, nowText, verdict := fmt.Sprintf("%.2f", then.RequestsPerSecond), fmt.Sprintf("%.2f", run.RequestsPerSecond), "no spread in the baseline"
			cpuText, cpuVerdict, perReference := "-", "-", "-"
			change := (run.RequestsPerSecond/then.RequestsPerSecond - 1) * 100
			if nowCell != nil {
				nowText = spreadText(nowCell.Median.RequestsPerSecond, nowCell.Low.RequestsPerSecond, nowCell.High.RequestsPerSecond, "%.0f")
			}
			if thenCell != nil && nowCell != nil {
				thenText = spreadText(thenCell.Median.RequestsPerSecond, thenCell.Low.RequestsPerSecond, thenCell.High.RequestsPerSecond, "%.0f")
				change = (nowCell.Median.RequestsPerSecond/thenCell.Median.RequestsPerSecond - 1) * 100
				verdict = Verdict(nowCell, thenCell, rps, true)
				if related && thenCell.PerReference > 0 && nowCell.PerReference > 0 {
					perReference = multipleText(thenCell) + " → " + multipleText(nowCell)
				}
				if thenCell.Median.ServerPerClientCPU > 0 && nowCell.Median.ServerPerClientCPU > 0 {
					cpuText = spreadText(thenCell.Median.ServerPerClientCPU, thenCell.Low.ServerPerClientCPU, thenCell.High.ServerPerClientCPU, "%.2f") + " → " +
						spreadText(nowCell.Median.ServerPerClientCPU, nowCell.Low.ServerPerClientCPU, nowCell.High.ServerPerClientCPU, "%.2f")
					cpuVerdict = map[string]string{"faster": "cheaper", "slower": "costlier"}[Verdict(nowCell, thenCell, perClientCPU, false)]
					if cpuVerdict == "" {
						cpuVerdict = "within noise"
					}
				}
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %+.1f%% | %s | %s | %s | %s | %.3f | %.3f | %d → %d |\n", s.Name, run.Concurrency,
				thenText, nowText, change, verdict, perReference, cpuText, cpuVerdict, then.Total.P99, run.Total.P99, then.Failed, run.Failed)
		}
	}
	fmt.Fprintln(w)
}

// multipleText is a cell's multiple of the reference, with its spread
// over the rounds when it has one (a results.json from before multiples
// were taken within rounds has none).
func multipleText(c *Cell) string {
	if c.PerReferenceLow == 0 {
		return fmt.Sprintf("%.2f", c.PerReference)
	}
	return spreadText(c.PerReference, c.PerReferenceLow, c.PerReferenceHigh, "%.2f")
}

// writeHandshakeCost sets every TLS system beside the system that is the
// same without TLS, at the levels both ran: what TLS costs, in requests
// per second and in the server's CPU time per request. Without
// keep-alive every request makes a full handshake (TLS 1.3, ECDSA P-256,
// X25519), so the CPU difference is the price of one.
func writeHandshakeCost(w io.Writer, res *Results) {
	var rows []string
	for _, s := range res.Systems {
		plain := res.system(s.Plain)
		if !s.TLS || plain == nil || s.Skipped != "" || plain.Skipped != "" {
			continue
		}
		for _, c := range s.Cells {
			pc := plain.cell(c.Level)
			if pc == nil || pc.Median.RequestsPerSecond == 0 {
				continue
			}
			cpu, cost := "-", "-"
			if c.Median.ServerCPU > 0 && pc.Median.ServerCPU > 0 {
				cpu = spreadText(pc.Median.ServerCPU, pc.Low.ServerCPU, pc.High.ServerCPU, "%.0f") + " → " +
					spreadText(c.Median.ServerCPU, c.Low.ServerCPU, c.High.ServerCPU, "%.0f")
				cost = fmt.Sprintf("%+.0f", c.Median.ServerCPU-pc.Median.ServerCPU)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %d | %s → %s | %.2f | %s | %s |", s.Name, plain.Name, c.Level,
				spreadText(pc.Median.RequestsPerSecond, pc.Low.RequestsPerSecond, pc.High.RequestsPerSecond, "%.0f"),
				spreadText(c.Median.RequestsPerSecond, c.Low.RequestsPerSecond, c.High.RequestsPerSecond, "%.0f"),
				c.Median.RequestsPerSecond/pc.Median.RequestsPerSecond, cpu, cost))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "## What TLS costs")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each HTTPS system beside the same system over plain HTTP, at the levels both ran: medians (min–max). Without keep-alive every request makes a full TLS handshake (TLS 1.3, ECDSA P-256, X25519, the certificate the lab made at its start), so the difference in server CPU per request is what one handshake costs that server.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| HTTPS system | plain system | concurrency | req/s plain → HTTPS | HTTPS ÷ plain | server CPU µs/req plain → HTTPS | handshake cost (µs/req) |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	fmt.Fprintln(w)
}
