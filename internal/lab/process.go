package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"loadlab"
	"loadlab/internal/tlsx"
)

// running is a started process.
type running struct {
	proc  Process
	addr  string
	cmd   *exec.Cmd
	admin string        // balance: its admin address
	done  chan struct{} // closed when the process has exited
	err   error         // how it exited, once done is closed

	mu      sync.Mutex
	last    string        // the last lines it printed
	drained chan struct{} // closed when its output has all been read
}

// said is the last lines the process printed.
func (rp *running) said() string {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return orNothing(rp.last)
}

// exitNote says, once the process has exited, how it ended, what it left
// running in the background (stopped now), and the last it printed.
func (rp *running) exitNote() string {
	status := "exit status 0"
	if rp.err != nil {
		status = rp.err.Error()
	}
	note := "(" + status + ")"
	if left := stopEscaped(rp.cmd.Process.Pid); left != "" {
		note += ", leaving " + left + " running in the background (stopped now"
		if rp.proc.Run == "command" && rp.err == nil { // it put its server there on purpose
			note += ": a command must stay in the foreground, as nginx does with `daemon off;`, haproxy with -db"
		}
		note += ")"
	}
	// Its last lines may still be in the pipe: give the reader a moment
	// to take them, but no more, in case something else holds it open.
	select {
	case <-rp.drained:
	case <-time.After(100 * time.Millisecond):
	}
	return note + "; it said: " + rp.said()
}

// readyTimeout bounds a process's start.
const readyTimeout = 15 * time.Second

// start launches every process of s in order (backends before the
// balancer that names them) and waits for each to be ready.
func (r *runner) start(s System, ports map[string]int) ([]*running, error) {
	addrs := map[string]string{}
	for _, p := range s.Processes {
		addrs[p.Name] = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[p.Name]))
	}
	var started []*running
	for _, p := range s.Processes {
		rp, err := r.launch(s, p, addrs)
		if err != nil {
			stopAll(started)
			return nil, err
		}
		started = append(started, rp)
	}
	return started, nil
}

func (r *runner) launch(s System, p Process, addrs map[string]string) (*running, error) {
	expand := func(list []string) []string {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = placeholder.ReplaceAllStringFunc(a, func(m string) string {
				switch name := m[1 : len(m)-1]; name {
				case "port":
					_, port, _ := net.SplitHostPort(addrs[p.Name])
					return port
				case "addr":
					return addrs[p.Name]
				case "tls_cert":
					return r.tls.CertFile
				case "tls_key":
					return r.tls.KeyFile
				default:
					return addrs[name]
				}
			})
		}
		return out
	}
	args := expand(p.Args)
	rp := &running{proc: p, addr: addrs[p.Name], done: make(chan struct{})}
	var cmd *exec.Cmd
	switch p.Run {
	case "command":
		argv := expand(p.Command)
		cmd = exec.Command(argv[0], argv[1:]...)
	case "serve", "balance":
		full := append([]string{p.Run, "--listen", rp.addr}, args...)
		if p.Run == "balance" {
			full = append(full, "--admin", "127.0.0.1:0")
		}
		cmd = exec.Command(r.binary, full...)
	case "nginx":
		conf, err := r.writeNginx(s, rp.addr, s.TLS)
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(r.peers["nginx"], "-c", conf)
	case "haproxy":
		conf, err := r.writeHAProxy(s, rp.addr, args, s.TLS)
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(r.peers["haproxy"], "-f", conf, "-db")
	}
	// Its own process group, so that a stop reaches a prefork server's
	// children too; and killed with us, so nothing outlives the lab.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// What it prints, on either stream, is read for its ready line, and
	// the last lines are kept for an error that says why it did not start.
	out, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("system %s, process %s: %v", s.Name, p.Name, err)
	}
	rp.cmd = cmd
	lines, drained := make(chan string, 16), make(chan struct{})
	go func() {
		defer close(drained)
		defer out.Close()
		eachLine(out, func(line string) {
			rp.mu.Lock()
			rp.last = lastLines(rp.last, line)
			rp.mu.Unlock()
			select {
			case lines <- line:
			default: // nobody listens once it is ready
			}
		})
		close(lines)
	}()
	rp.drained = drained
	go func() {
		rp.err = cmd.Wait()
		close(rp.done)
	}()
	if err := r.waitReady(rp, lines); err != nil {
		stopAll([]*running{rp})
		return nil, fmt.Errorf("system %s, process %s (%s on %s): %v", s.Name, p.Name, p.Run, rp.addr, err)
	}
	return rp, nil
}

