package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"loadlab"
	"loadlab/internal/bench"
)

// abUsageExit is ab's exit status for a usage error.
const abUsageExit = 22

type benchFlags struct {
	requests    int
	levels      string
	timelimit   string
	timeout     string
	keepAlive   bool
	headers     []string
	cookies     []string
	auth        string
	method      string
	head        bool
	postFile    string
	putFile     string
	contentType string
	continueErr bool
	varLength   bool
	quiet       bool
	verbosity   int
	// noPercentiles and noConfidence are ab's -d and -S.
	noPercentiles, noConfidence bool
	// tableAttrs, trAttrs and tdAttrs are ab's -x, -y and -z, for -w.
	tableAttrs, trAttrs, tdAttrs string
	proxy, proxyAuth, localAddr  string
	windowSize                   int
	percentCSV                   string
	gnuplot                      string
	html                         bool
	version                      bool
	http11                       bool
	rate                         float64
	format                       string
	out                          string
	warmup                       int
	timeline                     time.Duration
	tls                          bench.TLS
}

func newBenchCommand() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench [options] URL",
		Short: "Load-test a URL with ApacheBench's options and report",
		Long: `Load-test an HTTP server. Takes ab's options and prints ab's report, with
exact request counts, percentiles from an HDR histogram, an open-model
--rate mode, several -c levels in one run, and JSON, CSV or markdown output.`,
		Example: `  loadlab bench -n 1000 -c 10 http://127.0.0.1:9002/
  loadlab bench -k -t 10 -c 100 http://127.0.0.1:9002/
  loadlab bench -n 1000 -c 1,5,10,30,50,75,100 --format markdown http://127.0.0.1:44444/
  loadlab bench --rate 2000 -c 50 -t 30 --format json --out run.json http://127.0.0.1:8889/santai
  loadlab bench -n 1000 -c 10 -f TLS1.3 https://localhost:8443/`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.version {
				return nil
			}
			if len(args) != 1 {
				return usageError{fmt.Errorf("bench needs exactly one URL, like http://127.0.0.1:9002/"), abUsageExit}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return runBench(cmd, f, args) },
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err, abUsageExit} })
	// -h exits as ab's does, 22, after the help.
	help := cmd.HelpFunc()
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		help(c, args)
		os.Exit(abUsageExit)
	})
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.IntVarP(&f.requests, "requests", "n", 0, "number of requests to perform (default 1; 50000 with -t)")
	fl.StringVarP(&f.levels, "concurrency", "c", "1", "requests in flight at once; a list (1,5,10) runs each level in turn")
	fl.StringVarP(&f.timelimit, "timelimit", "t", "", "seconds (or a duration) to run at most; implies -n 50000")
	fl.StringVarP(&f.timeout, "timeout", "s", "30", "seconds (or a duration) each response may take, from its start to its last byte")
	fl.BoolVarP(&f.keepAlive, "keepalive", "k", false, "use HTTP keep-alive")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "extra header, 'Name: value' (repeatable)")
	fl.StringArrayVarP(&f.cookies, "cookie", "C", nil, "cookie, 'name=value' (repeatable)")
	fl.StringVarP(&f.auth, "auth", "A", "", "basic authentication, user:password")
	fl.StringVarP(&f.method, "method", "m", "", "request method")
	fl.BoolVarP(&f.head, "head", "i", false, "send HEAD requests")
	fl.StringVarP(&f.postFile, "post-file", "p", "", "file to POST (set -T too)")
	fl.StringVarP(&f.putFile, "put-file", "u", "", "file to PUT (set -T too)")
	fl.StringVarP(&f.contentType, "content-type", "T", "", "Content-Type of the -p/-u body (default text/plain)")
	fl.BoolVarP(&f.continueErr, "continue-on-error", "r", false, "don't exit on socket receive errors")
	fl.BoolVarP(&f.varLength, "variable-length", "l", false, "accept responses of varying length")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress output")
	fl.BoolVarP(&f.noPercentiles, "no-percentiles", "d", false, "do not show the table of the percentage served within a time")
	fl.BoolVarP(&f.noConfidence, "no-confidence", "S", false, "do not show the confidence estimators (sd, median) and warnings")
	fl.IntVarP(&f.verbosity, "verbosity", "v", 0, "how much to tell: 2 or more prints the request as sent")
	fl.StringVarP(&f.percentCSV, "percentile-csv", "e", "", "write ab's CSV of the percentage served within each time")
	fl.StringVarP(&f.gnuplot, "gnuplot", "g", "", "write ab's gnuplot TSV of every request")
	fl.BoolVarP(&f.html, "html", "w", false, "print the results as an HTML table")
	fl.StringVarP(&f.tableAttrs, "table-attributes", "x", "", "-w: attributes of the <table>")
	fl.StringVarP(&f.trAttrs, "tr-attributes", "y", "", "-w: attributes of every <tr>")
	fl.StringVarP(&f.tdAttrs, "td-attributes", "z", bench.DefaultTD, "-w: attributes of every <td> and <th>")
	fl.StringVarP(&f.proxy, "proxy", "X", "", "send the requests through this HTTP proxy, proxy:port")
	fl.StringVarP(&f.proxyAuth, "proxy-auth", "P", "", "basic authentication for the proxy, user:password")
	fl.StringVarP(&f.localAddr, "bind", "B", "", "local address to connect from")
	fl.IntVarP(&f.windowSize, "window-size", "b", 0, "size of each socket's send and receive buffers, in bytes")
	fl.StringVarP(&f.tls.ClientCert, "client-cert", "E", "", "https: client certificate chain and its private key, one PEM file")
	fl.BoolVarP(&f.version, "version", "V", false, "print the version and exit")
	fl.BoolVar(&f.http11, "http1.1", false, "send HTTP/1.1 requests instead of HTTP/1.0")
	fl.Float64Var(&f.rate, "rate", 0, "open model: send this many requests per second (-c caps those in flight)")
	fl.StringVar(&f.format, "format", "text", "output: text, json, csv or markdown")
	fl.StringVar(&f.out, "out", "", "write the output to this file instead of stdout")
	fl.IntVar(&f.warmup, "warmup", 0, "requests sent first and not counted")
	fl.DurationVar(&f.timeline, "timeline", 0, "count completed, failed and non-2xx requests per interval of this length (e.g. 100ms)")
	fl.StringVarP(&f.tls.Ciphers, "ciphers", "Z", "", "https: TLS 1.2 cipher suites, OpenSSL names joined by ':' (ECDHE-ECDSA-AES128-GCM-SHA256)")
	fl.StringVarP(&f.tls.Protocol, "protocol", "f", "ALL", "https: TLS1, TLS1.1, TLS1.2, TLS1.3 or ALL")
	fl.BoolVarP(&f.tls.NoSNI, "no-sni", "I", false, "https: send no server name (SNI)")
	fl.BoolVar(&f.tls.Verify, "tls-verify", false, "https: verify the server's certificate (ab does not), against the system's roots or --tls-ca")
	fl.StringVar(&f.tls.CAFile, "tls-ca", "", "https: verify against the CA certificates in this PEM file")
	fl.BoolVar(&f.tls.Resume, "tls-resume", false, "https: resume TLS sessions on new connections (ab makes a full handshake on each)")
	return cmd
}

