package reliability

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"loadlab"

	"loadlab/internal/testutil"
)

// Attacks on serve and balance by clients that misbehave on purpose, run
// on loopback against the real commands. Each asserts that the process
// stays up, bounded and answering; none decides on a timing.

// target is a server under attack: one loadlab process (and the backends
// it needs), its address, and every process whose memory counts.
type target struct {
	name  string
	addr  string
	main  *testutil.Proc
	procs []*testutil.Proc
}

// pids are the target's processes and their children (prefork's).
func (tg *target) pids() []int {
	var pids []int
	for _, p := range tg.procs {
		pids = append(pids, p.Cmd.Process.Pid)
		pids = append(pids, testutil.Descendants(p.Cmd.Process.Pid)...)
	}
	return pids
}

// rss is the resident memory of all the target's processes.
func (tg *target) rss() int64 {
	var sum int64
	for _, pid := range tg.pids() {
		sum += testutil.RSS(pid)
	}
	return sum
}

// fds is how many descriptors the target's processes hold.
func (tg *target) fds() int {
	n := 0
	for _, pid := range tg.pids() {
		entries, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		n += len(entries)
	}
	return n
}

// alive checks that every process of the target still runs.
func (tg *target) alive(t *testing.T) {
	t.Helper()
	for _, p := range tg.procs {
		if !p.Alive() {
			t.Fatalf("%s: a process died: %s", tg.name, p.Output())
		}
	}
}

// answers checks that a new client gets GET / answered.
func (tg *target) answers(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + tg.addr + "/")
	if err != nil {
		t.Fatalf("%s: after the attack, GET /: %v", tg.name, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "Ini Adalah web Server percobaan" {
		t.Fatalf("%s: after the attack, GET / gave %d %q", tg.name, resp.StatusCode, body)
	}
}

// serveTargets are the four models of serve, as processes, with extra flags.
func serveTargets(t *testing.T, extra ...string) []*target {
	var tgs []*target
	for _, model := range []string{"async", "thread", "pool", "prefork"} {
		args := append([]string{"serve", "--model", model, "--listen", "127.0.0.1:0", "--quiet"}, extra...)
		p := testutil.Start(t, nil, loadlabBin, args...)
		tgs = append(tgs, &target{name: "serve " + model, addr: p.Addr(), main: p, procs: []*testutil.Proc{p}})
	}
	return tgs
}

// balanceTargets are both balancer modes, each over two async backends
// started with backendExtra.
func balanceTargets(t *testing.T, backendExtra ...string) []*target {
	var tgs []*target
	for _, mode := range []string{"tcp", "http"} {
		var procs []*testutil.Proc
		args := []string{"balance", "--mode", mode, "--listen", "127.0.0.1:0", "--health-check", "none", "--quiet", "--grace", "30s"}
		for range 2 {
			b := testutil.Start(t, nil, loadlabBin, append([]string{"serve", "--model", "async", "--listen", "127.0.0.1:0", "--quiet"}, backendExtra...)...)
			procs = append(procs, b)
			args = append(args, "--backend", b.Addr())
		}
		lb := testutil.Start(t, nil, loadlabBin, args...)
		tgs = append(tgs, &target{name: "balance " + mode, addr: lb.Addr(), main: lb, procs: append([]*testutil.Proc{lb}, procs...)})
	}
	return tgs
}

// resetAfter sends raw, reads up to readFirst bytes of the answer, and
// closes with a reset (SO_LINGER 0), as a client that vanishes does.
func resetAfter(addr, raw string, readFirst int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	tc := c.(*net.TCPConn)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tc, raw); err != nil {
		tc.Close()
		return err
	}
	if readFirst > 0 {
		io.ReadFull(tc, make([]byte, readFirst))
	}
	tc.SetLinger(0)
	return tc.Close()
}

