// Package report turns an experiment's results into the lab's report:
// REPORT.md with the seed's tables filled and the seed's own figures
// beside them, charts (PNG and SVG), a self-contained index.html, every
// run's ab-style text, and results.json and results.csv.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"loadlab/internal/bench"
)

// Results are everything an experiment measured.
type Results struct {
	Started    time.Time     `json:"started"`
	Duration   time.Duration `json:"duration_ns"`
	Requests   int           `json:"requests"`
	Levels     []int         `json:"levels"`
	Path       string        `json:"path"`
	Machine    Machine       `json:"machine"`
	ConfigYAML string        `json:"config_yaml"`
	Systems    []*System     `json:"systems"`
	// Screenshots are PNG files in screenshots/, as the seed's write-up had.
	Screenshots []string `json:"screenshots,omitempty"`

	// Repetitions is how often each cell ran, in rounds; Rounds is the
	// order of the systems in each round (it rotates).
	Repetitions int        `json:"repetitions"`
	Rounds      [][]string `json:"rounds"`
	// TimeBudget, when set, chose Repetitions: rounds past the default
	// were added while they fit in it.
	TimeBudget time.Duration `json:"time_budget_ns,omitempty"`
	// Reference is the system every other is compared with (its cells
	// hold more repetitions: it runs more than once a round), or "".
	Reference string `json:"reference,omitempty"`
	// MaxSteal is the steal share over which a repetition was run again;
	// Repeated is how many were, and StealMax the most steal any kept
	// repetition saw.
	MaxSteal    float64 `json:"max_steal"`
	Repeated    int     `json:"repeated"`
	StealMax    float64 `json:"steal_max"`
	Interrupted bool    `json:"interrupted,omitempty"` // stopped by Ctrl-C: only finished cells are here

	// Baseline, when set, is an earlier run to compare with, and
	// BaselineName where it came from.
	Baseline     *Results `json:"-"`
	BaselineName string   `json:"-"`
}

// LoadResults reads a results.json an earlier run wrote.
func LoadResults(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--compare: %v", err)
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("--compare %s: not a loadlab results.json: %v", path, err)
	}
	return &r, nil
}

