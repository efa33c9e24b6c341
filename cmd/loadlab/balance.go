package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"loadlab"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"loadlab/internal/accesslog"
	"loadlab/internal/balancer"
	"loadlab/internal/tlsx"
)

type balanceFlags struct {
	cfg        balancer.Config
	backends   []string
	configFile string
	grace      time.Duration
	check      bool // --check: validate the configuration and exit
	print      bool // --print-config
	logFormat  string
	quiet      bool
	tls        tlsFlags
	tlsPairs   []tlsx.Pair // the flags' certificates, over the file's
}

func newBalanceCommand() *cobra.Command {
	f := &balanceFlags{}
	cmd := &cobra.Command{
		Use:   "balance",
		Short: "Run a TCP (L4) or HTTP (L7) load balancer with health checks",
		Long: `Balance connections (--mode tcp, the lab's) or requests (--mode http) over
backends, with health checks, several algorithms, an access log, and an
admin listener with a stats page, a JSON API and Prometheus metrics.

SIGHUP reloads --config without dropping a connection; an invalid file is
refused with one line and the running configuration stays. SIGTERM,
SIGINT, SIGUSR1 (HAProxy's soft stop) or SIGQUIT stops accepting and lets
connections finish within --grace; a second Ctrl-C stops at once.`,
		Example: `  loadlab balance --listen :44444 --backend 127.0.0.1:9002 --backend 127.0.0.1:9003 \
      --backend 127.0.0.1:9004 --backend 127.0.0.1:9005
  loadlab balance --mode http --algo leastconn --health-check http --check-path /santai \
      --backend 127.0.0.1:9002 --backend 127.0.0.1:9003,weight=3 --admin :9000
  loadlab balance --config examples/balance/lab.yaml --admin 127.0.0.1:9000
  loadlab balance --check --config examples/balance/lab.yaml     # validate, as haproxy -c
  loadlab balance --print-config --mode http --backend 127.0.0.1:9002   # the effective configuration, as YAML
  loadlab balance --mode http --tls-cert site.pem --tls-key site.key \
      --backend-tls --backend-ca backends-ca.pem --backend 10.0.0.2:8443 --backend 10.0.0.3:8443`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && (args[0] == "tcp" || args[0] == "http" || args[0] == "none") {
				return usagef("--check %s: the health check is --health-check %s now; --check alone checks the configuration", args[0], args[0])
			}
			return noArgs(cmd, args)
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return runBalance(cmd, f) },
	}
	fl := cmd.Flags()
	c := &f.cfg
	fl.StringVar(&c.Listen, "listen", ":44444", "address to listen on")
	fl.StringArrayVar(&f.backends, "backend", nil, "backend host:port[,weight=N][,maxconn=N][,backup] or srv://name (repeatable); past maxconn at once, traffic goes elsewhere or waits --queue-timeout; a backup takes traffic only while no other backend is available")
	fl.StringVar(&c.Mode, "mode", "tcp", "tcp: per connection (event loops, bytes passed as they come); http: per request")
	fl.StringVar(&c.Algo, "algo", "roundrobin", "algorithm: "+strings.Join(balancer.Algorithms, ", "))
	fl.StringVar(&c.HashBy, "hash-by", "source", "sourcehash's key: source (the client's address), sni (the server name of its TLS hello; tcp mode reads it from TLS passed through, as HAProxy's req.ssl_sni), or in http mode uri (the path, as HAProxy's balance uri) or header:NAME (as its balance hdr; without the header, the client's address)")
	fl.StringVar(&c.Check.Kind, "health-check", "tcp", "health check: tcp, http or none")
	fl.StringVar(&c.Check.Path, "check-path", "/", "http check: path to GET")
	fl.StringVar(&c.Check.Host, "check-host", "", "http check: the Host it sends (default: the backend's address), for a backend that serves by name")
	fl.StringVar(&c.Check.Expect, "check-expect", "", "http check: the statuses that pass, as HAProxy's http-check expect status: 200, 2xx, 200-299, or a list of them (default: 2xx and 3xx)")
	fl.DurationVar(&c.Check.Interval, "check-interval", 2*time.Second, "time between checks")
	fl.DurationVar(&c.Check.Timeout, "check-timeout", time.Second, "time a check may take")
	fl.IntVar(&c.Check.Rise, "rise", 2, "passing checks in a row that bring a backend back")
	fl.IntVar(&c.Check.Fall, "fall", 3, "failing checks in a row that take a backend out")
	fl.StringVar(&c.Cookie, "cookie", "", "http: keep each client to one backend with this cookie, set on its first answer (HAProxy's cookie NAME insert indirect nocache)")
	fl.IntVar(&c.Retries, "retries", balancer.DefaultRetries, "other backends tried after a failed connect")
	fl.BoolVar(&c.AllBackups, "all-backups", false, "when only backup backends are left, all of them take traffic, not the first alone (HAProxy's option allbackups)")
	fl.DurationVar(&c.ConnectTimeout, "connect-timeout", balancer.DefaultConnectTimeout, "time to connect to a backend")
	fl.DurationVar(&c.ClientIdle, "client-idle", balancer.DefaultClientIdle, "idle time after which a client connection closes")
	fl.DurationVar(&c.ServerIdle, "server-idle", balancer.DefaultServerIdle, "idle time after which a backend connection closes (http: time to answer)")
	fl.DurationVar(&c.HeadTimeout, "head-timeout", balancer.DefaultHeadTimeout, "http: time to receive a request head")
	fl.Int64Var(&c.MaxBody, "max-body", balancer.DefaultMaxBody, "http: largest request body in bytes, held whole before it goes on; larger is 413")
	fl.IntVar(&c.MaxConns, "max-conns", 0, "client connections at once (0 = no limit); more wait --queue-timeout, then are refused")
	fl.DurationVar(&c.QueueTimeout, "queue-timeout", 0, "time a connection over --max-conns, or a connection (tcp) or request (http) that finds every backend at its maxconn, may wait for a slot (default: --connect-timeout, as HAProxy's timeout queue)")
	fl.StringVar(&c.SendProxy, "send-proxy", "", "send a PROXY protocol header to backends: v1 or v2")
	fl.DurationVar(&c.ResolveEvery, "resolve-every", 0, "look backend host names (and srv:// records) up again this often")
	fl.BoolVar(&c.BackendTLS.Enabled, "backend-tls", false, "speak TLS to the backends (sessions resumed; health checks over TLS too)")
	fl.StringVar(&c.BackendTLS.CA, "backend-ca", "", "with --backend-tls: verify the backends' certificates against the CAs in this PEM file (default: the system's)")
	fl.BoolVar(&c.BackendTLS.Insecure, "backend-tls-insecure", false, "with --backend-tls: do not verify the backends' certificates")
	fl.StringVar(&f.configFile, "config", "", "YAML configuration file; flags given as well override it")
	fl.StringVar(&c.Admin.Listen, "admin", "", "admin listener (stats page, /metrics, /api/backends); host-less binds loopback")
	fl.StringVar(&c.Admin.Token, "admin-token", "", "require the token on the admin listener: 'Authorization: Bearer TOKEN', or basic auth with it as the password")
	fl.StringVar(&c.Admin.User, "admin-user", "", "with --admin-token: the user name basic auth must give (default: any)")
	fl.BoolVar(&f.check, "check", false, "check the configuration (--config and flags) and exit: 0 if it is valid, 1 if not, as haproxy -c")
	fl.BoolVar(&f.print, "print-config", false, "print the effective configuration (--config, flags, defaults) as YAML and exit")
	fl.DurationVar(&f.grace, "grace", 10*time.Second, "on SIGTERM, SIGINT, SIGUSR1 or SIGQUIT, time for connections to finish")
	fl.StringVar(&f.logFormat, "log-format", accesslog.FormatText, "access log format: text or json")
	fl.BoolVar(&f.quiet, "quiet", false, "no access log")
	f.tls.add(fl)
	return cmd
}