// TestResetsNeverTakeAServerDown: rounds of request-then-reset in every
// shape — a bad request, a good one, 20 pipelined downloads cut mid-request,
// a 1 MiB download — against every model and both balancer modes. Each
// process must still be up and answering, and prefork must not have lost
// a child.
func TestResetsNeverTakeAServerDown(t *testing.T) {
	t.Parallel()
	testutil.NoteSources()
	pipelined := strings.Repeat("GET /payload-100k.bin HTTP/1.1\r\nHost: x\r\n\r\n", 20) + "GET /payload-100k.bin HT"
	shapes := []struct {
		name      string
		raw       string
		readFirst int
	}{
		{"bad request", "GARBAGE\x01 / HTTP/1.1\r\n\r\n", 0},
		{"bad request, answer read", "GARBAGE\x01 / HTTP/1.1\r\n\r\n", 12},
		{"good request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"pipelined downloads cut mid-request", pipelined, 0},
		{"pipelined downloads, some read", pipelined, 150 << 10},
		{"1 MiB download", "GET /payload-1m.bin HTTP/1.1\r\nHost: x\r\n\r\n", 64 << 10},
	}
	tgs := append(serveTargets(t), balanceTargets(t)...)
	for _, tg := range tgs {
		for round := range 25 {
			for _, sh := range shapes {
				if err := resetAfter(tg.addr, sh.raw, sh.readFirst); err != nil && round == 0 {
					t.Logf("%s, %s: %v", tg.name, sh.name, err)
				}
			}
		}
		tg.alive(t)
		tg.answers(t)
		if n := tg.main.Count("restart"); n > 0 {
			t.Errorf("%s: %d children restarted: %s", tg.name, n, tg.main.Output())
		}
		row(t, "%-13s %d connections reset in %d shapes: up and answering", tg.name, 25*len(shapes), len(shapes))
	}
}

// TestNonReaderIsBounded: a client pipelines 50 MB of requests for a
// 100 KiB file and never reads an answer. The server must stop reading it
// (its sends stall), hold at most 64 MB more than before, and go on
// answering others.
func TestNonReaderIsBounded(t *testing.T) {
	t.Parallel()
	testutil.NoteSources()
	const total = 50 << 20
	req := []byte("GET /payload-100k.bin HTTP/1.1\r\nHost: x\r\n\r\n")
	batch := make([]byte, 0, 64<<10)
	for len(batch)+len(req) <= cap(batch) {
		batch = append(batch, req...)
	}
	for _, tg := range append(serveTargets(t), balanceTargets(t)...) {
		tg.answers(t) // warm: the first answers allocate what every later one reuses
		before := tg.rss()
		c, err := net.Dial("tcp", tg.addr)
		if err != nil {
			t.Fatal(err)
		}
		sent := 0
		stop := time.Now().Add(20 * time.Second)
		for sent < total && time.Now().Before(stop) {
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			n, err := c.Write(batch)
			sent += n
			if err != nil {
				break // the server stopped reading: backpressure
			}
		}
		grew := tg.rss() - before
		tg.alive(t)
		tg.answers(t)
		c.Close()
		if grew > 64<<20 {
			t.Errorf("%s: grew %d MB while a client pipelined %d MB without reading", tg.name, grew>>20, sent>>20)
		}
		row(t, "%-13s took %5.1f MB of pipelined requests from a non-reader, grew %5.1f MB", tg.name, float64(sent)/(1<<20), float64(grew)/(1<<20))
	}
}

// TestDescriptorLimit: with `ulimit -n 64`, 120 clients connect and hold
// on; the server must not exit, and once they leave it answers again.
func TestDescriptorLimit(t *testing.T) {
	t.Parallel()
	testutil.NoteSources()
	var tgs []*target
	for _, model := range []string{"async", "thread", "pool"} {
		p := testutil.Start(t, nil, "bash", "-c", "ulimit -n 64 && exec "+loadlabBin+" serve --quiet --listen 127.0.0.1:0 --model "+model)
		tgs = append(tgs, &target{name: "serve " + model, addr: p.Addr(), main: p, procs: []*testutil.Proc{p}})
	}
	for _, mode := range []string{"tcp", "http"} {
		b := testutil.Start(t, nil, loadlabBin, "serve", "--model", "async", "--listen", "127.0.0.1:0", "--quiet")
		lb := testutil.Start(t, nil, "bash", "-c", "ulimit -n 64 && exec "+loadlabBin+" balance --quiet --health-check tcp --listen 127.0.0.1:0 --admin 127.0.0.1:0 --mode "+mode+" --backend "+b.Addr())
		tgs = append(tgs, &target{name: "balance " + mode, addr: lb.Addr(), main: lb, procs: []*testutil.Proc{lb, b}})
	}
	for _, tg := range tgs {
		var held []net.Conn
		for range 120 {
			c, err := net.DialTimeout("tcp", tg.addr, 5*time.Second)
			if err != nil {
				break // the backlog is full too: also fine
			}
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			held = append(held, c)
		}
		main := &target{procs: tg.procs[:1]}
		testutil.Eventually(t, 15*time.Second, tg.name+" reaching its descriptor limit", func() bool {
			return main.fds() >= 40 || !tg.main.Alive()
		})
		tg.alive(t)
		for _, c := range held {
			c.Close()
		}
		testutil.Eventually(t, 15*time.Second, tg.name+" answering again after the descriptor limit", func() bool {
			c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + tg.addr + "/")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		tg.alive(t)
		if strings.HasPrefix(tg.name, "balance") {
			// Running out of its own descriptors is not the backend's fault.
			var list []struct {
				State  string `json:"state"`
				Errors int64  `json:"errors"`
			}
			admin := tg.main.Output()
			admin = admin[strings.Index(admin, "admin on http://")+len("admin on http://"):]
			resp, err := http.Get("http://" + strings.Fields(admin)[0] + "api/backends")
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			if len(list) != 1 || list[0].State != "ready" || list[0].Errors != 0 {
				t.Errorf("%s: at its own descriptor limit the backend was blamed: %+v", tg.name, list)
			}
		}
		row(t, "%-13s at ulimit -n 64, %d clients held: still up, answering once they left", tg.name, len(held))
	}
}

// bigFile writes a file of size bytes into a new folder and returns it.
func bigFile(t *testing.T, name string, size int64) string {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("0123456789abcdef", 4096))
	for written := int64(0); written < size; written += int64(len(chunk)) {
		f.Write(chunk[:min(int64(len(chunk)), size-written)])
	}
	f.Close()
	return dir
}

// TestStreamedFileToNonReaderTimesOut: 50 clients ask for a 64 MB file and
// read nothing; with --write-timeout 1s every model closes them, and its
// descriptors come back to what they were.
func TestStreamedFileToNonReaderTimesOut(t *testing.T) {
	t.Parallel()
	testutil.NoteSources()
	root := bigFile(t, "big.bin", 64<<20)
	for _, tg := range serveTargets(t, "--root", root, "--write-timeout", "1s") {
		tg.answers(t)
		before := tg.fds()
		var conns []net.Conn
		for range 50 {
			c, err := net.Dial("tcp", tg.addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
			conns = append(conns, c)
		}
		testutil.Eventually(t, 30*time.Second, tg.name+": non-readers closed at --write-timeout", func() bool {
			return tg.fds() <= before
		})
		for _, c := range conns {
			c.Close()
		}
		tg.alive(t)
		tg.answers(t)
	}
}

// TestSignalsServeDoesNotUse: SIGHUP leaves every model serving.
func TestSignalsServeDoesNotUse(t *testing.T) {
	t.Parallel()
	testutil.NoteSources()
	for _, tg := range serveTargets(t) {
		syscall.Kill(-tg.main.Cmd.Process.Pid, syscall.SIGHUP) // the whole group, as a terminal hanging up
		tg.answers(t)
		tg.alive(t)
	}
}

// TestLogPipe: serve's access log goes to a pipe whose reader leaves, or
// that nobody reads; either way serve goes on answering, and still stops
// on SIGTERM.
func TestLogPipe(t *testing.T) {
	t.Parallel()
	testutil.NoteSources()
	for _, how := range []string{"reader gone", "never read"} {
		for _, bin := range []string{"serve", "balance"} {
			t.Run(how+"/"+bin, func(t *testing.T) {
				args := []string{"serve", "--model", "async", "--listen", "127.0.0.1:0"}
				if bin == "balance" {
					b := testutil.Start(t, nil, loadlabBin, "serve", "--model", "async", "--listen", "127.0.0.1:0", "--quiet")
					args = []string{"balance", "--mode", "http", "--health-check", "none", "--listen", "127.0.0.1:0", "--backend", b.Addr()}
				}
				cmd := exec.Command(loadlabBin, args...)
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stderr = w
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				w.Close()
				done := make(chan struct{})
				go func() { cmd.Wait(); close(done) }()
				t.Cleanup(func() { cmd.Process.Kill(); <-done })
				lines := bufio.NewReader(r)
				addr := ""
				for addr == "" {
					line, err := lines.ReadString('\n')
					if err != nil {
						t.Fatalf("no ready line: %v", err)
					}
					if _, rest, ok := strings.Cut(line, loadlab.ReadyMark); ok {
						addr = strings.Fields(rest)[0]
					}
				}
				if how == "reader gone" {
					r.Close()
				} else {
					defer r.Close() // held open, never read again
				}
				client := &http.Client{Timeout: 10 * time.Second}
				for i := range 3000 {
					resp, err := client.Get("http://" + addr + "/")
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					t.Fatal("did not stop on SIGTERM")
				}
			})
		}
	}
}

// TestStopFinishesDownloads: a stop signal during a 50 MB download, on
// every model of serve and both modes of balance, lets it finish within
// --grace, then the process exits 0. Serve stops on SIGTERM or on SIGQUIT
// (nginx's graceful stop), balance on those or SIGUSR1 (HAProxy's soft
// stop); a burst of every stop signal while the download drains (a
// prefork child gets SIGTERM twice) changes nothing.
func TestStopFinishesDownloads(t *testing.T) {
	t.Parallel()
	testutil.NoteSources()
	root := bigFile(t, "big.bin", 50<<20)
	serves := serveTargets(t, "--root", root, "--grace", "30s")
	for i, tg := range append(serves, balanceTargets(t, "--root", root)...) {
		stopSignals := []syscall.Signal{syscall.SIGTERM, syscall.SIGQUIT}
		if i >= len(serves) {
			stopSignals = []syscall.Signal{syscall.SIGUSR1, syscall.SIGQUIT, syscall.SIGTERM}
			i -= len(serves)
		}
		first := stopSignals[i%len(stopSignals)] // each in turn
		c, err := net.Dial("tcp", tg.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		fmt.Fprintf(c, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 1<<20)
		if _, err := io.ReadFull(resp.Body, head); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(-tg.main.Cmd.Process.Pid, first) // the group: prefork's children too
		if _, err := io.ReadFull(resp.Body, head); err != nil {
			t.Fatalf("%s, %v: %v", tg.name, first, err)
		}
		for range 50 { // while the download drains
			for _, sig := range stopSignals {
				tg.main.Cmd.Process.Signal(sig)
			}
		}
		rest, err := io.Copy(io.Discard, resp.Body)
		c.Close()
		if got := rest + 2*int64(len(head)); err != nil || got != 50<<20 {
			t.Errorf("%s, %v: stopped mid-download: got %d of %d bytes (%v)", tg.name, first, got, 50<<20, err)
		}
		select {
		case <-tg.main.Done:
			if code := tg.main.Cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("%s, %v: exit %d: %s", tg.name, first, code, tg.main.Output())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s, %v: did not exit after the download", tg.name, first)
		}
	}
}