// seconds reads ab's seconds ("10", "0.5") or a Go duration ("10s").
func seconds(flag, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
		return time.Duration(n * float64(time.Second)), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d, nil
	}
	return 0, usageError{fmt.Errorf("%s %q: want seconds, like 10 or 2.5s", flag, v), abUsageExit}
}

func (f *benchFlags) work(url string) (bench.Work, []int, error) {
	bad := func(format string, args ...any) error {
		return usageError{fmt.Errorf(format, args...), abUsageExit}
	}
	w := bench.Work{
		URL: url, Requests: f.requests, KeepAlive: f.keepAlive, HTTP11: f.http11, Headers: f.headers,
		Cookies: f.cookies, BasicAuth: f.auth, ContentType: f.contentType, ContinueOnError: f.continueErr,
		VariableLength: f.varLength, Rate: f.rate, Warmup: f.warmup, KeepSamples: f.gnuplot != "",
		Interval: f.timeline, TLS: f.tls, Proxy: f.proxy, ProxyAuth: f.proxyAuth, LocalAddr: f.localAddr, WindowSize: f.windowSize,
		Method: strings.ToUpper(f.method),
	}
	var err error
	if w.TimeLimit, err = seconds("-t", f.timelimit); err != nil {
		return w, nil, err
	}
	if w.Timeout, err = seconds("-s", f.timeout); err != nil {
		return w, nil, err
	}
	levels, err := bench.Levels(f.levels)
	if err != nil {
		return w, nil, bad("%v", err)
	}
	for _, h := range f.headers {
		if !strings.Contains(h, ":") {
			return w, nil, bad("-H %q: want 'Name: value'", h)
		}
	}
	switch {
	case f.postFile != "" && f.putFile != "":
		return w, nil, bad("-p and -u cannot be used together")
	case f.head && (f.postFile != "" || f.putFile != ""):
		return w, nil, bad("-i cannot be used with -p or -u")
	case f.head:
		w.Method = "HEAD"
	}
	for _, body := range []struct{ file, method string }{{f.postFile, "POST"}, {f.putFile, "PUT"}} {
		if body.file == "" {
			continue
		}
		if w.Body, err = readBody(body.file); err != nil {
			return w, nil, err
		}
		if w.Method == "" {
			w.Method = body.method
		}
	}
	switch f.format {
	case "text", "json", "csv", "markdown":
	default:
		return w, nil, bad("--format %q: use text, json, csv or markdown", f.format)
	}
	return w, levels, nil
}

