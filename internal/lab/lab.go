package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"loadlab"
	"loadlab/internal/bench"
	"loadlab/internal/report"
)

// Options are how to run an experiment.
type Options struct {
	Config    *Config
	Binary    string    // loadlab itself, for serve and balance; default os.Executable
	PortsAuto bool      // pick free ports instead of the configured ones
	Log       io.Writer // what runs, system by system and level by level
	// Progress is told each run's completed requests, for a progress bar.
	Progress func(system string, level int, done, total int64)
	// Screenshots, when set, is a directory for PNGs of the page through
	// the lab's balancer and of its stats page, taken with Chromium.
	Screenshots string
}

// runner holds what one experiment needs while it runs.
type runner struct {
	opts   Options
	binary string
	peers  map[string]string // nginx, haproxy: their paths, when installed
	tmp    string
	shots  []string // screenshots taken, file names
}

// Plan describes what Run will do, one line per system, before it starts.
func Plan(cfg *Config) []string {
	var lines []string
	for _, s := range cfg.Systems {
		kind := ""
		switch {
		case s.Peer:
			kind = " [peer]"
		case s.LabTable != "":
			kind = " [lab table]"
		}
		lines = append(lines, fmt.Sprintf("%-22s %s%s", s.Name, s.Title, kind))
	}
	return lines
}

// Run performs the experiment and returns its results. A system that
// fails to start is an error naming it; a missing peer is skipped with a
// note. Every process it started is stopped before it returns, also when
// ctx is cancelled.
func Run(ctx context.Context, opts Options) (*report.Results, error) {
	r := &runner{opts: opts, binary: opts.Binary, peers: map[string]string{}}
	if r.binary == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		r.binary = self
	}
	for _, peer := range []string{"nginx", "haproxy"} {
		if path, err := exec.LookPath(peer); err == nil {
			r.peers[peer] = path
		} else if path, err := exec.LookPath("/usr/sbin/" + peer); err == nil {
			r.peers[peer] = path
		}
	}
	tmp, err := os.MkdirTemp("", "loadlab-lab")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	r.tmp = tmp
	cfg := opts.Config
	res := &report.Results{
		Started: time.Now(), Requests: cfg.Requests, Levels: cfg.Levels, Path: cfg.Path,
		Machine: machine(), ConfigYAML: cfg.YAML(),
	}
	for _, s := range cfg.Systems {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sr, err := r.system(ctx, s)
		if err != nil {
			return nil, err
		}
		res.Systems = append(res.Systems, sr)
	}
	res.Duration = time.Since(res.Started)
	res.Screenshots = r.shots
	return res, nil
}

// system measures one system at every level.
func (r *runner) system(ctx context.Context, s System) (*report.System, error) {
	sr := &report.System{Name: s.Name, Title: s.Title, LabTable: s.LabTable, Peer: s.Peer, KeepAlive: s.KeepAlive}
	for _, p := range s.Processes {
		if (p.Run == "nginx" || p.Run == "haproxy") && r.peers[p.Run] == "" {
			sr.Skipped = p.Run + " is not installed (apt-get install " + p.Run + ")"
			r.logf("%-22s skipped: %s\n", s.Name, sr.Skipped)
			return sr, nil
		}
	}
	ports, err := portsFor(s, r.opts.PortsAuto)
	if err != nil {
		return nil, err
	}
	procs, err := r.start(s, ports)
	if err != nil {
		return nil, err
	}
	defer stopAll(procs)
	var target *running
	for _, p := range procs {
		if p.proc.Name == s.Target {
			target = p
		}
	}
	cfg := r.opts.Config
	path := cfg.Path
	if s.Path != "" {
		path = s.Path
	}
	url := "http://" + target.addr + path
	for _, c := range cfg.Levels {
		if c > cfg.Requests && s.Rate == 0 {
			r.logf("%-22s c=%-4d skipped: more than the %d requests\n", s.Name, c, cfg.Requests)
			continue
		}
		var progress bench.Progress
		if r.opts.Progress != nil {
			progress = func(done int64) { r.opts.Progress(s.Name, c, done, int64(cfg.Requests)) }
		}
		sum, err := bench.Run(ctx, bench.Work{URL: url, Requests: cfg.Requests, Concurrency: c, KeepAlive: s.KeepAlive, Rate: s.Rate, Timeout: 10 * time.Second}, progress)
		if sum == nil {
			return nil, fmt.Errorf("system %s at c=%d: %v", s.Name, c, err)
		}
		sum.Label = s.Name
		sr.Runs = append(sr.Runs, sum)
		r.logf("%-22s c=%-4d %9.2f req/s  %d failed%s\n", s.Name, c, sum.RequestsPerSecond, sum.Failed, abortNote(sum))
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	for _, p := range procs {
		if p.admin == "" {
			continue
		}
		if r.opts.Screenshots != "" && s.LabTable != "" {
			pages := []page{
				{s.Name + "-page", "http://" + target.addr + "/page.html", "#jaringan"},
				{s.Name + "-stats", "http://" + p.admin + "/", "#backends"},
			}
			if err := shoot(r.opts.Screenshots, pages); err != nil {
				r.logf("screenshots: %v\n", err)
			} else {
				r.shots = append(r.shots, pages[0].name+".png", pages[1].name+".png")
			}
		}
		sr.Backends = backendShares(p.admin) // after the screenshots: they count too
	}
	return sr, nil
}

func abortNote(s *bench.Summary) string {
	if s.Aborted != "" {
		return " (ended early: " + s.Aborted + ")"
	}
	return ""
}

func (r *runner) logf(format string, args ...any) {
	if r.opts.Log != nil {
		fmt.Fprintf(r.opts.Log, format, args...)
	}
}

// backendShares asks a balancer's admin API how many connections or
// requests each backend served.
func backendShares(admin string) []report.BackendShare {
	resp, err := http.Get("http://" + admin + "/api/backends")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var list []struct {
		Name     string `json:"name"`
		Requests int64  `json:"requests"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	var shares []report.BackendShare
	for _, b := range list {
		shares = append(shares, report.BackendShare{Name: b.Name, Requests: b.Requests})
	}
	return shares
}

// machine describes where the experiment ran, so it can be repeated.
func machine() report.Machine {
	m := report.Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Loadlab: loadlab.Version, OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// ShootReport saves a screenshot of a written report's index.html as
// index.png in dir.
func ShootReport(reportDir, dir string) error {
	abs, err := filepath.Abs(filepath.Join(reportDir, "index.html"))
	if err != nil {
		return err
	}
	return shoot(dir, []page{{"index", "file://" + abs, "table.results"}})
}
