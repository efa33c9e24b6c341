package evloop

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
	"loadlab/internal/testutil"
)

// echo is a test handler: each connection sends back what it reads,
// holding what the socket cannot take and reading nothing meanwhile; a
// line "panic" panics inside Ready. With idleFor set, a connection that
// has been quiet that long is closed.
type echo struct {
	l       *Loop
	conns   map[*echoConn]struct{}
	taken   *atomic.Int64
	failed  *atomic.Int64
	stopped *atomic.Int64
	sweeps  *atomic.Int64
	idleFor time.Duration
}

type echoConn struct {
	e       *echo
	fd      int
	pending []byte
	epoll   Interest
	active  time.Time // its last event
}

func (e *echo) Take(fd int, _ net.Addr) {
	e.taken.Add(1)
	c := &echoConn{e: e, fd: fd}
	e.conns[c] = struct{}{}
	e.l.Own(fd, c)
	e.l.Set(fd, &c.epoll, unix.EPOLLIN)
}
func (e *echo) Refuse(fd int, _ net.Addr) { rawsys.Close(fd) }

// Sweep counts itself and closes the connections quiet for idleFor; with
// no idleFor, an open connection wants the next sweep.
func (e *echo) Sweep() time.Time {
	e.sweeps.Add(1)
	dl := e.l.Deadlines()
	for c := range e.conns {
		switch {
		case e.idleFor == 0:
			dl.Soon()
		case dl.Passed(c.active, e.idleFor):
			c.close()
		}
	}
	return dl.Next()
}
func (e *echo) Stopping() {
	e.stopped.Add(1)
	for c := range e.conns {
		if len(c.pending) == 0 {
			c.close()
		}
	}
}
func (e *echo) CloseAll() {
	for c := range e.conns {
		c.close()
	}
}

func (c *echoConn) close() {
	delete(c.e.conns, c)
	c.e.l.Disown(c.fd)
	c.e.l.Ended()
}

func (c *echoConn) Fail() { c.e.failed.Add(1); c.close() }

func (c *echoConn) Ready(events uint32) {
	c.active = c.e.l.Now()
	if len(c.pending) > 0 {
		var err error
		if c.pending, err = WriteSome(c.fd, c.pending); err != nil {
			c.close()
			return
		}
	}
	if len(c.pending) == 0 && events&(unix.EPOLLIN|unix.EPOLLHUP) != 0 {
		n, err := rawsys.Read(c.fd, c.e.l.Buf())
		if n == 0 && err == nil || err != nil && err != unix.EAGAIN {
			c.close()
			return
		}
		if n > 0 {
			if bytes.HasPrefix(c.e.l.Buf()[:n], []byte("panic")) {
				panic("asked to")
			}
			if c.pending, err = WriteSome(c.fd, c.e.l.Buf()[:n]); err != nil {
				c.close()
				return
			}
			c.pending = append([]byte(nil), c.pending...) // the loop's buffer is not ours to keep
		}
	}
	if len(c.pending) > 0 {
		c.e.l.Set(c.fd, &c.epoll, unix.EPOLLOUT) // backpressure: read nothing until it is taken
	} else {
		c.e.l.Set(c.fd, &c.epoll, unix.EPOLLIN)
	}
}

type echoServer struct {
	g                      *Group
	addr                   *net.TCPAddr
	lnfd                   int
	taken, failed, stopped atomic.Int64
	sweeps                 atomic.Int64
	panics                 atomic.Int64
}

func startEcho(t *testing.T, loops int) *echoServer {
	t.Helper()
	return startEchoIdle(t, loops, 0)
}

// startEchoIdle starts an echo server that closes connections quiet for
// idleFor (0: never).
func startEchoIdle(t *testing.T, loops int, idleFor time.Duration) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := DetachListener(ln)
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{addr: ln.Addr().(*net.TCPAddr), lnfd: fd}
	s.g, err = Start(fd, Config{Loops: loops, SweepEvery: 10 * time.Millisecond,
		Panicked: func(any, []byte) { s.panics.Add(1) }},
		func(l *Loop) Handler {
			return &echo{l: l, conns: map[*echoConn]struct{}{}, taken: &s.taken, failed: &s.failed, stopped: &s.stopped, sweeps: &s.sweeps, idleFor: idleFor}
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(nil) })
	return s
}

