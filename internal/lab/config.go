// Package lab runs an experiment: it starts each system's processes (this
// same binary's serve and balance, or peers like nginx and HAProxy),
// checks them ready, measures them with the bench engine at every
// concurrency level, stops them, and hands the results to report.
package lab

import (
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"time"

	"loadlab/internal/httpx"
	"loadlab/internal/yamlfile"
)

// DefaultYAML is the lab's own experiment, run by `loadlab lab`.
//
//go:embed default.yaml
var DefaultYAML []byte

// Config is an experiment: the matrix and the systems to run it on.
type Config struct {
	Requests int    `yaml:"requests"`
	Levels   []int  `yaml:"levels"`
	Path     string `yaml:"path"`
	// Repetitions is how many times each cell (system × level) runs, in
	// rounds whose order of systems rotates; the report gives the median
	// and the spread. Left out (0), the run makes DefaultRepetitions
	// rounds and then more, while they fit in TimeBudget (autoRounds).
	Repetitions int `yaml:"repetitions,omitempty"`
	// TimeBudget is how long a run that leaves repetitions out may take
	// until its last round ends, counted from its start; the report
	// follows. 0 is DefaultTimeBudget.
	TimeBudget time.Duration `yaml:"time_budget,omitempty"`
	// MaxSteal is the share of CPU time the hypervisor may take during a
	// repetition (0.05 for 5 %) before the repetition is run again.
	MaxSteal float64 `yaml:"max_steal"`
	// Timeout is how long a request may go unanswered before its
	// repetition ends, as ab's -s: a system that then answers no single
	// request either is measured no further.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// Reference names the system every other is compared with: the report
	// gives each system's req/s as a multiple of the reference's at the
	// same level. Every such ratio divides by the reference's median, so
	// its noise would be in all of them at once; the reference runs more
	// often in each round to damp it (referenceRuns).
	Reference string   `yaml:"reference,omitempty"`
	Systems   []System `yaml:"systems"`
}

// Defaults of an experiment. The repetitions are odd so that a cell's
// median is one of its runs: the lab tables show that run, and its req/s
// is the median the other tables give.
const (
	DefaultRepetitions = 13
	MaxRepetitions     = 99
	// DefaultTimeBudget keeps the default run within three minutes, with
	// its report and screenshots.
	DefaultTimeBudget = 2*time.Minute + 40*time.Second
	DefaultMaxSteal   = 0.05
	DefaultTimeout    = 10 * time.Second
)

// System is one thing measured: its processes and which one takes the load.
type System struct {
	Name      string    `yaml:"name"`
	Title     string    `yaml:"title"`
	LabTable  string    `yaml:"lab_table"` // async_lb or thread: the seed's table this system fills
	Peer      bool      `yaml:"peer"`      // not loadlab: skipped with a note when not installed
	KeepAlive bool      `yaml:"keep_alive"`
	Rate      float64   `yaml:"rate,omitempty"` // requests/s: an open-model run (bench --rate); 0 for ab's closed model
	Path      string    `yaml:"path,omitempty"` // this system's path, instead of the experiment's
	Processes []Process `yaml:"processes"`
	Target    string    `yaml:"target"` // the process the load goes to
	// URL, instead of processes, is a server already running: loadlab
	// starts nothing for it and measures it there.
	URL string `yaml:"url,omitempty"`
	// TLS: the target speaks HTTPS, with the certificate the lab makes at
	// its start ({tls_cert} and {tls_key} in args; nginx and haproxy
	// get it in their configuration). Every request makes a full
	// handshake, unless keep_alive. Plain names the system that is the
	// same without TLS, for the report's cost of a handshake.
	TLS   bool   `yaml:"tls,omitempty"`
	Plain string `yaml:"plain,omitempty"`
	// Levels, when given, are the experiment's levels this system runs
	// (a slow series at fewer of them); by default all.
	Levels []int `yaml:"levels,omitempty"`
	// RunsPerRound is how often the system runs each of its levels in a
	// round, its runs spread through the round's order: more than once
	// for a system whose repetitions are short (a keep-alive run of 1,000
	// requests lasts 15 ms, where one scheduler hiccup weighs a third),
	// so its medians are as steady as the others'. By default once; the
	// reference's default is referenceRuns.
	RunsPerRound int `yaml:"runs_per_round,omitempty"`
}

