package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"loadlab/internal/lab"
	"loadlab/internal/report"
)

type labFlags struct {
	config      string
	out         string
	quick       bool
	ports       string
	printConfig bool
	compare     string
	screenshots bool
	repetitions int
	timeBudget  time.Duration
	// repetitionsGiven tells an explicit --repetitions 0 (a mistake) from
	// the flag left out (the config's value); screenshotsGiven tells
	// --screenshots=false from screenshots off for want of chromium.
	repetitionsGiven, timeBudgetGiven, screenshotsGiven bool
}

func newLabCommand() *cobra.Command {
	f := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the lab's whole experiment and write a report",
		Long: `Run the network-programming lab's experiment: four async servers behind a
round-robin balancer, and a thread-per-connection server, each under
loadlab bench (ab-compatible) -n 1000 -c 1..100; then every other model, the balancer's http mode, a
keep-alive series, and nginx and HAProxy as peers when installed. Writes
REPORT.md (the lab's tables filled, the seed's figures beside them),
charts, index.html, every run's text, results.json and results.csv.

Every system starts first and stays up; each cell (system × level) runs
once a round, in rounds whose order of systems rotates, and the report
gives the median and the spread: 13 rounds and then more, two at a time,
while they are expected to end within --time-budget (2m40s) of the start,
so that the default run takes three minutes at most and repeats its
figures as closely as the machine allows; or exactly --repetitions
rounds. A repetition during which the hypervisor stole more than
max_steal of the CPU runs again.`,
		Example: `  loadlab lab
  loadlab lab --quick --ports auto --out /tmp/report
  loadlab lab --print-config > my-lab.yaml && loadlab lab --config my-lab.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.repetitionsGiven = cmd.Flags().Changed("repetitions")
			f.timeBudgetGiven = cmd.Flags().Changed("time-budget")
			f.screenshotsGiven = cmd.Flags().Changed("screenshots")
			return runLab(f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "experiment in YAML (default: the embedded lab experiment; see --print-config)")
	fl.StringVar(&f.out, "out", "report", "directory to write the report into")
	fl.BoolVar(&f.quick, "quick", false, "a smoke run: 50 requests at c = 1 and 5, 3 repetitions")
	fl.IntVar(&f.repetitions, "repetitions", 0, "times each cell runs, in rotating rounds, exactly (default: the config's repetitions; without them, 13 and more as --time-budget allows)")
	fl.DurationVar(&f.timeBudget, "time-budget", 0, "without repetitions: add rounds past 13 while they end within this time of the start (default: the config's time_budget, 2m40s)")
	fl.StringVar(&f.ports, "ports", "fixed", "fixed: the configured ports (the lab's 9002-9005, 44444, 8889); auto: free ones")
	fl.BoolVar(&f.printConfig, "print-config", false, "print the experiment as YAML and exit")
	fl.BoolVar(&f.screenshots, "screenshots", lab.Chromium() != "", "save screenshots of the page, the stats page and the report (needs chromium; on when it is installed)")
	fl.StringVar(&f.compare, "compare", "", "an earlier run's results.json: add the change against it to the report")
	return cmd
}

func runLab(f *labFlags) error {
	if f.ports != "fixed" && f.ports != "auto" {
		return usagef("--ports %q: use fixed or auto", f.ports)
	}
	if f.printConfig && f.config == "" {
		os.Stdout.Write(lab.DefaultYAML)
		return nil
	}
	cfg, err := lab.Load(f.config)
	if err != nil {
		return err
	}
	if f.printConfig {
		fmt.Print(cfg.YAML())
		return nil
	}
	if f.quick {
		cfg.Quick()
	}
	switch {
	case f.repetitionsGiven && f.timeBudgetGiven:
		return usagef("--repetitions and --time-budget: give one; --repetitions sets the rounds, --time-budget lets them fill the time")
	case f.repetitionsGiven:
		if f.repetitions < 1 || f.repetitions > lab.MaxRepetitions {
			return usagef("--repetitions %d: give 1 to %d", f.repetitions, lab.MaxRepetitions)
		}
		cfg.Repetitions, cfg.TimeBudget = f.repetitions, 0
	case f.timeBudgetGiven:
		if f.timeBudget <= 0 {
			return usagef("--time-budget %v: give a duration such as 2m40s", f.timeBudget)
		}
		cfg.Repetitions, cfg.TimeBudget = 0, f.timeBudget
	}
	var baseline *report.Results
	if f.compare != "" {
		if baseline, err = report.LoadResults(f.compare); err != nil {
			return err
		}
	}
	// The report goes there at the end: a directory that cannot take it
	// would lose the whole run.
	if err := writableDir(f.out); err != nil {
		return usagef("--out %s: %v", f.out, err)
	}
	fmt.Fprintf(os.Stderr, "loadlab lab: %d requests at c = %v on %d systems:\n", cfg.Requests, cfg.Levels, len(cfg.Systems))
	for _, line := range lab.Plan(cfg) {
		fmt.Fprintln(os.Stderr, "  "+line)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := lab.Options{Config: cfg, PortsAuto: f.ports == "auto", Log: os.Stderr}
	if f.screenshots {
		if lab.Chromium() == "" {
			return usagef("--screenshots needs chromium (apt-get install chromium)")
		}
		opts.Screenshots = filepath.Join(f.out, "screenshots")
	} else if !f.screenshotsGiven {
		fmt.Fprintln(os.Stderr, "loadlab lab: no screenshots in the report: chromium is not installed (apt-get install chromium)")
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		// One bar for the whole run: repetitions done, and the time left.
		var bar *progressbar.ProgressBar
		opts.Progress = func(label string, done, total int) {
			if bar == nil {
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(),
					progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
			}
			bar.Describe(label)
			bar.Set(done)
		}
	}
	res, err := lab.Run(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted before any cell finished; every process it started is stopped")
		}
		return err
	}
	stop() // a second Ctrl-C, while the report is written, ends it at once
	res.Baseline, res.BaselineName = baseline, f.compare
	if f.screenshots {
		res.Screenshots = append(res.Screenshots, "index.png")
	}
	if err := report.Write(f.out, res); err != nil {
		return err
	}
	if f.screenshots {
		if err := lab.ShootReport(f.out, opts.Screenshots); err != nil {
			fmt.Fprintf(os.Stderr, "loadlab lab: %v\n", err)
		}
	}
	abs, _ := filepath.Abs(f.out)
	if res.Interrupted {
		return fmt.Errorf("interrupted after %s; a partial report of what finished is in %s", res.Duration.Round(time.Second), abs)
	}
	fmt.Fprintf(os.Stderr, "loadlab lab: done in %s; report in %s (REPORT.md, index.html)\n", res.Duration.Round(time.Second), abs)
	return nil
}

// writableDir makes dir if need be and checks that a file can be written
// in it.
func writableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return errors.Unwrap(err) // the path is said already
	}
	f, err := os.CreateTemp(dir, ".loadlab-check-*")
	if err != nil {
		return errors.Unwrap(err)
	}
	f.Close()
	return os.Remove(f.Name())
}
