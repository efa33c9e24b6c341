package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"loadlab/internal/accesslog"
	"loadlab/internal/httpx"
	"loadlab/internal/server"
	"loadlab/internal/site"
	"loadlab/internal/tlsx"
)

type serveFlags struct {
	cfg        server.Config
	root       string
	childModel string
	child      bool // this process is a prefork child
	grace      time.Duration
	maxBody    int64
	logFormat  string
	quiet      bool
	tls        tlsFlags
}

func newServeCommand() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the lab's HTTP server with a chosen concurrency model",
		Long: `Run the lab's HTTP server. GET / answers "Ini Adalah web Server percobaan",
/video redirects to the lab's video, /santai answers "santai saja", POST /form
echoes a form, and every other path is a file of --root (or of the embedded
default site: page.html, sending.html, testing.txt, payload-*.bin).

Models:
  async    one event loop over epoll; --loops N for more (0 = one per core)
  thread   a goroutine per connection; --os-threads pins each to an OS thread
  pool     a goroutine per connection, --workers requests handled at once,
           a --queue of requests waiting for one (a waiting client holds none)
  prefork  --procs child processes sharing the port with SO_REUSEPORT

HTTPS: --tls-cert FILE --tls-key FILE (TLS 1.2 and 1.3, ALPN http/1.1), or
--tls-self-signed for a certificate made at start. SIGHUP reloads the
certificate files; a file that does not load leaves the old certificate.
TLS connections are served on goroutines whatever the model.

Once listening it prints "loadlab serve: ready on ADDR ..." on stderr.
SIGTERM, SIGINT or SIGQUIT (nginx's graceful stop) closes the listener and
lets requests in flight finish within --grace; a second Ctrl-C stops at
once.`,
		Example: `  loadlab serve --model async --listen :9002
  loadlab serve --model thread --listen :8889 --name thread
  loadlab serve --model prefork --procs 4 --root ./www --quiet
  loadlab serve --listen 127.0.0.1:0 --log-format json
  loadlab serve --tls-self-signed --listen :8443
  loadlab serve --tls-cert site.pem --tls-key site.key --listen :443`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd, f) },
	}
	fl := cmd.Flags()
	c := &f.cfg
	fl.StringVar(&c.Model, "model", "async", "concurrency model: "+strings.Join(server.Models, ", "))
	fl.StringVar(&c.Listen, "listen", ":8080", "address to listen on, host:port (port 0 picks a free one)")
	fl.StringVar(&f.root, "root", "", "document root directory (default: the embedded lab site)")
	fl.StringVar(&c.Name, "name", "", "name sent as X-Served-By on every response")
	fl.IntVar(&c.Loops, "loops", 1, "async: event loops (0 = one per core)")
	fl.BoolVar(&c.OSThreads, "os-threads", false, fmt.Sprintf("thread: pin each connection's goroutine to its own OS thread (at most %d connections: Go stops a program past 10000 threads)", server.MaxPinnedConns))
	fl.IntVar(&c.Workers, "workers", 256, "pool: requests handled at once")
	fl.IntVar(&c.Queue, "queue", 1024, "pool: requests that may wait for a worker; beyond it 503")
	fl.IntVar(&c.Procs, "procs", 2, "prefork: child processes")
	fl.StringVar(&f.childModel, "child-model", "async", "prefork: model each child runs (async, thread or pool)")
	fl.DurationVar(&c.HeaderTimeout, "header-timeout", server.DefaultHeaderTimeout, "time allowed to send a request head")
	fl.DurationVar(&c.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "keep-alive wait between requests")
	fl.DurationVar(&c.WriteTimeout, "write-timeout", server.DefaultWriteTimeout, "time allowed to write one response")
	fl.DurationVar(&f.grace, "grace", 10*time.Second, "on SIGTERM, SIGINT or SIGQUIT, time to finish requests in flight")
	fl.IntVar(&c.MaxConns, "max-conns", 0, "open connections allowed; more are answered 503 (0 = no limit)")
	fl.Int64Var(&f.maxBody, "max-body", httpx.DefaultLimits().MaxBody, "largest request body in bytes; larger is 413")
	fl.StringVar(&f.logFormat, "log-format", accesslog.FormatText, "access log format: text or json")
	fl.BoolVar(&f.quiet, "quiet", false, "no access log")
	fl.BoolVar(&c.AcceptProxy, "accept-proxy", false, "expect a PROXY protocol header (v1 or v2) on every connection, from loadlab balance --send-proxy or HAProxy")
	fl.BoolVar(&c.ReusePort, "reuseport", false, "bind with SO_REUSEPORT (used by prefork children)")
	fl.MarkHidden("reuseport")
	fl.BoolVar(&f.child, "prefork-child", false, "run as a prefork child: on a stop, wait on stdin for the parent's word that every child's listener is closed")
	fl.MarkHidden("prefork-child")
	f.tls.add(fl)
	return cmd
}