// system returns the named system of r, or nil.
func (r *Results) system(name string) *System {
	for _, s := range r.Systems {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// System is one system's runs, level by level.
type System struct {
	Name      string `json:"name"`
	Title     string `json:"title"`
	LabTable  string `json:"lab_table,omitempty"`
	Peer      bool   `json:"peer,omitempty"`
	KeepAlive bool   `json:"keep_alive,omitempty"`
	Skipped   string `json:"skipped,omitempty"`
	Lost      string `json:"lost,omitempty"` // why it was measured no further: a process of it exited
	URL       string `json:"url,omitempty"`  // a server loadlab did not start
	// CPUOf names, for a url: system on this machine, the processes found
	// listening on its port, whose CPU time is its server CPU.
	CPUOf string `json:"cpu_of,omitempty"`
	TLS   bool   `json:"tls,omitempty"`
	Plain string `json:"plain,omitempty"` // the system that is this one without TLS
	// Runs has, per level, the repetition with the median req/s: one real
	// run, whose figures agree with each other (the lab tables show it).
	Runs []*bench.Summary `json:"runs"`
	// Cells has, per level, every repetition and their medians and spread.
	Cells    []*Cell        `json:"cells"`
	Backends []BackendShare `json:"backends,omitempty"`
}

// Cell is one system at one level over its repetitions.
type Cell struct {
	Level       int          `json:"level"`
	Median      Figures      `json:"median"`
	Low         Figures      `json:"low"`  // the smallest of each figure
	High        Figures      `json:"high"` // the largest
	Repetitions []Repetition `json:"repetitions"`
	Repeated    int          `json:"repeated"` // repetitions run again because of steal
	// ClientBound is set when the load generator used most of a core: the
	// figures may be the client's limit, not the server's.
	ClientBound bool `json:"client_bound,omitempty"`
	// PerReference is the system's req/s as a multiple of the reference
	// system's at the same level, taken round by round (see
	// RelateToReference): the median, with PerReferenceLow and
	// PerReferenceHigh the smallest and largest, and PerReferenceVerdict
	// "faster", "slower" or "within noise" (the spread takes in 1). All
	// unset without a reference, and for the reference itself.
	PerReference        float64 `json:"per_reference,omitempty"`
	PerReferenceLow     float64 `json:"per_reference_low,omitempty"`
	PerReferenceHigh    float64 `json:"per_reference_high,omitempty"`
	PerReferenceVerdict string  `json:"per_reference_verdict,omitempty"`
}

// Figures are what one repetition measured, or a median or bound of them.
type Figures struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	TimePerRequest    float64 `json:"time_per_request_ms"`
	TimePerRequestAll float64 `json:"time_per_request_all_ms"`
	P50               float64 `json:"p50_ms"`
	P99               float64 `json:"p99_ms"`
	// ServerCPU is the CPU time the system's own processes spent per
	// request, in µs (0 for a url: system unless found listening on this
	// machine, see System.CPUOf); ClientCPU is the generator's.
	ServerCPU float64 `json:"server_cpu_us_per_request"`
	ClientCPU float64 `json:"client_cpu_us_per_request"`
	// ServerPerClientCPU is ServerCPU ÷ ClientCPU within one repetition:
	// the server's CPU per request with the generator's as the yardstick.
	// Both ran on the same cores at the same moments, so when the host
	// slows a guest's CPUs (which a guest may not see as steal), both
	// slow alike and this stays, where the microseconds do not.
	ServerPerClientCPU float64 `json:"server_cpu_per_client_cpu"`
}

// Repetition is one run of a cell.
type Repetition struct {
	Round int `json:"round"`
	Figures
	Steal       float64 `json:"steal"`        // share of CPU time stolen during it
	ClientCores float64 `json:"client_cores"` // the generator's CPU time over the wall time
	Complete    int64   `json:"complete"`
	Failed      int64   `json:"failed"`
	// Non2xx counts the answers whose status was not 2xx (ab's "Non-2xx
	// responses"): timed like the others, but an error page or a
	// redirect, not the page asked for.
	Non2xx int64 `json:"non_2xx"`
}

// BackendShare is how much of a balanced system's load one backend took.
type BackendShare struct {
	Name     string `json:"name"`
	Requests int64  `json:"requests"`
}

// Machine is where the experiment ran.
type Machine struct {
	CPU     string `json:"cpu"`
	Cores   int    `json:"cores"`
	Kernel  string `json:"kernel"`
	OS      string `json:"os"`
	Go      string `json:"go"`
	Loadlab string `json:"loadlab"`
}

// Write writes the whole report into dir.
func Write(dir string, res *Results) error {
	for _, sub := range []string{"", "runs", "charts"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("report: %v", err)
		}
	}
	if err := clearEarlier(dir, res); err != nil {
		return fmt.Errorf("report: %v", err)
	}
	for _, s := range res.Systems {
		for _, run := range s.Runs {
			f, err := os.Create(filepath.Join(dir, "runs", fmt.Sprintf("%s-c%d.txt", s.Name, run.Concurrency)))
			if err != nil {
				return err
			}
			fmt.Fprintf(f, "%s\n%s\n", s.Title, run.URL)
			bench.WriteText(f, run, bench.TextOptions{})
			f.Close()
		}
	}
	charts, err := writeCharts(filepath.Join(dir, "charts"), res)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "results.json"), func(f *os.File) error {
		enc := json.NewEncoder(f)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "results.csv"), func(f *os.File) error {
		var all []*bench.Summary
		for _, s := range res.Systems {
			all = append(all, s.Runs...)
		}
		return bench.WriteCSV(f, all)
	}); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "REPORT.md"), func(f *os.File) error { return writeMarkdown(f, res, charts) }); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "index.html"), func(f *os.File) error { return writeHTML(f, res, dir, charts) })
}

// clearEarlier removes what an earlier report in dir wrote and this one
// will not: a report's directory holds one run, and a run file of a
// system since dropped, or a chart or screenshot not made this time,
// would be read as this run's. Only the report's own kinds of file go.
func clearEarlier(dir string, res *Results) error {
	keep := map[string]bool{}
	for _, name := range res.Screenshots {
		keep[filepath.Join(dir, "screenshots", name)] = true
	}
	for _, pattern := range []string{"runs/*-c*.txt", "charts/*.svg", "charts/*.png", "screenshots/*.png"} {
		old, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, path := range old {
			if keep[path] {
				continue
			}
			if err := os.Remove(path); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %v", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("report %s: %v", path, err)
	}
	return f.Close()
}

// run returns s's run at concurrency c, or nil.
func (s *System) run(c int) *bench.Summary {
	for _, r := range s.Runs {
		if r.Concurrency == c {
			return r
		}
	}
	return nil
}

// non2xx counts, over all of s's repetitions, the answers that were not
// 2xx and all the answers.
func (s *System) non2xx() (non2xx, answers int64) {
	for _, c := range s.Cells {
		for _, r := range c.Repetitions {
			non2xx += r.Non2xx
			answers += r.Complete
		}
	}
	return non2xx, answers
}