func (s *echoServer) stop(done <-chan struct{}) {
	if !s.g.Stopping() {
		s.g.Stop(func() { unix.Close(s.lnfd) }, nil, done)
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q %v", msg, got, err)
	}
}

// Connections are handed over between loops: with two loops and many
// clients, each loop takes some, and every one is served.
func TestHandOverServesEveryConnection(t *testing.T) {
	s := startEcho(t, 2)
	var conns []net.Conn
	for i := range 40 {
		c, err := net.Dial("tcp", s.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, strings.Repeat("x", i+1))
		conns = append(conns, c)
	}
	per := map[*Loop]int{}
	var mu sync.Mutex // Each runs on every loop at once
	s.g.Each(func(h Handler) { mu.Lock(); per[h.(*echo).l] = len(h.(*echo).conns); mu.Unlock() })
	if len(per) != 2 || per[s.g.loops[0]] == 0 || per[s.g.loops[1]] == 0 {
		t.Errorf("40 connections over two loops held as %v", per)
	}
	for i, c := range conns {
		roundTrip(t, c, strings.Repeat("y", i+1))
	}
}

// A large message to a client that reads slowly is written in parts, kept
// meanwhile, and arrives whole and in order.
func TestPartialWritesArriveWhole(t *testing.T) {
	s := startEcho(t, 1)
	c, err := net.Dial("tcp", s.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var want bytes.Buffer
	for i := range 200000 {
		want.WriteString(string(rune('a' + i%26)))
	}
	go c.Write(want.Bytes()) // the echo stops reading while its answer waits: the write blocks until we read
	got := make([]byte, want.Len())
	r := bufio.NewReaderSize(c, 512)
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("echoed %d bytes, equal %v, %v", len(got), bytes.Equal(got, want.Bytes()), err)
	}
}

// A panic in one connection's Ready fails that connection alone: it is
// closed and counted, and the loop goes on serving the others.
func TestPanicFailsOneConnection(t *testing.T) {
	s := startEcho(t, 1)
	other, err := net.Dial("tcp", s.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	roundTrip(t, other, "before")
	bad, err := net.Dial("tcp", s.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	io.WriteString(bad, "panic")
	bad.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := bad.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the panicking connection stayed open: %d %v", n, err)
	}
	roundTrip(t, other, "after")
	if s.failed.Load() != 1 || s.panics.Load() != 1 {
		t.Errorf("failed %d, panics reported %d; want 1 and 1", s.failed.Load(), s.panics.Load())
	}
}

// A closed descriptor is disowned at once but closed after the round, and
// a new connection that gets its number is served as itself.
func TestDeferredCloseReusesDescriptors(t *testing.T) {
	s := startEcho(t, 1)
	for i := range 200 {
		c, err := net.Dial("tcp", s.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "n"+strings.Repeat("!", i%7))
		c.Close()
	}
	testutil.Eventually(t, 10*time.Second, "every closed connection let go", func() bool {
		var held atomic.Int64
		s.g.Each(func(h Handler) { held.Add(int64(len(h.(*echo).conns))) })
		return held.Load() == 0
	})
}

// Stop closes idle connections, lets one with output pending finish, and
// returns once the loops have ended; with its done channel closed it
// closes what is left.
func TestStop(t *testing.T) {
	s := startEcho(t, 2)
	idle, err := net.Dial("tcp", s.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	roundTrip(t, idle, "idle")
	busy, err := net.Dial("tcp", s.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	big := bytes.Repeat([]byte("z"), 8<<20)
	go busy.Write(big)
	// Wait until the echo holds output for busy (it reads nothing then).
	testutil.Eventually(t, 10*time.Second, "output pending for the busy client", func() bool {
		var pending atomic.Bool
		s.g.Each(func(h Handler) {
			for c := range h.(*echo).conns {
				if len(c.pending) > 0 {
					pending.Store(true)
				}
			}
		})
		return pending.Load()
	})
	stopped := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { s.stop(ctx.Done()); close(stopped) }()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("idle connection left open by Stop: %d %v", n, err)
	}
	select {
	case <-stopped:
		t.Fatal("Stop returned while a connection still had output pending")
	default:
	}
	cancel() // the grace is over
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after its grace ended")
	}
	if _, err := net.DialTimeout("tcp", s.addr.String(), time.Second); err == nil {
		t.Error("the listener still accepts after Stop")
	}
}

// TestDetachListenerLeavesGoPoller: a detached listener is in no epoll
// set of the process (Go's poller registered the original), and still
// accepts.
func TestDetachListenerLeavesGoPoller(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var before int
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { before = int(fd) })
	if !inEpollSet(t, before) {
		t.Fatalf("descriptor %d of a net.Listener is in no epoll set: the check below proves nothing", before)
	}
	fd, err := DetachListener(ln)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if inEpollSet(t, fd) || inEpollSet(t, before) {
		t.Fatal("the detached listener is still in an epoll set")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("ln still accepts after DetachListener")
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 10_000); n != 1 || err != nil {
		t.Fatalf("no connection to accept on the detached listener: %d %v", n, err)
	}
	if nfd, _, err := rawsys.Accept4(fd); err != nil {
		t.Fatal(err)
	} else {
		unix.Close(nfd)
	}
}