// load builds the configuration: the file if there is one, with the flags
// the user gave on top. The flags write into f.cfg, so the file is loaded
// into f.cfg and the given flags are set again over it.
func (f *balanceFlags) load(flags *pflag.FlagSet) (balancer.Config, error) {
	if f.configFile != "" {
		given := map[string]string{}
		flags.Visit(func(fl *pflag.Flag) {
			switch fl.Name {
			case "backend", "tls-cert", "tls-key": // string arrays: setting them again would repeat them
			default:
				given[fl.Name] = fl.Value.String()
			}
		})
		fileCfg, err := balancer.LoadConfig(f.configFile)
		if err != nil {
			return f.cfg, err
		}
		listen := f.cfg.Listen
		f.cfg = fileCfg
		if f.cfg.Listen == "" {
			f.cfg.Listen = listen
		}
		for name, v := range given {
			flags.Lookup(name).Value.Set(v)
		}
	}
	cfg := f.cfg
	for _, spec := range f.backends {
		bc, err := balancer.ParseBackend(spec)
		if err != nil {
			return cfg, usagef("--backend: %v", err)
		}
		cfg.Backends = append(cfg.Backends, bc)
	}
	if len(f.tlsPairs) > 0 {
		cfg.TLS = f.tlsPairs
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

func runBalance(cmd *cobra.Command, f *balanceFlags) error {
	if f.logFormat != accesslog.FormatText && f.logFormat != accesslog.FormatJSON {
		return usagef("--log-format %q is not a format (use text or json)", f.logFormat)
	}
	if err := f.tls.validate(); err != nil {
		return err
	}
	if f.tls.selfSigned {
		// Made once, here: a reload keeps it.
		_, pairs, cleanup, err := f.tls.load(func(string) {})
		if err != nil {
			return err
		}
		defer cleanup()
		f.tlsPairs = pairs
	}
	for i := range f.tls.certs {
		f.tlsPairs = append(f.tlsPairs, tlsx.Pair{CertFile: f.tls.certs[i], KeyFile: f.tls.keys[i]})
	}
	cfg, err := f.load(cmd.Flags())
	if f.check || f.print {
		return checkOrPrint(f, cfg, err)
	}
	if err != nil {
		return err
	}
	// Signals are taken before anything starts: a SIGHUP sent as soon as
	// "ready" is read must reload, not end the process (Go's default).
	signal.Ignore(syscall.SIGPIPE) // a reader of the log pipe that went away must not end the balancer
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	// The stop signals stay wanted until the process ends (see serve): a
	// second SIGTERM while connections drain must not cut them. SIGUSR1
	// is HAProxy's soft stop; SIGQUIT, nginx's graceful one, would
	// otherwise be Go's stack dump.
	stopSignal := make(chan os.Signal, 1)
	signal.Notify(stopSignal, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGQUIT)
	if !f.quiet {
		log, buf, err := accesslog.New(os.Stderr, f.logFormat)
		if err != nil {
			return err
		}
		defer buf.Close()
		cfg.Log = log
	}
	b, err := balancer.Start(cfg)
	if err != nil {
		return err
	}
	sayCertWarnings(b)
	// The admin listener is up before "ready" is said: a script that
	// waits for that line may ask the API at once.
	var admin *balancer.Admin
	if cfg.Admin.Listen != "" {
		if admin, err = balancer.StartAdmin(b, cfg.Admin); err != nil {
			b.Shutdown(context.Background())
			return err
		}
		defer admin.Close()
	}
	note := tlsNote(b.Certificates())
	if note != "" {
		note = ", " + note
	}
	fmt.Fprintf(os.Stderr, "loadlab balance"+loadlab.ReadyMark+"%s (mode %s, algo %s, %s, pid %d%s)\n",
		b.Addr(), cfg.Mode, cfg.Algo, poolNote(b), os.Getpid(), note)
	if admin != nil {
		fmt.Fprintf(os.Stderr, "loadlab balance: admin on http://%s/\n", admin.Addr())
	}

	for {
		select {
		case <-hup:
			next, err := f.load(cmd.Flags())
			switch {
			case err != nil:
			case next.Admin.Listen != cfg.Admin.Listen:
				err = errors.New("admin.listen cannot change on reload; restart the balancer")
			default:
				err = b.Reload(next)
			}
			if err == nil && admin != nil {
				admin.SetAuth(next.Admin)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "loadlab balance: reload refused, the running configuration stays: %v\n", err)
			} else {
				sayCertWarnings(b)
				fmt.Fprintf(os.Stderr, "loadlab balance: reloaded (%s%s)\n", poolNote(b), certsNote(b.Certificates()))
			}
		case <-stopSignal:
			signal.Reset(syscall.SIGINT) // a second Ctrl-C ends the process at once
			grace, cancel := context.WithTimeout(context.Background(), f.grace)
			defer cancel()
			if err := b.Shutdown(grace); err != nil {
				fmt.Fprintln(os.Stderr, "loadlab balance: grace period over, closed connections still open")
			}
			return nil
		}
	}
}

func sayCertWarnings(b *balancer.Balancer) {
	for _, w := range b.CertWarnings() {
		fmt.Fprintln(os.Stderr, "loadlab balance: "+w)
	}
}

// certsNote is what a reload line says of the certificates it loaded.
// backendsNote counts backends for a status line: "4 backends", "1
// backend", "3 backends, 1 of them backup". backup says whether the i-th
// of n is one.
func backendsNote(n int, backup func(i int) bool) string {
	backups := 0
	for i := range n {
		if backup(i) {
			backups++
		}
	}
	s := fmt.Sprintf("%d backend", n)
	if n != 1 {
		s += "s"
	}
	if backups > 0 {
		s += fmt.Sprintf(", %d of them backup", backups)
	}
	return s
}

// poolNote is backendsNote of the pool a running balancer has: srv://
// entries as DNS last named them.
func poolNote(b *balancer.Balancer) string {
	all := b.Pool().All()
	return backendsNote(len(all), func(i int) bool { return all[i].Backup() })
}

func certsNote(certs []tlsx.CertInfo) string {
	if len(certs) == 0 {
		return ""
	}
	return fmt.Sprintf(", %d certificates, sha256 %s", len(certs), certs[0].Fingerprint)
}

// checkOrPrint is --check and --print-config: the configuration is
// loaded as a start would load it, certificate and CA files included, and
// nothing is started.
func checkOrPrint(f *balanceFlags, cfg balancer.Config, err error) error {
	if err == nil {
		err = cfg.CheckFiles()
	}
	name := f.configFile
	if name == "" {
		name = "(flags only)"
	}
	if err != nil {
		if f.check {
			return fmt.Errorf("configuration %s is not valid: %v", name, err) // exit 1, as haproxy -c
		}
		return err
	}
	if f.print {
		fmt.Print(cfg.YAML())
		return nil
	}
	fmt.Printf("configuration %s is valid: mode %s, algo %s, %s\n", name, cfg.Mode, cfg.Algo, backendsNote(len(cfg.Backends), func(i int) bool { return cfg.Backends[i].Backup }))
	return nil
}