// waitReady waits for loadlab's ready line (and a balancer's admin line),
// or for a peer's port to accept connections.
func (r *runner) waitReady(rp *running, lines <-chan string) error {
	limit := readyTimeout
	if rp.proc.ReadyTimeout > 0 {
		limit = rp.proc.ReadyTimeout
	}
	deadline := time.After(limit)
	if rp.proc.Run == "nginx" || rp.proc.Run == "haproxy" || rp.proc.Run == "command" {
		for {
			if c, err := net.DialTimeout("tcp", rp.addr, 100*time.Millisecond); err == nil {
				c.Close()
				return nil
			}
			select {
			case <-rp.done:
				return fmt.Errorf("exited before its port accepted %s", rp.exitNote())
			case <-deadline:
				return fmt.Errorf("its port did not accept within %s; it said: %s", limit, rp.said())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	ready := false
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil // its output closed: its exit will say why
				continue
			}
			if strings.Contains(line, loadlab.ReadyMark) {
				ready = true
			}
			if a, ok := strings.CutPrefix(line, "loadlab balance: admin on http://"); ok {
				rp.admin = strings.TrimSuffix(a, "/")
			}
			if ready && (rp.proc.Run != "balance" || rp.admin != "") {
				return nil
			}
		case <-rp.done:
			return fmt.Errorf("exited before it was ready %s", rp.exitNote())
		case <-deadline:
			return fmt.Errorf("no ready line within %s; it said: %s", limit, rp.said())
		}
	}
}

// maxLine is as much of a line of a process's output as the lab keeps.
const maxLine = 4 << 10

// eachLine calls f with every line r gives, up to its end, cutting lines
// longer than maxLine: a process's output is read to its end whatever it
// prints, as a reader that stopped would leave it blocked on a full pipe,
// or killed by SIGPIPE once the pipe is closed.
func eachLine(r io.Reader, f func(string)) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		text := string(line)
		for err == bufio.ErrBufferFull { // the rest of a long line: skipped
			_, err = br.ReadSlice('\n')
		}
		if text = strings.TrimRight(text, "\r\n"); text != "" || err == nil {
			f(text)
		}
		if err != nil {
			return
		}
	}
}

// lastLines keeps the last three lines a process printed, for an error.
func lastLines(kept, line string) string {
	all := append(strings.Split(kept, " | "), strings.TrimSpace(line))
	if kept == "" {
		all = all[1:]
	}
	return strings.Join(all[max(0, len(all)-3):], " | ")
}

func orNothing(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// stopAll stops processes in reverse order: the balancer before its backends.
func stopAll(ps []*running) {
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
	}
}

// stop sends SIGTERM to the process group and SIGKILL if it lingers.
func (rp *running) stop() {
	if rp.cmd == nil || rp.cmd.Process == nil {
		return
	}
	pgid := -rp.cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-rp.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(pgid, syscall.SIGKILL)
		<-rp.done
	}
	syscall.Kill(pgid, syscall.SIGKILL) // any child left behind in the group
}

// portsFor gives each process of s its port: the configured one, checked
// free, or with auto a free one; either way one that no other process of
// the run was given (used names the process each port went to). logf
// says when it waits for a port.
func portsFor(ctx context.Context, s System, auto bool, used map[int]string, logf func(string, ...any)) (map[string]int, error) {
	ports := map[string]int{}
	for _, p := range s.Processes {
		owner := fmt.Sprintf("system %s, process %s", s.Name, p.Name)
		if auto {
			port, err := freePort(used, owner)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", owner, err)
			}
			ports[p.Name] = port
			continue
		}
		if other, ok := used[p.Port]; ok {
			return nil, fmt.Errorf("port %d (%s) is given to %s too: every system is up for the whole run, so each process needs a port of its own; change one, or run with --ports auto", p.Port, owner, other)
		}
		used[p.Port] = owner
		if err := claimPort(ctx, p.Port, owner, logf); err != nil {
			return nil, err
		}
		ports[p.Name] = p.Port
	}
	return ports, nil
}

// timeWaitPatience bounds the wait for a port that closed connections
// hold: Linux keeps a connection in TIME_WAIT for 60 s.
var timeWaitPatience = 65 * time.Second

