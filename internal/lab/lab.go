package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"loadlab"
	"loadlab/internal/bench"
	"loadlab/internal/procstat"
	"loadlab/internal/report"
)

// Options are how to run an experiment.
type Options struct {
	Config    *Config
	Binary    string    // loadlab itself, for serve and balance; default os.Executable
	PortsAuto bool      // pick free ports instead of the configured ones
	Log       io.Writer // what runs, round by round
	// Progress is told, after each repetition, how many of all the
	// repetitions are done, and what ran last; for a progress bar.
	Progress func(label string, done, total int)
	// Screenshots, when set, is a directory for PNGs of the page through
	// the lab's balancer and of its stats page, taken with Chromium.
	Screenshots string
	// ReadCPU reads the machine's CPU times; nil reads /proc/stat. Tests
	// replace it to inject steal.
	ReadCPU func() (procstat.CPUTimes, error)
}

// runner holds what one experiment needs while it runs.
type runner struct {
	opts   Options
	binary string
	peers  map[string]string // nginx, haproxy: their paths, when installed
	tmp    string
	tls    tlsFiles       // the certificate every TLS system uses
	shots  []string       // screenshots taken, file names
	ports  map[int]string // the process each port went to
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
		case s.URL != "":
			kind = " [already running]"
		}
		lines = append(lines, fmt.Sprintf("%-22s %s%s", s.Name, s.Title, kind))
	}
	return lines
}

// live is a system whose processes are up for the whole run.
type live struct {
	sys      System
	res      *report.System
	procs    []*running
	url      string
	reps     map[int][]rep // by level
	repeated map[int]int   // by level: repetitions run again for steal
	cpuPID   []int         // its processes, for CPU per request
	lost     bool          // it went down (see down): measured no further
}

