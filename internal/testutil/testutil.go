// Package testutil is what loadlab's tests share: polling a condition
// until a deadline instead of sleeping, building the loadlab binary so that
// go test's cache knows what it was built from, running it as a user
// would and reading what it says, and reading a process's memory and
// descriptors from /proc.
package testutil

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"loadlab"
	"loadlab/internal/procstat"
)

// Eventually polls cond until it is true, and fails the test with what
// when within passes first. It is how a test waits: on a condition, never
// on a sleep.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(within, cond) {
		t.Fatalf("not within %v: %s", within, what)
	}
}

// Within polls cond until it is true or within passes, and reports
// whether it came true: for a test that goes on either way, measuring
// what it reached.
func Within(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
	return true
}

// moduleRoot is the folder of go.mod, found from this file's place.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BuildBinary builds loadlab once for the module's sources as they are,
// and returns its path. The binary is shared: every package's TestMain
// that calls it while go test runs them side by side gets the same one,
// built by the first and waited for by the others (a file lock), so a
// fresh clone compiles the command once, not once a package. It is kept
// under the temporary directory by a hash of every file of the module;
// builds for older sources are removed. Tests that run the binary call
// NoteSources.
func BuildBinary() (string, error) {
	key, err := sourcesKey()
	if err != nil {
		return "", err
	}
	base := filepath.Join(os.TempDir(), "loadlab-test-bin")
	dir := filepath.Join(base, key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	bin := filepath.Join(dir, "loadlab")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gotool); err != nil {
		gotool = "go"
	}
	args := []string{"build", "-o", bin + ".tmp"}
	if raceDetector {
		args = append(args, "-race")
	}
	build := exec.Command(gotool, append(args, "./cmd/loadlab")...)
	build.Dir = moduleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building loadlab: %v\n%s", err, out)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", err
	}
	// Builds of other sources an hour old are done with.
	if old, err := os.ReadDir(base); err == nil {
		for _, e := range old {
			if info, err := e.Info(); err == nil && e.Name() != key && time.Since(info.ModTime()) > time.Hour {
				os.RemoveAll(filepath.Join(base, e.Name()))
			}
		}
	}
	return bin, nil
}

// sourcesKey hashes every file of the module (but .git), the Go version
// and -race: what the binary is built from and how.
func sourcesKey() (string, error) {
	h := sha256.New()
	io.WriteString(h, runtime.Version())
	if raceDetector {
		io.WriteString(h, " -race")
	}
	root := moduleRoot()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		case d.IsDir() || !d.Type().IsRegular():
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		io.WriteString(h, rel+"\x00")
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:16], err
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

// Start runs bin with args, kills it (and its process group) when the
// test ends, and waits for its ready line; tune, when not nil, may change
// the command before it starts.
func Start(t testing.TB, tune func(*exec.Cmd), bin string, args ...string) *Proc {
	t.Helper()
	p := Spawn(t, tune, bin, args...)
	p.WaitReady(t)
	return p
}

// Spawn is Start without waiting for the ready line.
func Spawn(t testing.TB, tune func(*exec.Cmd), bin string, args ...string) *Proc {
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
	t.Cleanup(p.Kill)
	return p
}

// WaitReady waits for the ready line, failing the test when the process
// exits first or says nothing for 15 s.
func (p *Proc) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !p.Saw(loadlab.ReadyMark) {
		select {
		case <-p.Done:
			t.Fatalf("%s exited before it was ready: %s", strings.Join(p.Cmd.Args, " "), p.Output())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no ready line in 15s: %s", strings.Join(p.Cmd.Args, " "), p.Output())
		}
	}
}

// Kill ends the process group at once, a frozen one too, and waits.
func (p *Proc) Kill() {
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGCONT)
	<-p.Done
}

// Addr is the address from the ready line.
func (p *Proc) Addr() string {
	for _, l := range p.Lines() {
		if _, rest, ok := strings.Cut(l, loadlab.ReadyMark); ok {
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

// RSS is a process's resident memory in bytes.
func RSS(pid int) int64 { return procstat.RSS(pid) }

// Descendants are pid's children, their children and so on.
func Descendants(pid int) []int { return procstat.WithDescendants([]int{pid})[1:] }

// Mark is an environment variable for a test's processes, so that it can
// tell its own from those of other packages running the same shared
// binary: set it on a command, and every process that command starts
// inherits it, orphans included.
func Mark(t testing.TB) string {
	return "LOADLAB_TEST_MARK=" + strconv.Itoa(os.Getpid()) + "-" + t.Name()
}

// ProcessesOf lists, by pid, the running processes whose executable is
// bin and whose environment holds mark.
func ProcessesOf(bin, mark string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err != nil || exe != bin {
			continue
		}
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		if slices.Contains(strings.Split(string(env), "\x00"), mark) {
			found = append(found, e.Name())
		}
	}
	return found
}
