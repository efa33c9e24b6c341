package report

import (
	"fmt"
	"io"
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
	p("The network-programming lab's experiment (Tugas Pemrograman Jaringan 10), run by `loadlab lab` on %s in %s: ",
		res.Started.UTC().Format("2006-01-02 15:04 MST"), res.Duration.Round(1e9))
	p("`ab -n %d -c C` for C = %s against `%s`, on every system below.\n\n", res.Requests, joinInts(res.Levels), res.Path)
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
			p("## %s\n\n%s\n\n", labTitles[table], s.Title)
			writeLabTable(w, s, res.Levels)
			p("\nThe seed's figures beside ours (requests per second; a blank seed row is a run that hung):\n\n")
			writeSeedComparison(w, s, table, res.Levels)
			p("\n")
		}
	}
	p("## Every system\n\nBoth time-per-request figures, the total time's percentiles and the failures by kind, per level.\n\n")
	for _, s := range res.Systems {
		kind := ""
		if s.Peer {
			kind = " (peer)"
		}
		p("### %s%s\n\n%s\n\n", s.Name, kind, s.Title)
		if s.Skipped != "" {
			p("Skipped: %s.\n\n", s.Skipped)
			continue
		}
		var rows [][]string
		for i, run := range s.Runs {
			rows = append(rows, bench.ExtendedRow(i+1, run))
		}
		bench.WriteExtendedTable(w, rows)
		p("\n")
		if len(s.Backends) > 0 {
			p("Which backend served how many (from the balancer's admin API, over all levels):\n\n| backend | served |\n|---|---|\n")
			for _, b := range s.Backends {
				p("| %s | %d |\n", b.Name, b.Requests)
			}
			p("\n")
		}
	}
	if res.Baseline != nil {
		writeComparison(w, res)
	}
	p("## Charts\n\n")
	for _, c := range charts {
		p("### %s\n\n![%s](charts/%s.png)\n\n(SVG: [charts/%s.svg](charts/%s.svg))\n\n", c.title, c.title, c.name, c.name, c.name)
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
	p("Every run's ab-style text is in `runs/`, every figure in `results.json` and `results.csv`.\n\n")
	p("## The configuration\n\nRepeat this run with `loadlab lab --config` on this file:\n\n```yaml\n%s```\n", res.ConfigYAML)
	return nil
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
		run := s.run(c)
		if run != nil {
			ours, ourFailed = fmt.Sprintf("%.2f", run.RequestsPerSecond), fmt.Sprint(run.Failed)
		}
		if sr, ok := seed[table][c]; ok {
			seedRun, seedFailed = fmt.Sprintf("%.2f", sr.rps), fmt.Sprint(sr.failed)
			if run != nil {
				speedup = fmt.Sprintf("%.0f×", run.RequestsPerSecond/sr.rps)
			}
		} else if run != nil {
			speedup = "seed: no result"
		}
		fmt.Fprintf(w, "| %d | %d | %s | %s | %s | %s | %s |\n", i+1, c, seedRun, ours, speedup, seedFailed, ourFailed)
	}
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// writeComparison adds, for every system and level in both runs, the
// change in requests per second and p99 against the baseline run.
func writeComparison(w io.Writer, res *Results) {
	fmt.Fprintf(w, "## Change against %s\n\nBaseline run on %s.\n\n", res.BaselineName, res.Baseline.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintln(w, "| system | concurrency | req/s then | req/s now | change | p99 then (ms) | p99 now (ms) | failed then → now |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|")
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
			fmt.Fprintf(w, "| %s | %d | %.2f | %.2f | %+.1f%% | %.3f | %.3f | %d → %d |\n", s.Name, run.Concurrency,
				then.RequestsPerSecond, run.RequestsPerSecond, (run.RequestsPerSecond/then.RequestsPerSecond-1)*100,
				then.Total.P99, run.Total.P99, then.Failed, run.Failed)
		}
	}
	fmt.Fprintln(w)
}
