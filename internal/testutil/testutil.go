// Package testutil is what loadlab's tests share: polling a condition
// until a deadline instead of sleeping, building the loadlab binary so that
// go test's cache knows what it was built from, running it as a user
// would and reading what it says, and reading a process's memory and
// descriptors from /proc.
package testutil

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Eventually polls cond until it is true, and fails the test with what
// when within passes first. It is how a test waits: on a condition, never
// on a sleep.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(wait)
	}
}

// moduleRoot is the folder of go.mod, found from this file's place.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BuildBinary builds loadlab into dir and returns its path. Call it from
// TestMain; tests that run the binary call NoteSources.
func BuildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "loadlab")
	gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gotool); err != nil {
		gotool = "go"
	}
	build := exec.Command(gotool, "build", "-o", bin, "./cmd/loadlab")
	build.Dir = moduleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building loadlab: %v\n%s", err, out)
	}
	return bin, nil
}

// NoteSources looks at every Go file of the module, so that go test's
// cache, which keys a result on the files a test looked at, reruns the
// test when any of them changes: a binary built by BuildBinary is built
// from them by a separate go build that the cache does not see. (Only
// what tests do is recorded, not TestMain before m.Run.)
var NoteSources = sync.OnceFunc(func() {
	filepath.WalkDir(moduleRoot(), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod") {
			os.Stat(path)
		}
		return nil
	})
})

// Proc is a running loadlab process and what it wrote on stderr.
type Proc struct {
	Cmd  *exec.Cmd
	Done chan struct{} // closed when it has exited

	mu    sync.Mutex
	lines []string
}

// ReadyMark is what every loadlab server writes on stderr once it listens.
const ReadyMark = ": ready on "

// Start runs bin with args, kills it when the test ends, and waits for its
// ready line; tune, when not nil, may change the command before it starts.
func Start(t testing.TB, tune func(*exec.Cmd), bin string, args ...string) *Proc {
	t.Helper()
	NoteSources()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if tune != nil {
		tune(cmd)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, Done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		cmd.Wait()
		close(p.Done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.Done
	})
	deadline := time.Now().Add(15 * time.Second)
	for !p.Saw(ReadyMark) {
		select {
		case <-p.Done:
			t.Fatalf("%s exited before it was ready: %s", strings.Join(args, " "), p.Output())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no ready line in 15s: %s", strings.Join(args, " "), p.Output())
		}
	}
	return p
}

// Addr is the address from the ready line.
func (p *Proc) Addr() string {
	for _, l := range p.Lines() {
		if _, rest, ok := strings.Cut(l, ReadyMark); ok {
			return strings.Fields(rest)[0]
		}
	}
	return ""
}

// Saw reports whether a stderr line so far contains s.
func (p *Proc) Saw(s string) bool { return p.Count(s) > 0 }

// Count is how many stderr lines so far contain s.
func (p *Proc) Count(s string) int {
	n := 0
	for _, l := range p.Lines() {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// Lines is what it wrote on stderr so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Output is its stderr so far, as one string.
func (p *Proc) Output() string { return strings.Join(p.Lines(), "\n") }

// Alive reports whether it is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.Done:
		return false
	default:
		return true
	}
}

// RSS is a process's resident memory in bytes, from /proc/PID/status.
func RSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Descendants are pid's children, their children and so on, from /proc.
func Descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The second field, the command, may hold spaces: parse after its ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 {
			parent[child], _ = strconv.Atoi(fields[1])
		}
	}
	var out []int
	frontier := []int{pid}
	for len(frontier) > 0 {
		p := frontier[0]
		frontier = frontier[1:]
		for c, pp := range parent {
			if pp == p {
				out = append(out, c)
				frontier = append(frontier, c)
			}
		}
	}
	return out
}