// inEpollSet reports whether descriptor fd is registered in any of the
// process's epoll sets, from /proc/self/fdinfo.
func inEpollSet(t *testing.T, fd int) bool {
	t.Helper()
	infos, err := filepath.Glob("/proc/self/fdinfo/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range infos {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" && f[1] == strconv.Itoa(fd) {
				return true
			}
		}
	}
	return false
}

// TestKnockAfterTheEndWritesNowhere: waking a group whose loops have
// ended writes nothing into the descriptors that took their numbers.
func TestKnockAfterTheEndWritesNowhere(t *testing.T) {
	s := startEcho(t, 2)
	s.stop(nil)
	var pairs [][2]int
	for range 16 { // the loops' old numbers go to these; a write to one end arrives at the other
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		pairs = append(pairs, p)
	}
	s.g.wake()
	for _, l := range s.g.loops {
		l.post(func() {})
		l.handOff(-1, nil)
	}
	buf := make([]byte, 64)
	for _, p := range pairs {
		for _, fd := range p {
			if n, _ := unix.Read(fd, buf); n > 0 {
				t.Fatalf("%d bytes arrived on descriptor %d after the loops ended: %x", n, fd, buf[:n])
			}
		}
	}
}

// An idle loop sleeps until an event: past the one sweep after its start,
// it sweeps only while it holds a connection, and stops again once the
// last one closes.
func TestIdleLoopSleeps(t *testing.T) {
	s := startEcho(t, 2)
	time.Sleep(200 * time.Millisecond) // twenty sweep intervals
	if n := s.sweeps.Load(); n > 2 {
		t.Fatalf("%d sweeps with no connection; want one a loop, after its start", n)
	}
	c, err := net.Dial("tcp", s.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "no sweep while a connection is open", func() bool { return s.sweeps.Load() > 0 })
	c.Close()
	// Once the close is seen, the count stops: two reads 100 ms apart
	// (ten sweep intervals) agree.
	testutil.Eventually(t, 5*time.Second, "the loops kept sweeping after the last connection closed", func() bool {
		before := s.sweeps.Load()
		time.Sleep(100 * time.Millisecond)
		return s.sweeps.Load() == before
	})
}

// A loop whose connections are all quiet sleeps until the first of their
// deadlines, not sweep by sweep, and ends them there.
func TestSweepWaitsForTheDeadline(t *testing.T) {
	s := startEchoIdle(t, 1, 300*time.Millisecond) // thirty sweep intervals
	c, err := net.Dial("tcp", s.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	before := s.sweeps.Load()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read on a connection quiet past idleFor: %d bytes, %v; want the server's close (EOF)", n, err)
	}
	// The sweep within SweepEvery of the echo finds the deadline, the one
	// at the deadline closes it; at most one more for a late wake.
	if n := s.sweeps.Load() - before; n > 3 {
		t.Errorf("%d sweeps while the connection was quiet; want the loop asleep until its deadline", n)
	}
}
