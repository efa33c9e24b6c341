package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/balancer"
	"loadlab/internal/bench"
	"loadlab/internal/testutil"
)

// loadlabBin is the loadlab binary the scenarios run, built once by
// TestMain; skipReason says why there is none.
var loadlabBin, skipReason string

func TestMain(m *testing.M) {
	code := func() int {
		var err error
		// 10,000 connections through a balancer are 20,000 descriptors;
		// root may lift the hard limit (not in every sandbox), and the
		// children inherit it.
		lim := syscall.Rlimit{Cur: 1 << 16, Max: 1 << 16}
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		if loadlabBin, err = testutil.BuildBinary(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		switch {
		case os.Geteuid() != 0:
			skipReason = "needs root for network namespaces (CI runs it as root)"
		case !have("ip"):
			skipReason = "needs ip from iproute2 for network namespaces: apt-get install iproute2"
		default:
			removeStaleNamespaces()
		}
		return m.Run()
	}()
	os.Exit(code)
}

func have(cmd string) bool { _, err := exec.LookPath(cmd); return err == nil }

// nsPrefix starts every namespace this package makes; the pid after it
// tells whether the run that made it is still alive.
const nsPrefix = "llr"

// removeStaleNamespaces deletes namespaces left by a run that was killed
// before its cleanup ran.
func removeStaleNamespaces() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidText); err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
			exec.Command("ip", "netns", "del", name).Run()
		}
	}
}

func requireTestbed(t *testing.T) {
	t.Helper()
	testutil.NoteSources()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// testbed is a set of hosts, each a network namespace with one interface
// on a bridge that lives in a namespace of its own, so nothing of the
// test touches the machine's own network.
type testbed struct {
	t      *testing.T
	id     string // unique per testbed: pid and a counter
	bridge string // the switch's namespace
	hosts  []*host
}

// host is one machine of the testbed.
type host struct {
	tb   *testbed
	name string
	ns   string
	ip   string
	port string // the host's port on the bridge, in the switch's namespace
}

var testbeds struct {
	sync.Mutex
	n int
}

// subnet is the testbed's private network; it exists only inside the
// testbed's namespaces, so parallel testbeds do not meet.
const subnet = "10.77.0."

// newTestbed makes one host per name and joins them on a bridge. The
// namespaces and every process in them go when the test ends.
func newTestbed(t *testing.T, names ...string) *testbed {
	t.Helper()
	requireTestbed(t)
	testbeds.Lock()
	testbeds.n++
	n := testbeds.n // tests run in parallel: this testbed's number, not the latest
	testbeds.Unlock()
	id := fmt.Sprintf("%d-%d", os.Getpid(), n)
	tb := &testbed{t: t, id: id, bridge: nsPrefix + id + "-sw"}
	t.Cleanup(tb.remove)
	tb.ip("netns", "add", tb.bridge)
	tb.ip("-n", tb.bridge, "link", "add", "br0", "type", "bridge")
	tb.ip("-n", tb.bridge, "link", "set", "br0", "up")
	for i, name := range names {
		h := &host{tb: tb, name: name, ns: nsPrefix + id + "-" + name, ip: subnet + strconv.Itoa(i+1)}
		// Interface names are at most 15 bytes: a short unique pair per host.
		inner, outer := fmt.Sprintf("v%d-%di", n, i), fmt.Sprintf("v%d-%do", n, i)
		h.port = outer
		tb.ip("netns", "add", h.ns)
		tb.ip("link", "add", inner, "type", "veth", "peer", "name", outer)
		tb.ip("link", "set", inner, "netns", h.ns)
		tb.ip("link", "set", outer, "netns", tb.bridge)
		tb.ip("-n", h.ns, "link", "set", inner, "name", "eth0")
		tb.ip("-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		tb.ip("-n", h.ns, "link", "set", "eth0", "up")
		tb.ip("-n", h.ns, "link", "set", "lo", "up")
		tb.ip("-n", tb.bridge, "link", "set", outer, "master", "br0")
		tb.ip("-n", tb.bridge, "link", "set", outer, "up")
		tb.hosts = append(tb.hosts, h)
	}
	return tb
}

func (tb *testbed) ip(args ...string) {
	tb.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tb.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces; their interfaces go with them. The
// processes in them were killed by their own cleanups, which run first.
func (tb *testbed) remove() {
	for _, h := range tb.hosts {
		exec.Command("ip", "netns", "del", h.ns).Run()
	}
	exec.Command("ip", "netns", "del", tb.bridge).Run()
}

func (tb *testbed) host(name string) *host {
	for _, h := range tb.hosts {
		if h.name == name {
			return h
		}
	}
	tb.t.Fatalf("no host %q", name)
	return nil
}

// cut takes the host's port on the bridge down: its packets vanish, and
// nobody is told — no reset, no ICMP. heal brings it back.
func (h *host) cut()  { h.tb.ip("-n", h.tb.bridge, "link", "set", h.port, "down") }
func (h *host) heal() { h.tb.ip("-n", h.tb.bridge, "link", "set", h.port, "up") }

// addr is host:port on the host's address.
func (h *host) addr(port int) string { return net.JoinHostPort(h.ip, strconv.Itoa(port)) }

// inside runs f on an OS thread that has entered the host's namespace, so
// the sockets f makes belong to the host; they stay there afterwards.
func (h *host) inside(f func() error) error {
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(self)
	target, err := unix.Open("/run/netns/"+h.ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: Go ends a locked thread with its
		// goroutine, so no other goroutine runs in the wrong namespace.
		return err
	}
	runtime.UnlockOSThread()
	return ferr
}

func (h *host) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.inside(func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (h *host) listen(addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.inside(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// client is an HTTP client whose connections start from the host.
func (h *host) client() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: h.dial, DisableKeepAlives: true},
	}
}

// proc is a loadlab process running on a host.
type proc struct {
	h *host
	*testutil.Proc
}

// start runs loadlab with args on the host and waits for its ready line.
func (h *host) start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := h.spawn(t, args...)
	p.WaitReady(t)
	return p
}

// spawn runs loadlab with args on the host; it is killed when the test ends.
func (h *host) spawn(t *testing.T, args ...string) *proc {
	t.Helper()
	return &proc{h: h, Proc: testutil.Spawn(t, nil, "ip", append([]string{"netns", "exec", h.ns, loadlabBin}, args...)...)}
}

func (p *proc) saw(s string) bool         { return p.Saw(s) }
func (p *proc) count(s string) int        { return p.Count(s) }
func (p *proc) output() string            { return p.Output() }
func (p *proc) kill()                     { p.Kill() }
func (p *proc) signal(sig syscall.Signal) { p.Cmd.Process.Signal(sig) }

// wait waits for the process to exit by itself.
func (p *proc) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-p.Done:
	case <-time.After(limit):
		t.Fatalf("process on %s still running after %s", p.h.name, limit)
	}
}