// runs reports whether s runs at level c.
func (s System) runs(c int) bool { return len(s.Levels) == 0 || slices.Contains(s.Levels, c) }

// Process is one program of a system. Run is serve or balance (this
// binary), nginx or haproxy, or command: any program, Command, told its
// port by {port} and its address by {addr}. In Args and Command, {name}
// is the address of the process called name.
type Process struct {
	Name    string   `yaml:"name"`
	Run     string   `yaml:"run"`
	Port    int      `yaml:"port"`
	Args    []string `yaml:"args,omitempty"`
	Command []string `yaml:"command,omitempty"`
	// ReadyTimeout bounds its start: until its ready line, or for
	// nginx, haproxy and command until its port accepts; 0 means 15 s.
	ReadyTimeout time.Duration `yaml:"ready_timeout,omitempty"`
}

// Parse reads and checks an experiment.
func Parse(data []byte, name string) (*Config, error) {
	var c Config
	if err := yamlfile.Decode(data, &c, "docs/CONFIG.md"); err != nil {
		return nil, fmt.Errorf("config %s: %v", name, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("config %s: %v", name, err)
	}
	return &c, nil
}

// Load reads an experiment from a file, or the default one for "".
func Load(path string) (*Config, error) {
	if path == "" {
		return Parse(DefaultYAML, "(embedded default)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %v", path, errors.Unwrap(err))
	}
	return Parse(data, path)
}

var placeholder = regexp.MustCompile(`\{([a-z0-9_-]+)\}`)

// fileName is what a system's name may be: it is part of file names in
// the report ("runs/NAME-c10.txt"), so no slash and no leading dot.
var fileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (c *Config) check() error {
	if c.Requests < 1 {
		return errors.New("requests must be at least 1")
	}
	if len(c.Levels) == 0 {
		return errors.New("levels: give at least one concurrency level")
	}
	for _, l := range c.Levels {
		if l < 1 {
			return fmt.Errorf("level %d: concurrency must be at least 1", l)
		}
		if l > c.Requests {
			return fmt.Errorf("level %d is more than the %d requests: ab and bench refuse -c over -n; raise requests or drop the level", l, c.Requests)
		}
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if err := httpx.CheckPath("path", c.Path); err != nil {
		return err
	}
	if c.Repetitions < 0 || c.Repetitions > MaxRepetitions {
		return fmt.Errorf("repetitions %d: give 1 to %d, or leave it out for as many as fit in time_budget", c.Repetitions, MaxRepetitions)
	}
	if c.TimeBudget < 0 {
		return fmt.Errorf("time_budget %v is negative: give a duration such as 2m40s, or leave it out for the default", c.TimeBudget)
	}
	if c.TimeBudget == 0 && c.Repetitions == 0 {
		c.TimeBudget = DefaultTimeBudget
	}
	if c.MaxSteal == 0 {
		c.MaxSteal = DefaultMaxSteal
	}
	if c.MaxSteal < 0 || c.MaxSteal > 1 {
		return fmt.Errorf("max_steal %v: give a share from 0 to 1 (0.05 for 5 %%)", c.MaxSteal)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 10*time.Millisecond {
		return fmt.Errorf("timeout %v: give a duration of at least 10ms, as 10s", c.Timeout)
	}
	if len(c.Systems) == 0 {
		return errors.New("no systems")
	}
	names := map[string]bool{}
	for _, s := range c.Systems {
		if s.Name == "" || names[s.Name] {
			return fmt.Errorf("system %q: every system needs a name of its own", s.Name)
		}
		if !fileName.MatchString(s.Name) {
			return fmt.Errorf("system %q: a name is letters, digits, '.', '-' and '_', starting with a letter or digit: it names the system's files in the report's runs/", s.Name)
		}
		names[s.Name] = true
		if s.Path != "" {
			if err := httpx.CheckPath("system "+s.Name+": path", s.Path); err != nil {
				return err
			}
		}
		for _, l := range s.Levels {
			if !slices.Contains(c.Levels, l) {
				return fmt.Errorf("system %s: level %d is not one of the experiment's levels %v", s.Name, l, c.Levels)
			}
		}
		if s.URL != "" {
			u, err := url.Parse(s.URL)
			if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || len(s.Processes) > 0 {
				return fmt.Errorf("system %s: url %q: give http(s)://host:port/path, and no processes (loadlab starts nothing for it)", s.Name, s.URL)
			}
			continue
		}
		procs := map[string]bool{}
		for _, p := range s.Processes {
			switch p.Run {
			case "serve", "balance", "nginx", "haproxy":
				if len(p.Command) > 0 {
					return fmt.Errorf("system %s, process %s: command is for run: command", s.Name, p.Name)
				}
			case "command":
				if len(p.Command) == 0 {
					return fmt.Errorf("system %s, process %s: run: command needs command: [program, args…]", s.Name, p.Name)
				}
			default:
				return fmt.Errorf("system %s, process %s: run %q (use serve, balance, nginx, haproxy or command)", s.Name, p.Name, p.Run)
			}
			if p.Port < 1 || p.Port > 65535 {
				return fmt.Errorf("system %s, process %s: port %d", s.Name, p.Name, p.Port)
			}
			if p.Name == "" || procs[p.Name] {
				return fmt.Errorf("system %s: process %q: every process needs a name of its own", s.Name, p.Name)
			}
			procs[p.Name] = true
		}
		for _, p := range s.Processes {
			for _, a := range append(slices.Clone(p.Args), p.Command...) {
				for _, m := range placeholder.FindAllStringSubmatch(a, -1) {
					if !procs[m[1]] && m[1] != "port" && m[1] != "addr" && m[1] != "tls_cert" && m[1] != "tls_key" {
						return fmt.Errorf("system %s, process %s: {%s} names no process", s.Name, p.Name, m[1])
					}
				}
			}
		}
		if s.RunsPerRound < 0 || s.RunsPerRound > 10 {
			return fmt.Errorf("system %s: runs_per_round %d: give 1 to 10, or leave it out for once", s.Name, s.RunsPerRound)
		}
		if s.Rate < 0 {
			return fmt.Errorf("system %s: rate must not be negative", s.Name)
		}
		if !procs[s.Target] {
			return fmt.Errorf("system %s: target %q names no process", s.Name, s.Target)
		}
		if s.LabTable != "" && s.LabTable != "async_lb" && s.LabTable != "thread" {
			return fmt.Errorf("system %s: lab_table %q (use async_lb or thread)", s.Name, s.LabTable)
		}
	}
	for _, s := range c.Systems {
		if s.Plain != "" && (!names[s.Plain] || s.Plain == s.Name) {
			return fmt.Errorf("system %s: plain %q names no other system", s.Name, s.Plain)
		}
	}
	if c.Reference != "" && !names[c.Reference] {
		return fmt.Errorf("reference %q names no system: give one of the systems' names, or leave it out", c.Reference)
	}
	return nil
}

// Quick cuts an experiment to a smoke run: 50 requests at c = 1 and 5,
// three repetitions.
func (c *Config) Quick() {
	c.Requests = 50
	c.Levels = []int{1, 5}
	c.Repetitions, c.TimeBudget = 3, 0
	for i := range c.Systems {
		c.Systems[i].Levels = nil
	}
}

// YAML is the experiment as it ran, for the report and --print-config:
// a file that loads back to it.
func (c *Config) YAML() string { return yamlfile.Encode(*c) }

// Keys are every key an experiment file takes, as paths
// ("systems[].processes[].args"), for docs/CONFIG.md's test.
func Keys() []string { return yamlfile.Keys(reflect.TypeOf(Config{})) }
