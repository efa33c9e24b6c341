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
	Name      string           `json:"name"`
	Title     string           `json:"title"`
	LabTable  string           `json:"lab_table,omitempty"`
	Peer      bool             `json:"peer,omitempty"`
	KeepAlive bool             `json:"keep_alive,omitempty"`
	Skipped   string           `json:"skipped,omitempty"`
	Runs      []*bench.Summary `json:"runs"`
	Backends  []BackendShare   `json:"backends,omitempty"`
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
	for _, s := range res.Systems {
		for _, run := range s.Runs {
			f, err := os.Create(filepath.Join(dir, "runs", fmt.Sprintf("%s-c%d.txt", s.Name, run.Concurrency)))
			if err != nil {
				return err
			}
			fmt.Fprintf(f, "%s\n%s\n", s.Title, run.URL)
			bench.WriteText(f, run)
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
