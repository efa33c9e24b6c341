package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"loadlab"
)

// ReadyPrefix starts the line a server prints on stderr once it accepts
// connections; scripts, tests and the prefork parent wait for it.
const ReadyPrefix = "loadlab serve" + loadlab.ReadyMark

// ReadyLine is the whole ready line, naming the address actually bound.
func ReadyLine(model string, addr net.Addr) string {
	return fmt.Sprintf("%s%s (model %s, pid %d)", ReadyPrefix, addr, model, os.Getpid())
}

// preforkServer is the prefork model: Procs child processes of the same
// binary, each an ordinary server bound to the same port with SO_REUSEPORT,
// so the kernel spreads connections across them. The parent only supervises:
// it restarts a child that dies and passes a stop on to all of them.
type preforkServer struct {
	core     *core
	addr     net.Addr
	stopping chan struct{}
	done     chan struct{}

	mu       sync.Mutex
	children []*exec.Cmd // the running child of each slot
	exited   sync.WaitGroup
}

// childStartTimeout bounds how long a child may take to print its ready line.
const childStartTimeout = 15 * time.Second

func startPrefork(c *core) (Server, error) {
	if c.cfg.Child == nil {
		return nil, errors.New("prefork: no command to start children with")
	}
	// Hold the port while the children start, so ":0" becomes one real port
	// that all of them share, and a port in use is reported once, here.
	hold, err := listen(c.cfg.Listen, true)
	if err != nil {
		return nil, err
	}
	defer hold.Close()
	s := &preforkServer{core: c, addr: hold.Addr(), stopping: make(chan struct{}), done: make(chan struct{}),
		children: make([]*exec.Cmd, c.cfg.Procs)}
	for i := range c.cfg.Procs {
		ch, err := s.startChild(i)
		if err != nil {
			close(s.stopping)
			s.signalAll(syscall.SIGKILL)
			s.exited.Wait()
			return nil, err
		}
		s.exited.Add(1)
		go s.supervise(i, ch)
	}
	go func() {
		s.exited.Wait()
		close(s.done)
	}()
	return s, nil
}

func (s *preforkServer) Addr() net.Addr        { return s.addr }
func (s *preforkServer) Done() <-chan struct{} { return s.done }

// PIDs lists the running children's process ids.
func (s *preforkServer) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pids []int
	for _, cmd := range s.children {
		if cmd != nil && cmd.Process != nil {
			pids = append(pids, cmd.Process.Pid)
		}
	}
	return pids
}

// child is a running prefork child; relayed is closed once all it wrote
// on stderr has passed through to ours.
type child struct {
	cmd     *exec.Cmd
	relayed chan struct{}
}

// startChild starts the child of slot i and waits for its ready line. The
// child's other stderr lines (its access log) pass through to ours.
func (s *preforkServer) startChild(i int) (child, error) {
	cmd := s.core.cfg.Child(s.addr.String())
	cmd.Stdout = os.Stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return child{}, err
	}
	if err := cmd.Start(); err != nil {
		return child{}, fmt.Errorf("prefork: start child: %w", err)
	}
	ready := make(chan bool, 1)
	relayed := make(chan struct{})
	go func() {
		defer close(relayed)
		relayChildOutput(stderr, ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			<-relayed
			err := cmd.Wait()
			return child{}, fmt.Errorf("prefork: child %d exited before it was ready: %v", i, err)
		}
	case <-time.After(childStartTimeout):
		cmd.Process.Kill()
		<-relayed
		cmd.Wait()
		return child{}, fmt.Errorf("prefork: child %d did not become ready within %s", i, childStartTimeout)
	}
	s.mu.Lock()
	s.children[i] = cmd
	s.mu.Unlock()
	return child{cmd, relayed}, nil
}

// relayChildOutput copies a child's stderr to ours, holding back its ready
// line and sending true on ready when it comes; false if the child's output
// ends first.
func relayChildOutput(r io.Reader, ready chan<- bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := false
	for sc.Scan() {
		line := sc.Text()
		if !seen && strings.HasPrefix(line, ReadyPrefix) {
			seen = true
			ready <- true
			continue
		}
		fmt.Fprintln(os.Stderr, line)
	}
	if !seen {
		ready <- false
	}
}

// supervise waits for the child of slot i and starts a new one when it dies
// while the server is not stopping; restarts back off while children keep
// dying young.
func (s *preforkServer) supervise(i int, ch child) {
	defer s.exited.Done()
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		// Its last lines (an access log flushed as it stops) are relayed
		// before Wait, which closes the pipe they come through.
		<-ch.relayed
		err := ch.cmd.Wait()
		select {
		case <-s.stopping:
			return
		default:
		}
		slog.Warn("prefork child exited; starting another", "slot", i, "pid", ch.cmd.Process.Pid, "err", err)
		if time.Since(started) > 5*time.Second {
			backoff = 100 * time.Millisecond
		}
		for {
			select {
			case <-s.stopping:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			next, err := s.startChild(i)
			if err == nil {
				ch = next
				break
			}
			slog.Error("prefork child failed to start", "slot", i, "err", err)
		}
	}
}

func (s *preforkServer) signalAll(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cmd := range s.children {
		if cmd != nil && cmd.Process != nil {
			cmd.Process.Signal(sig)
		}
	}
}

// Shutdown passes SIGTERM to every child, so each stops gracefully, and
// kills those still running when ctx ends.
func (s *preforkServer) Shutdown(ctx context.Context) error {
	select {
	case <-s.stopping:
	default:
		close(s.stopping)
		s.signalAll(syscall.SIGTERM)
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.signalAll(syscall.SIGKILL)
		<-s.done
		return ctx.Err()
	}
}