// exited is the first of the system's processes to have ended, or nil.
// After a repetition with failures it waits up to grace for one to be
// seen ending: a server that went down is why they failed, and its exit
// reaches us just after its refusals do.
func (ls *live) exited(grace time.Duration) *running {
	deadline := time.Now().Add(grace)
	for {
		for _, p := range ls.procs {
			select {
			case <-p.done:
				return p
			default:
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exitGrace is how long a repetition with failures waits to see whether a
// process of its system exited.
const exitGrace = 500 * time.Millisecond

// down says whether a system just went down, and how: a process of it
// exited, or a repetition ended early (a refusal, a reset, no answer
// within the timeout) and a single request after it, given as long, gets
// no answer either: a server that died, or hangs. what happened comes
// first, then its details. troubled is whether the repetition had
// failures.
func (ls *live) down(ctx context.Context, troubled bool, sum *bench.Summary, timeout time.Duration) (what, details string) {
	grace := time.Duration(0)
	if troubled {
		grace = exitGrace
	}
	if p := ls.exited(grace); p != nil {
		return fmt.Sprintf("process %s (%s) exited", p.proc.Name, p.proc.Run), p.exitNote()
	}
	if sum == nil || sum.Aborted == "" {
		return "", ""
	}
	probe, err := bench.Run(ctx, bench.Work{URL: ls.url, Requests: 1, Concurrency: 1, Timeout: timeout}, nil)
	if err == nil && probe.Complete == 1 && probe.Failed == 0 || ctx.Err() != nil {
		return "", ""
	}
	why := "no answer"
	if err != nil {
		why = err.Error()
	}
	return "its address " + hostPort(ls.url) + " stopped answering", fmt.Sprintf("(%s; then a single request: %s)", sum.Aborted, why)
}

// hostPort is a URL's host and port, the scheme's default port if it
// names none.
func hostPort(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// listeningHere finds, for a URL on this machine's loopback, the
// processes listening on its port, so that a server the lab did not start
// still has its CPU per request; it names them for the report. The lab's
// own process is left out: its CPU is the load generator's.
func listeningHere(rawURL string) (pids []int, named string) {
	host, port, _ := net.SplitHostPort(hostPort(rawURL))
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, ""
	}
	n, _ := strconv.Atoi(port)
	var names []string
	for _, p := range procstat.Listening(n) {
		if p.PID == os.Getpid() {
			continue
		}
		pids = append(pids, p.PID)
		names = append(names, fmt.Sprintf("%s (pid %d)", p.Name, p.PID))
	}
	return pids, strings.Join(names, ", ")
}

// lose stops measuring a system that went down during the repetition
// just run at level c: that repetition measured a server going down, and
// the rounds after it would measure none.
func (r *runner) lose(ls *live, what, details string, round, c int) {
	ls.lost = true
	ls.res.Lost = fmt.Sprintf("%s during round %d, at c = %d %s. Its figures are of the repetitions before", what, round+1, c, details)
	r.logf("%-22s measured no further: %s\n", ls.sys.Name, ls.res.Lost)
}

// rep is one repetition as it ran.
type rep struct {
	sum *bench.Summary
	rec report.Repetition
}

// Run performs the experiment and returns its results. Every system's
// processes start first and stay up; then the cells run in rounds, each
// round every system at every level once (the reference, and a system
// with runs_per_round, more often), the systems' order rotating from
// round to round so that the machine's drift hits all alike. A
// system that fails to start is an error naming it; a missing peer is
// skipped with a note. When ctx is cancelled, Run returns what finished,
// with Interrupted set. Every process it started is stopped before it
// returns.
func Run(ctx context.Context, opts Options) (*report.Results, error) {
	r := &runner{opts: opts, binary: opts.Binary, peers: map[string]string{}, ports: map[int]string{}}
	if r.binary == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		r.binary = self
	}
	if r.opts.ReadCPU == nil {
		r.opts.ReadCPU = procstat.ReadCPUTimes
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
	if r.tls, err = makeCertificate(tmp); err != nil {
		return nil, err
	}
	cfg := opts.Config
	res := &report.Results{
		Started: time.Now(), Requests: cfg.Requests, Levels: cfg.Levels, Path: cfg.Path,
		Machine: machine(), ConfigYAML: cfg.YAML(), MaxSteal: cfg.MaxSteal,
	}
	var systems []*live
	subreap(true)
	defer func() {
		for _, ls := range systems {
			stopAll(ls.procs)
		}
		if left := stopEscaped(0); left != "" {
			r.logf("loadlab lab: stopped what a command had left running in the background: %s\n", left)
		}
		subreap(false)
	}()
	for _, s := range cfg.Systems {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ls, err := r.bringUp(ctx, s)
		if err != nil {
			return nil, err
		}
		res.Systems = append(res.Systems, ls.res)
		if ls.res.Skipped == "" {
			systems = append(systems, ls)
		}
	}
	var reference *live
	for _, ls := range systems {
		if ls.sys.Name == cfg.Reference {
			reference = ls
			res.Reference = cfg.Reference
		}
	}
	done, total := 0, 0
	planned := cfg.Repetitions
	if planned == 0 {
		planned = DefaultRepetitions // and more, as they fit (autoRounds)
	}
	var longest time.Duration // the longest round so far
rounds:
	for round := 0; round < planned; round++ {
		began := time.Now()
		active := slices.DeleteFunc(slices.Clone(systems), func(ls *live) bool { return ls.lost })
		if reference != nil && reference.lost {
			reference = nil
		}
		total = done + (planned-round)*perRound(active, reference, cfg.Levels)
		order := roundOrder(active, reference, round)
		var names []string
		for _, series := range order {
			for _, ls := range series {
				names = append(names, ls.sys.Name)
			}
		}
		res.Rounds = append(res.Rounds, names)
		lines := map[*live]*strings.Builder{}
		for _, c := range cfg.Levels {
			for _, ls := range atLevel(order, reference, c) {
				if ls.lost {
					total--
					continue
				}
				rp, err := r.repetition(ctx, ls, c, round, res)
				if ctx.Err() != nil {
					res.Interrupted = true
					break rounds
				}
				troubled := err != nil || rp.sum.Failed > 0 || rp.sum.Aborted != ""
				if what, details := ls.down(ctx, troubled, rp.sum, cfg.Timeout); what != "" {
					r.lose(ls, what, details, round, c)
					total--
					continue
				}
				if err != nil {
					return nil, err
				}
				ls.reps[c] = append(ls.reps[c], rp)
				if lines[ls] == nil {
					lines[ls] = &strings.Builder{}
				}
				fmt.Fprintf(lines[ls], " %.0f", rp.sum.RequestsPerSecond)
				done++
				if r.opts.Progress != nil {
					r.opts.Progress(fmt.Sprintf("round %d/%d c=%d %s", round+1, planned, c, ls.sys.Name), done, total)
				}
			}
		}
		logged := map[*live]bool{}
		for _, ls := range slices.Concat(order...) {
			if logged[ls] || lines[ls] == nil {
				continue // the reference, run more than once; a system lost before it ran
			}
			logged[ls] = true
			levels := cfg.Levels
			if len(ls.sys.Levels) > 0 {
				levels = ls.sys.Levels
			}
			r.logf("round %d/%d  %-22s req/s at c=%v:%s\n", round+1, planned, ls.sys.Name, levels, lines[ls].String())
		}
		longest = max(longest, time.Since(began))
		if cfg.Repetitions == 0 {
			planned = autoRounds(round+1, time.Since(res.Started), longest, cfg.TimeBudget)
		}
	}
	res.Repetitions = len(res.Rounds)
	if cfg.Repetitions == 0 {
		res.TimeBudget = cfg.TimeBudget
	}
	for _, ls := range systems {
		summarize(ls, cfg.Levels)
		if !res.Interrupted && !ls.lost {
			r.afterRounds(ls)
		}
	}
	res.RelateToReference()
	res.Duration = time.Since(res.Started)
	res.Screenshots = r.shots
	return res, nil
}

// autoRounds is how many rounds a run that leaves repetitions out makes,
// as seen after done rounds, elapsed into the run, the longest of them
// longest: as many as are expected to end within budget, counting each
// coming round as long as the longest so far, since the machine's speed
// drifts. At least DefaultRepetitions, at most MaxRepetitions, and odd,
// so that a cell's median is one of its runs: rounds are added two at a
// time.
func autoRounds(done int, elapsed, longest, budget time.Duration) int {
	n := DefaultRepetitions
	if longest > 0 && budget > elapsed {
		n = max(n, done+int((budget-elapsed)/longest))
	}
	n = min(n, MaxRepetitions)
	if n%2 == 0 {
		n--
	}
	return max(n, done|1) // done itself when odd, else one more
}

// perRound is how many repetitions a round runs.
func perRound(systems []*live, reference *live, levels []int) int {
	n := 0
	for _, c := range levels {
		n += len(atLevel(roundOrder(systems, reference, 0), reference, c))
	}
	return n
}

// roundOrder is the order in which a round runs the systems, level by
// level, in two series: a system and the one it is compared with run
// within moments of each other, so the machine's drift hits both alike.
// The plain systems rotate among themselves from round to round, then the
// TLS ones: a TLS cell takes ten times a plain one, and between two plain
// systems of a level it would keep them seconds apart.
//
// A system that runs more than once a round has its runs spread evenly
// through its series. The reference, which every other system is compared
// with, runs in both series (referenceRuns times beside the others of
// each, unless it sets runs_per_round), first in each. The first series
// is the plain one, the second the TLS one.
func roundOrder(systems []*live, reference *live, round int) [][]*live {
	type run struct {
		ls  *live
		key float64 // where in the series, from 0 to 1
	}
	var order [][]*live
	for _, tls := range []bool{false, true} {
		var others []*live
		for _, ls := range systems {
			if ls.sys.TLS == tls && ls != reference {
				others = append(others, ls)
			}
		}
		var runs []run
		spread := func(ls *live, at float64, n int) {
			for j := range n {
				runs = append(runs, run{ls, math.Mod(at+float64(j)/float64(n), 1)})
			}
		}
		if reference != nil && (len(others) > 0 || reference.sys.TLS == tls) {
			n := reference.sys.RunsPerRound
			if n == 0 {
				n = referenceRuns(len(others))
			}
			spread(reference, 0, n)
		}
		for i := range others {
			ls := others[(i+round)%len(others)]
			spread(ls, (float64(i)+0.5)/float64(len(others)), max(1, ls.sys.RunsPerRound))
		}
		slices.SortStableFunc(runs, func(a, b run) int { return cmp.Compare(a.key, b.key) })
		var series []*live
		for _, r := range runs {
			series = append(series, r.ls)
		}
		order = append(order, series)
	}
	return order
}

// atLevel is what a round's order runs at level c: the systems that run
// there, and the reference only in a series where another system does
// (or once in its own series, when none does).
func atLevel(order [][]*live, reference *live, c int) []*live {
	var runs []*live
	for i, series := range order {
		var here []*live
		others := false
		for _, ls := range series {
			if ls.sys.runs(c) {
				here = append(here, ls)
				others = others || ls != reference
			}
		}
		switch {
		case others:
			runs = append(runs, here...)
		case len(here) > 0 && reference.sys.TLS == (i == 1):
			runs = append(runs, reference)
		}
	}
	return runs
}

// referenceRuns is how often the reference runs in a round beside k
// systems compared with it: √k, the allocation that makes k comparisons
// with one control most precise for a given number of runs (Dunnett's
// rule). Beside the lab's eight plain systems, three: its median rests
// on three times the repetitions, for about a twentieth more time.
func referenceRuns(k int) int {
	return max(1, int(math.Round(math.Sqrt(float64(k)))))
}

// bringUp starts a system's processes and warms it up once, uncounted.
func (r *runner) bringUp(ctx context.Context, s System) (*live, error) {
	ls := &live{sys: s, reps: map[int][]rep{}, repeated: map[int]int{}, res: &report.System{Name: s.Name, Title: s.Title, LabTable: s.LabTable, Peer: s.Peer, KeepAlive: s.KeepAlive, URL: s.URL, TLS: s.TLS, Plain: s.Plain}}
	cfg := r.opts.Config
	path := cfg.Path
	if s.Path != "" {
		path = s.Path
	}
	if s.URL != "" {
		ls.url = s.URL
		ls.cpuPID, ls.res.CPUOf = listeningHere(s.URL)
	} else {
		for _, p := range s.Processes {
			if (p.Run == "nginx" || p.Run == "haproxy") && r.peers[p.Run] == "" {
				ls.res.Skipped = p.Run + " is not installed (apt-get install " + p.Run + ")"
				r.logf("%-22s skipped: %s\n", s.Name, ls.res.Skipped)
				return ls, nil
			}
		}
		ports, err := portsFor(ctx, s, r.opts.PortsAuto, r.ports, r.logf)
		if err != nil {
			return nil, err
		}
		if ls.procs, err = r.start(s, ports); err != nil {
			return nil, err
		}
		for _, p := range ls.procs {
			ls.cpuPID = append(ls.cpuPID, p.cmd.Process.Pid)
			if p.proc.Name == s.Target {
				ls.url = "http://" + p.addr + path
				if s.TLS {
					ls.url = "https://" + p.addr + path
				}
			}
		}
	}
	// Warm up: the first connections of a fresh process pay for page
	// faults, pools and caches that every later run finds ready.
	levels := cfg.Levels
	if len(s.Levels) > 0 {
		levels = s.Levels
	}
	warm := bench.Work{URL: ls.url, Requests: cfg.Requests, Concurrency: min(slices.Max(levels), cfg.Requests), KeepAlive: s.KeepAlive, Timeout: cfg.Timeout}
	sum, err := bench.Run(ctx, warm, nil)
	if err != nil && ctx.Err() == nil {
		stopAll(ls.procs)
		return nil, fmt.Errorf("system %s: warming up on %s: %v", s.Name, ls.url, err)
	}
	if sum != nil && sum.Non2xx > 0 {
		r.logf("%-22s warning: %d of %d answers on %s were not 2xx: its figures will be of those answers (check its path or url)\n", s.Name, sum.Non2xx, sum.Complete, ls.url)
	}
	// A command that put its server in the background has exited by now,
	// though its port answered.
	if p := ls.exited(0); p != nil {
		stopAll(ls.procs)
		return nil, fmt.Errorf("system %s, process %s (%s on %s): exited while warming up %s", s.Name, p.proc.Name, p.proc.Run, p.addr, p.exitNote())
	}
	r.logf("%-22s up on %s\n", s.Name, ls.url)
	return ls, nil
}

// maxRepeats bounds how often one repetition is run again for steal.
const maxRepeats = 3

// clientBoundAt is the generator's CPU use, in cores, from which a cell
// is marked client-bound.
const clientBoundAt = 0.8

// repetition runs one cell once, watching the machine: when the
// hypervisor took more than MaxSteal of the CPU meanwhile, it runs again
// (up to maxRepeats times; the last one counts whatever the steal).
func (r *runner) repetition(ctx context.Context, ls *live, c, round int, res *report.Results) (rep, error) {
	cfg := r.opts.Config
	for try := 0; ; try++ {
		pids := procstat.WithDescendants(ls.cpuPID)
		self := []int{os.Getpid()}
		cpu0, _ := r.opts.ReadCPU()
		server0, client0 := procstat.ProcessCPU(pids), procstat.ProcessCPU(self)
		start := time.Now()
		sum, err := bench.Run(ctx, bench.Work{URL: ls.url, Requests: cfg.Requests, Concurrency: c, KeepAlive: ls.sys.KeepAlive, Rate: ls.sys.Rate, Timeout: cfg.Timeout}, nil)
		wall := time.Since(start)
		server1, client1 := procstat.ProcessCPU(pids), procstat.ProcessCPU(self)
		cpu1, _ := r.opts.ReadCPU()
		if sum == nil {
			return rep{}, fmt.Errorf("system %s at c=%d: %v", ls.sys.Name, c, err)
		}
		sum.Label = ls.sys.Name
		steal := procstat.StealShare(cpu0, cpu1)
		if ctx.Err() != nil {
			return rep{}, ctx.Err()
		}
		if steal > cfg.MaxSteal && try < maxRepeats {
			res.Repeated++
			ls.repeated[c]++
			r.logf("%-22s c=%-4d round %d: %.0f %% of the CPU was stolen; running it again\n", ls.sys.Name, c, round+1, 100*steal)
			continue
		}
		res.StealMax = max(res.StealMax, steal)
		n := float64(max(sum.Complete, 1))
		rec := report.Repetition{Round: round, Steal: steal, Complete: sum.Complete, Failed: sum.Failed, Non2xx: sum.Non2xx,
			ClientCores: float64(client1-client0) / float64(max(wall, 1))}
		rec.Figures = figuresOf(sum)
		if len(ls.cpuPID) > 0 {
			rec.ServerCPU = float64((server1 - server0).Microseconds()) / n
		}
		rec.ClientCPU = float64((client1 - client0).Microseconds()) / n
		if rec.ServerCPU > 0 && rec.ClientCPU > 0 {
			rec.ServerPerClientCPU = rec.ServerCPU / rec.ClientCPU
		}
		return rep{sum: sum, rec: rec}, nil
	}
}

func figuresOf(s *bench.Summary) report.Figures {
	return report.Figures{RequestsPerSecond: s.RequestsPerSecond, TimePerRequest: s.TimePerRequest, TimePerRequestAll: s.TimePerRequestAll,
		P50: s.Total.Median, P99: s.Total.P99}
}

// summarize makes a system's cells from its repetitions: medians, spread,
// and the median repetition's run for the lab tables.
func summarize(ls *live, levels []int) {
	for _, c := range levels {
		reps := ls.reps[c]
		if len(reps) == 0 {
			continue
		}
		cell := &report.Cell{Level: c, Repeated: ls.repeated[c]}
		byRPS := slices.Clone(reps)
		slices.SortFunc(byRPS, func(a, b rep) int { return cmp.Compare(a.sum.RequestsPerSecond, b.sum.RequestsPerSecond) })
		ls.res.Runs = append(ls.res.Runs, byRPS[(len(byRPS)-1)/2].sum)
		var clientCores []float64
		for _, rp := range reps {
			cell.Repetitions = append(cell.Repetitions, rp.rec)
			clientCores = append(clientCores, rp.rec.ClientCores)
		}
		cell.Median, cell.Low, cell.High = report.Spread(cell.Repetitions)
		cell.ClientBound = report.Median(clientCores) >= clientBoundAt
		ls.res.Cells = append(ls.res.Cells, cell)
	}
}

// afterRounds asks a balanced system's admin API how its backends shared
// the load, after screenshots of its page and stats when asked for.
func (r *runner) afterRounds(ls *live) {
	for _, p := range ls.procs {
		if p.admin == "" {
			continue
		}
		if r.opts.Screenshots != "" && ls.sys.LabTable != "" {
			pages := []page{
				{ls.sys.Name + "-page", strings.TrimSuffix(ls.url, r.opts.Config.Path) + "/page.html", "#jaringan"},
				{ls.sys.Name + "-stats", "http://" + p.admin + "/", "#backends"},
			}
			if err := shoot(r.opts.Screenshots, pages); err != nil {
				r.logf("screenshots: %v\n", err)
			} else {
				r.shots = append(r.shots, pages[0].name+".png", pages[1].name+".png")
			}
		}
		ls.res.Backends = backendShares(p.admin) // after the screenshots: they count too
	}
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
