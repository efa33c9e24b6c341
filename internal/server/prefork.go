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
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"loadlab"
	"loadlab/internal/rawsys"
)

// ReadyPrefix starts the line a server prints on stderr once it accepts
// connections; scripts, tests and the prefork parent wait for it.
const ReadyPrefix = "loadlab serve" + loadlab.ReadyMark

// ReadyLine is the whole ready line, naming the address actually bound.
// note, when not empty, is added inside the parentheses (TLS).
func ReadyLine(model string, addr net.Addr, note string) string {
	if note != "" {
		note = ", " + note
	}
	return fmt.Sprintf("%s%s (model %s, pid %d%s)", ReadyPrefix, addr, model, os.Getpid(), note)
}

// ListenerClosedLine is what a prefork child prints on stderr during a
// stop once its listener is closed; the parent holds it back, as it does
// the ready line.
const ListenerClosedLine = "loadlab serve: listener closed"

// WaitForSiblings is a prefork child's ListenerClosed: it tells the
// parent that its listener is closed, then waits, serving on, until the
// parent closes its stdin, which it does once every child's listener is
// closed. siblingWait caps the wait, for a parent that never answers.
func WaitForSiblings(stdin io.Reader) func() {
	return func() {
		fmt.Fprintln(os.Stderr, ListenerClosedLine)
		released := make(chan struct{})
		go func() {
			io.Copy(io.Discard, stdin)
			close(released)
		}()
		select {
		case <-released:
		case <-time.After(siblingWait):
		}
	}
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
	children []*child // the running child of each slot
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
	addr, hold, err := holdPort(c.cfg.Listen)
	if err != nil {
		return nil, err
	}
	defer rawsys.Close(hold)
	s := &preforkServer{core: c, addr: addr, stopping: make(chan struct{}), done: make(chan struct{}),
		children: make([]*child, c.cfg.Procs)}
	for i := range c.cfg.Procs {
		ch, err := s.startChild(i)
		if err != nil {
			close(s.stopping)
			s.Signal(syscall.SIGKILL)
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

// holdPort binds a socket to addr with SO_REUSEPORT and does not listen
// on it: the port is taken (a port of 0 becomes a real one), the children
// can bind it too, and no connection is ever queued on it. A listening
// holder would take its share of the connections that arrive while the
// children start, and reset them when it closes.
func holdPort(addr string) (*net.TCPAddr, int, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, -1, fmt.Errorf("listen %s: %v (give host:port, such as :8080)", addr, err)
	}
	ip := ta.IP
	if ip == nil {
		ip = net.IPv6unspecified // as Go's listeners bind ":port": both families
	}
	fd, err := rawsys.Socket(rawsys.NewSockaddr(ip, ta.Port).Family)
	if err != nil && ta.IP == nil {
		ip = net.IPv4zero // no IPv6 on this machine
		fd, err = rawsys.Socket(unix.AF_INET)
	}
	if err != nil {
		return nil, -1, listenError(addr, err)
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			rawsys.Close(fd)
			return nil, -1, listenError(addr, err)
		}
	}
	if err := rawsys.Bind(fd, rawsys.NewSockaddr(ip, ta.Port)); err != nil {
		rawsys.Close(fd)
		return nil, -1, listenError(addr, err)
	}
	bound, err := rawsys.LocalAddr(fd)
	if err != nil {
		rawsys.Close(fd)
		return nil, -1, listenError(addr, err)
	}
	return bound, fd, nil
}

func (s *preforkServer) Addr() net.Addr        { return s.addr }
func (s *preforkServer) Done() <-chan struct{} { return s.done }

// PIDs lists the running children's process ids.
func (s *preforkServer) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pids []int
	for _, ch := range s.children {
		if ch != nil {
			pids = append(pids, ch.cmd.Process.Pid)
		}
	}
	return pids
}

// child is a running prefork child. relayed is closed once all it wrote
// on stderr has passed through to ours, closed once it has said its
// listener is closed; closing release lets it finish its stop.
type child struct {
	cmd     *exec.Cmd
	relayed chan struct{}
	closed  chan struct{}
	release io.Closer
}

// startChild starts the child of slot i and waits for its ready line. The
// child's other stderr lines (its access log) pass through to ours.
func (s *preforkServer) startChild(i int) (*child, error) {
	cmd := s.core.cfg.Child(s.addr.String())
	cmd.Stdout = os.Stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	release, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("prefork: start child: %w", err)
	}
	ch := &child{cmd: cmd, relayed: make(chan struct{}), closed: make(chan struct{}), release: release}
	ready := make(chan bool, 1)
	go func() {
		defer close(ch.relayed)
		relayChildOutput(stderr, ready, ch.closed)
	}()
	select {
	case ok := <-ready:
		if !ok {
			<-ch.relayed
			err := cmd.Wait()
			return nil, fmt.Errorf("prefork: child %d exited before it was ready: %v", i, err)
		}
	case <-time.After(childStartTimeout):
		cmd.Process.Kill()
		<-ch.relayed
		cmd.Wait()
		return nil, fmt.Errorf("prefork: child %d did not become ready within %s", i, childStartTimeout)
	}
	s.mu.Lock()
	s.children[i] = ch
	s.mu.Unlock()
	return ch, nil
}

// relayChildOutput copies a child's stderr to ours, holding back two
// lines: its ready line, on which it sends true on ready (false if the
// output ends first), and its ListenerClosedLine, on which it closes
// closed.
func relayChildOutput(r io.Reader, ready chan<- bool, closed chan<- struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen, said := false, false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !seen && strings.HasPrefix(line, ReadyPrefix):
			seen = true
			ready <- true
		case !said && line == ListenerClosedLine:
			said = true
			close(closed)
		default:
			fmt.Fprintln(os.Stderr, line)
		}
	}
	if !seen {
		ready <- false
	}
}

// supervise waits for the child of slot i and starts a new one when it dies
// while the server is not stopping; restarts back off while children keep
// dying young.
func (s *preforkServer) supervise(i int, ch *child) {
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

// Signal passes sig on to every running child.
func (s *preforkServer) Signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.children {
		if ch != nil {
			ch.cmd.Process.Signal(sig)
		}
	}
}

// Shutdown passes SIGTERM to every child, so each stops gracefully, and
// kills those still running when ctx ends. A child closes its listener
// and waits; once all have, they are released to say "Connection: close"
// and finish, so that no client reconnects into a backlog about to be
// reset.
func (s *preforkServer) Shutdown(ctx context.Context) error {
	select {
	case <-s.stopping:
	default:
		close(s.stopping)
		s.Signal(syscall.SIGTERM)
		go s.releaseOnceClosed(ctx)
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.Signal(syscall.SIGKILL)
		<-s.done
		return ctx.Err()
	}
}

// siblingWait bounds how long a stopping child waits for the others to
// close their listeners; the parent releases them sooner, as soon as all
// have.
const siblingWait = 5 * time.Second

// releaseOnceClosed lets the children finish their stop once each has
// closed its listener or exited.
func (s *preforkServer) releaseOnceClosed(ctx context.Context) {
	s.mu.Lock()
	children := slices.Clone(s.children)
	s.mu.Unlock()
	bound := time.After(siblingWait)
	for _, ch := range children {
		if ch == nil {
			continue
		}
		select {
		case <-ch.closed:
		case <-ch.relayed:
		case <-ctx.Done():
		case <-bound:
		}
	}
	for _, ch := range children {
		if ch != nil {
			ch.release.Close()
		}
	}
}