func (f *serveFlags) validate() error {
	c := &f.cfg
	if !slices.Contains(server.Models, c.Model) {
		return usagef("--model %q is not a model (use %s)", c.Model, strings.Join(server.Models, ", "))
	}
	if c.Model == "prefork" && (f.childModel == "prefork" || !slices.Contains(server.Models, f.childModel)) {
		return usagef("--child-model %q is not a model a child can run (use async, thread or pool)", f.childModel)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		return usagef("--listen %q is not host:port (for example :9002 or 127.0.0.1:9002)", c.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return usagef("--listen %q has no valid port (0 to 65535)", c.Listen)
	}
	for _, v := range []struct {
		name string
		val  int
		min  int
	}{{"--loops", c.Loops, 0}, {"--workers", c.Workers, 1}, {"--queue", c.Queue, 1}, {"--procs", c.Procs, 1}, {"--max-conns", c.MaxConns, 0}} {
		if v.val < v.min {
			return usagef("%s must be at least %d, not %d", v.name, v.min, v.val)
		}
	}
	for _, d := range []struct {
		name string
		val  time.Duration
	}{{"--header-timeout", c.HeaderTimeout}, {"--idle-timeout", c.IdleTimeout}, {"--write-timeout", c.WriteTimeout}, {"--grace", f.grace}} {
		if d.val <= 0 {
			return usagef("%s must be positive, not %s", d.name, d.val)
		}
	}
	if f.maxBody < 0 {
		return usagef("--max-body must not be negative")
	}
	if f.logFormat != accesslog.FormatText && f.logFormat != accesslog.FormatJSON {
		return usagef("--log-format %q is not a format (use text or json)", f.logFormat)
	}
	return f.tls.validate()
}

func runServe(cmd *cobra.Command, f *serveFlags) error {
	if err := f.validate(); err != nil {
		return err
	}
	cfg := f.cfg
	cfg.Limits = httpx.DefaultLimits()
	cfg.Limits.MaxBody = f.maxBody
	h, err := site.New(f.root)
	if err != nil {
		return err
	}
	// A reader of the log pipe that went away must not end the server
	// (SIGPIPE), nor a terminal that hung up (SIGHUP, which reloads the
	// certificates when serve has any, and is otherwise unused).
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	var certs *tlsx.Store
	var certFiles []tlsx.Pair
	if f.tls.on() {
		var cleanup func()
		certs, certFiles, cleanup, err = f.tls.load(func(w string) { fmt.Fprintln(os.Stderr, "loadlab serve: "+w) })
		if err != nil {
			return err
		}
		defer cleanup()
		cfg.TLS = certs.ServerConfig()
	}
	// After the ready line, everything serve says goes through a buffer
	// that never blocks: a log pipe nobody reads must not hold up serving,
	// nor a stop.
	say := accesslog.NewBuffer(os.Stderr, 100*time.Millisecond)
	defer func() {
		if n := say.Dropped(); n > 0 {
			fmt.Fprintf(say, "loadlab serve: %d log lines dropped (the log's reader fell behind)\n", n)
		}
		say.Close()
	}()
	if !f.quiet && cfg.Model != "prefork" {
		if cfg.Log, err = accesslog.NewLogger(say, f.logFormat); err != nil {
			return err
		}
	}
	if cfg.Model == "prefork" {
		cfg.Child = childCommand(cmd.Flags(), f.childModel, certFiles)
	}
	if f.child {
		cfg.ListenerClosed = server.WaitForSiblings(os.Stdin)
	}

	// SIGINT and SIGTERM stay wanted until the process ends: letting go
	// of one, even to ignore it, leaves a moment in which it kills (Go's
	// runtime puts the default action back first). A prefork child gets
	// SIGTERM twice, from its parent and with its process group, and
	// must still finish its downloads.
	stopSignal := make(chan os.Signal, 1)
	signal.Notify(stopSignal, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT) // SIGQUIT: nginx's graceful stop, not Go's stack dump
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	srv, err := server.Start(cfg, h)
	if err != nil {
		return err
	}
	if certs != nil {
		// Wanted before the ready line, not in the goroutine: a SIGHUP
		// right after it (a prefork parent passing one on to a child that
		// just said it is ready) would otherwise meet signal.Ignore's
		// setting and be lost, and that child kept the old certificate.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		go reloadOnHangUp(ctx, hup, certs, srv, say)
	}
	fmt.Fprintln(os.Stderr, server.ReadyLine(cfg.Model, srv.Addr(), tlsNote(certs.Info())))
	select {
	case <-stopSignal:
	case <-srv.Done():
		return fmt.Errorf("server on %s stopped unexpectedly", srv.Addr())
	}
	stop()
	signal.Reset(syscall.SIGINT) // a second Ctrl-C ends the process at once
	began := time.Now()
	fmt.Fprintf(say, "loadlab serve: stopping: no new connections; requests in flight have %v (pid %d)\n", f.grace, os.Getpid())
	grace, cancel := context.WithTimeout(context.Background(), f.grace)
	defer cancel()
	if err := srv.Shutdown(grace); err != nil {
		fmt.Fprintf(say, "loadlab serve: grace period over, closed connections still in flight\n")
	}
	fmt.Fprintf(say, "loadlab serve: stopped after %v\n", time.Since(began).Round(time.Millisecond))
	return nil
}

// childCommand builds a prefork child: this same binary running "serve"
// with the parent's flags, the child model, the parent's port and
// SO_REUSEPORT.
func childCommand(flags *pflag.FlagSet, childModel string, certFiles []tlsx.Pair) func(addr string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	var pass []string
	flags.Visit(func(fl *pflag.Flag) {
		switch fl.Name {
		case "model", "listen", "procs", "child-model", "reuseport", "prefork-child", "tls-cert", "tls-key", "tls-self-signed":
			return
		}
		pass = append(pass, "--"+fl.Name+"="+fl.Value.String())
	})
	// The parent's certificate files, a self-signed one included: every
	// child serves the same certificate.
	for _, p := range certFiles {
		pass = append(pass, "--tls-cert="+p.CertFile, "--tls-key="+p.KeyFile)
	}
	return func(addr string) *exec.Cmd {
		args := append([]string{"serve", "--model", childModel, "--listen", addr, "--reuseport", "--prefork-child"}, pass...)
		cmd := exec.Command(self, args...)
		// A child must not outlive a parent that was killed outright.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		return cmd
	}
}

// tlsNote is what the ready line says of TLS: the default certificate's
// fingerprint, for a client to pin or compare.
func tlsNote(certs []tlsx.CertInfo) string {
	if len(certs) == 0 {
		return ""
	}
	return "TLS, sha256 " + certs[0].Fingerprint
}

// reloadOnHangUp re-reads the certificate files on every SIGHUP that
// hup brings, as nginx does its configuration; a prefork parent passes
// the signal on to its children, which serve. A file that does not load keeps the old
// certificate and says so in one line.
func reloadOnHangUp(ctx context.Context, hup <-chan os.Signal, certs *tlsx.Store, srv server.Server, say io.Writer) {
	// SIGHUP stays wanted after the reloads end (not signal.Stop): a
	// hang-up while serve stops must not kill it.
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if p, ok := srv.(interface{ Signal(os.Signal) }); ok {
			p.Signal(syscall.SIGHUP)
		}
		if err := certs.Reload(); err != nil {
			fmt.Fprintf(say, "loadlab serve: certificate reload refused, the old certificate stays: %v\n", err)
			continue
		}
		fmt.Fprintf(say, "loadlab serve: certificates reloaded (sha256 %s)\n", certs.Info()[0].Fingerprint)
	}
}