// claimPort checks that port is free to listen on. A port that no server
// is on but that closed connections hold is waited for: a client socket
// that had it as its own port and closed first stays in TIME_WAIT for a
// minute, and a listener cannot take the port from it even with
// SO_REUSEADDR. The lab's own runs leave thousands such (a keep-alive
// cell's client closes its connections): right after a default run,
// 8,166 of the kernel's 28,232 client ports were held (29 %), and the
// seed's port 44444 is one of them.
func claimPort(ctx context.Context, port int, owner string, logf func(string, ...any)) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(timeWaitPatience)
	for waited := false; ; waited = true {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("port %d (%s): %v", port, owner, err)
		}
		if c, derr := net.DialTimeout("tcp", addr, time.Second); derr == nil {
			c.Close()
			return fmt.Errorf("port %d (%s) is in use: another server is on it; stop it or run with --ports auto", port, owner)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d (%s) is still held by closed connections (TIME_WAIT) after %s; run with --ports auto", port, owner, timeWaitPatience)
		}
		if !waited {
			logf("port %d (%s) is held by closed connections of an earlier run (TIME_WAIT): waiting for them to end, at most a minute\n", port, owner)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// freePort finds a port that is free now, below the kernel's range of
// ephemeral ports: the process it is for binds it only later, and a port
// the kernel hands out as the source of outgoing connections could be
// taken meanwhile — by the lab's own load, thousands of connections a
// second — which it was, under load.
func freePort(used map[int]string, owner string) (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				low = n
			}
		}
	}
	base := max(1024, low-12000)
	for range 200 {
		port := base + rand.IntN(low-base)
		if _, ok := used[port]; ok {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			used[port] = owner
			return port, nil
		}
	}
	return 0, errors.New("no free port below the ephemeral range after 200 tries")
}

func (r *runner) writeNginx(s System, addr string, tls bool) (string, error) {
	dir := filepath.Join(r.tmp, s.Name)
	os.MkdirAll(dir, 0o755)
	conf := filepath.Join(dir, "nginx.conf")
	listen := addr + " backlog=4096"
	if tls {
		listen = fmt.Sprintf("%s ssl backlog=4096; ssl_certificate %s; ssl_certificate_key %s; ssl_protocols TLSv1.2 TLSv1.3",
			addr, r.tls.CertFile, r.tls.KeyFile)
	}
	// One process, no master: a worker outlives a master killed with the
	// lab (SIGKILL reaches only the lab's own children), and went on
	// holding the port. Served alike: bench -c 50 and wrk -c 50 read the
	// same req/s from both, alternated.
	return conf, os.WriteFile(conf, fmt.Appendf(nil, `master_process off;
daemon off;
error_log %s/error.log;
pid %s/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    server {
        listen %s;
        location / { default_type "text/plain; charset=utf-8"; return 200 "Ini Adalah web Server percobaan"; }
    }
}
`, dir, dir, dir, dir, dir, dir, dir, listen), 0o644)
}

// writeHAProxy writes HAProxy in tcp mode before backends; with tls it
// ends TLS (bind … ssl), as balance --mode tcp --tls-cert does.
func (r *runner) writeHAProxy(s System, addr string, backends []string, tls bool) (string, error) {
	dir := filepath.Join(r.tmp, s.Name)
	os.MkdirAll(dir, 0o755)
	var b strings.Builder
	bind := addr
	if tls {
		bind += " ssl crt " + r.tls.Combined
	}
	fmt.Fprintf(&b, "global\n    maxconn 4000\n    ssl-default-bind-options ssl-min-ver TLSv1.2\ndefaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n")
	fmt.Fprintf(&b, "frontend in\n    bind %s\n    default_backend out\nbackend out\n    balance roundrobin\n", bind)
	for i, be := range backends {
		fmt.Fprintf(&b, "    server s%d %s check\n", i+1, be)
	}
	conf := filepath.Join(dir, "haproxy.cfg")
	return conf, os.WriteFile(conf, []byte(b.String()), 0o644)
}

// tlsFiles are the lab's certificate: ECDSA P-256, self-signed for
// localhost and 127.0.0.1, made at the start for every TLS system alike;
// Combined is the certificate and key in one file, as HAProxy takes them.
type tlsFiles struct {
	tlsx.Pair
	Combined string
}

func makeCertificate(dir string) (tlsFiles, error) {
	certPEM, keyPEM, err := tlsx.SelfSigned()
	if err != nil {
		return tlsFiles{}, fmt.Errorf("making the lab's certificate: %v", err)
	}
	sub := filepath.Join(dir, "tls")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return tlsFiles{}, err
	}
	p, err := tlsx.WritePair(sub, certPEM, keyPEM)
	if err != nil {
		return tlsFiles{}, err
	}
	combined := filepath.Join(sub, "haproxy.pem")
	return tlsFiles{p, combined}, os.WriteFile(combined, append(certPEM, keyPEM...), 0o600)
}