// rssKiB is the process's resident memory (ip netns exec execs loadlab,
// so the pid is loadlab's).
func (p *proc) rssKiB(t *testing.T) int64 {
	t.Helper()
	n := testutil.RSS(p.Cmd.Process.Pid) >> 10
	if n == 0 {
		t.Fatal("no VmRSS")
	}
	return n
}

// openConns counts the host's TCP connections on a local port that a
// crash would cut: established, half-open and half-closed by the peer.
func (h *host) openConns(t *testing.T, port int) int64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.ns, "ss", "-Htn",
		"state", "established", "state", "syn-recv", "state", "close-wait",
		"sport", "=", ":"+strconv.Itoa(port)).Output()
	if err != nil {
		t.Fatalf("ss on %s: %v", h.name, err)
	}
	return int64(strings.Count(string(out), "\n"))
}

// benchRun is a `loadlab bench` running on a host.
type benchRun struct {
	p   *proc
	out bytes.Buffer
}

// bench starts `loadlab bench --format json --timeline 100ms` with args on
// the host; result waits for it.
func (h *host) bench(t *testing.T, args ...string) *benchRun {
	t.Helper()
	br := &benchRun{}
	args = append([]string{"netns", "exec", h.ns, loadlabBin, "bench", "-q", "--format", "json", "--timeline", "100ms"}, args...)
	br.p = &proc{h: h, Proc: testutil.Spawn(t, func(cmd *exec.Cmd) { cmd.Stdout = &br.out }, "ip", args...)}
	return br
}

// result waits for the run and returns its summary.
func (br *benchRun) result(t *testing.T) *bench.Summary {
	t.Helper()
	select {
	case <-br.p.Done:
	case <-time.After(2 * time.Minute):
		t.Fatal("bench still running after 2 minutes")
	}
	var doc struct{ Runs []*bench.Summary }
	if err := json.Unmarshal(br.out.Bytes(), &doc); err != nil || len(doc.Runs) != 1 {
		t.Fatalf("bench output (%v): %s\nstderr: %s", err, br.out.Bytes(), br.p.output())
	}
	return doc.Runs[0]
}

// backends reads the balancer's /api/backends from a host.
func (h *host) backends(t *testing.T, admin string) []balancer.BackendStatus {
	t.Helper()
	resp, err := h.client().Get("http://" + admin + "/api/backends")
	if err != nil {
		t.Fatalf("admin API: %v", err)
	}
	defer resp.Body.Close()
	var list []balancer.BackendStatus
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("admin API: %v", err)
	}
	return list
}

// backend finds one backend, by address, in the admin API's list.
func (h *host) backend(t *testing.T, admin, addr string) balancer.BackendStatus {
	t.Helper()
	for _, b := range h.backends(t, admin) {
		if b.Addr == addr {
			return b
		}
	}
	t.Fatalf("backend %s not in the admin API", addr)
	return balancer.BackendStatus{}
}

// waitState polls the admin API until the backend is in state and
// returns what it said then and how long that took; it fails the test
// after limit.
func (h *host) waitState(t *testing.T, admin, addr, state string, limit time.Duration) (balancer.BackendStatus, time.Duration) {
	t.Helper()
	began := time.Now()
	var b balancer.BackendStatus
	testutil.Eventually(t, limit, "backend "+addr+" "+state, func() bool {
		b = h.backend(t, admin, addr)
		return b.State == state
	})
	return b, time.Since(began)
}