// maxBodyFile bounds what -p and -u read: the body is held in memory and
// sent with every request, and a device such as /dev/zero never ends.
const maxBodyFile = 64 << 20

// readBody reads the file of -p or -u, a pipe (/dev/stdin) too, whole.
func readBody(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", name, errors.Unwrap(err))
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, maxBodyFile+1))
	switch {
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %s: %v", name, err)
	case len(body) > maxBodyFile:
		return nil, fmt.Errorf("%s is larger than %d MiB: bench holds the body in memory and sends it with every request; give a smaller file", name, maxBodyFile>>20)
	}
	if body == nil {
		body = []byte{} // an empty file still makes a POST with Content-Length: 0
	}
	return body, nil
}

func runBench(cmd *cobra.Command, f *benchFlags, args []string) error {
	if f.version {
		fmt.Fprintf(cmd.OutOrStdout(), "This is loadlab bench, Version %s (ApacheBench 2.3 compatible)\n", loadlab.Version)
		return nil
	}
	if cmd.Flags().Changed("requests") && f.requests == 0 { // not the default: ab refuses it too
		return usageError{errors.New("-n 0: want a positive number of requests"), abUsageExit}
	}
	w, levels, err := f.work(args[0])
	if err != nil {
		return err
	}
	out := io.Writer(os.Stdout)
	if f.out != "" {
		file, err := os.Create(f.out)
		if err != nil {
			return fmt.Errorf("--out: %v", err)
		}
		defer file.Close()
		out = file
	}
	text := f.format == "text"
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var runs []*bench.Summary
	var runErr error
	for _, c := range levels {
		w.Concurrency = c
		if err := w.Check(); err != nil {
			return benchError(err)
		}
	}
	for i, c := range levels {
		w.Concurrency = c
		if text {
			if len(levels) > 1 {
				fmt.Fprintf(out, "\n=== Concurrency level %d (%d of %d) ===\n", c, i+1, len(levels))
			}
			// As ab: a line of its own when progress lines follow, else
			// dots and "..done" once the run is over; in HTML, ab's
			// paragraph and no "Benchmarking" line.
			through := ""
			if w.Proxy != "" {
				through = "[through " + w.Proxy + "] "
			}
			switch {
			case f.html:
				fmt.Fprintf(out, "<p>\n This is loadlab bench, Version %s <i>&lt;ApacheBench 2.3 compatible&gt;</i><br>\n</p>\n<p>\n", loadlab.Version)
			case heartbeat(f.quiet, w.Requests):
				fmt.Fprintf(out, "This is loadlab bench, Version %s (ApacheBench 2.3 compatible)\n\n", loadlab.Version)
				fmt.Fprintf(out, "Benchmarking %s %s(be patient)\n", hostOf(w.URL), through)
			default:
				fmt.Fprintf(out, "This is loadlab bench, Version %s (ApacheBench 2.3 compatible)\n\n", loadlab.Version)
				fmt.Fprintf(out, "Benchmarking %s %s(be patient)...", hostOf(w.URL), through)
			}
		}
		if req, err := w.RequestBytes(); err == nil && f.verbosity >= 2 {
			fmt.Fprintf(out, "INFO: %s header == \n---\n%s\n---\n", strings.Fields(string(req))[0], req) // as ab -v 2 prints it
		}
		w.Verbosity, w.Trace = f.verbosity, out
		progress, finish := newProgress(f.quiet, w.Requests, w.TimeLimit > 0)
		s, err := bench.Run(ctx, w, progress)
		finish(s)
		if s == nil {
			return benchError(err)
		}
		var aborted *bench.Aborted
		if text && errors.As(err, &aborted) {
			// As ab: its error, no report, and its status.
			fmt.Fprintln(os.Stderr, aborted.Msg)
			return exitCode(aborted.Code)
		}
		if text && !heartbeat(f.quiet, w.Requests) {
			fmt.Fprint(out, "..done\n")
		}
		runs = append(runs, s)
		if text {
			if f.html {
				bench.WriteHTML(out, s, bench.HTMLAttrs{Table: f.tableAttrs, TR: f.trAttrs, TD: f.tdAttrs})
			} else {
				bench.WriteText(out, s, bench.TextOptions{NoPercentiles: f.noPercentiles, NoConfidence: f.noConfidence})
			}
		}
		if err := writeABFiles(f, s, len(levels) > 1); err != nil {
			return err
		}
		if err != nil || ctx.Err() != nil {
			runErr = err
			break
		}
	}
	switch f.format {
	case "text":
		if len(runs) > 1 {
			fmt.Fprintln(out)
			bench.WriteMarkdown(out, runs)
		}
	case "markdown":
		bench.WriteMarkdown(out, runs)
	case "json":
		bench.WriteJSON(out, runs)
	case "csv":
		bench.WriteCSV(out, runs)
	}
	if runErr != nil {
		var ab *bench.Aborted
		if errors.As(runErr, &ab) {
			fmt.Fprintln(os.Stderr, ab.Msg)
			fmt.Fprintf(os.Stderr, "Total of %d requests completed\n", runs[len(runs)-1].Complete)
			return exitCode(1)
		}
		return runErr
	}
	if ctx.Err() != nil {
		return exitCode(1) // interrupted, as ab: results so far printed, status 1
	}
	return nil
}

// benchError turns a failure to start into the one-line error a user sees.
func benchError(err error) error {
	var ue *bench.UsageError
	if errors.As(err, &ue) {
		return usageError{ue, abUsageExit}
	}
	var ab *bench.Aborted
	if errors.As(err, &ab) {
		return errors.New(ab.Msg)
	}
	return err
}

func hostOf(url string) string {
	_, h, ok := strings.Cut(url, "://")
	if !ok {
		h = url
	}
	if i := strings.IndexAny(h, "/?"); i >= 0 {
		h = h[:i]
	}
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	return h
}

// writeABFiles writes ab's -e and -g files; with several levels each
// level's file gets the level in its name.
func writeABFiles(f *benchFlags, s *bench.Summary, several bool) error {
	for _, file := range []struct {
		name  string
		write func(io.Writer, *bench.Summary)
	}{{f.percentCSV, bench.WritePercentileCSV}, {f.gnuplot, bench.WriteGnuplot}} {
		if file.name == "" {
			continue
		}
		name := file.name
		if several {
			name = fmt.Sprintf("%s.c%d", name, s.Concurrency)
		}
		out, err := os.Create(name)
		if err != nil {
			return fmt.Errorf("cannot write %s: %v", name, errors.Unwrap(err))
		}
		file.write(out, s)
		if err := out.Close(); err != nil {
			return err
		}
	}
	return nil
}

// newProgress reports progress as ab does, "Completed N requests" lines on
// stderr, or as a bar when stderr is a terminal.
// heartbeat says whether ab would print progress: more than 150
// requests, and no -q.
func heartbeat(quiet bool, n int) bool { return !quiet && n > 150 }

func newProgress(quiet bool, n int, timed bool) (bench.Progress, func(*bench.Summary)) {
	if !heartbeat(quiet, n) {
		return nil, func(*bench.Summary) {}
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar := progressbar.NewOptions64(int64(n), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("requests"), progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond))
		var mu sync.Mutex
		return func(done int64) {
				mu.Lock()
				bar.Set64(done)
				mu.Unlock()
			}, func(s *bench.Summary) {
				bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
	}
	var mu sync.Mutex
	return func(done int64) {
			mu.Lock()
			fmt.Fprintf(os.Stderr, "Completed %d requests\n", done)
			mu.Unlock()
		}, func(s *bench.Summary) {
			if s != nil && (s.Complete == int64(n) || timed) {
				fmt.Fprintf(os.Stderr, "Finished %d requests\n", s.Complete)
			}
		}
}
