package lab

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdPort binds a socket to a free loopback port without listening on
// it and without SO_REUSEADDR, as a client's closed connection in
// TIME_WAIT holds its own port: a listener gets EADDRINUSE and a dial is
// refused. release frees it.
func holdPort(t *testing.T) (port int, release func()) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	var once sync.Once
	release = func() { once.Do(func() { unix.Close(fd) }) }
	t.Cleanup(release)
	return sa.(*unix.SockaddrInet4).Port, release
}

// A configured port held by closed connections is waited for, with a
// line saying so, and taken once they are gone; past the bound, one line
// says to use --ports auto. A port a server is on is refused at once.
func TestPortHeldByClosedConnectionsIsWaitedFor(t *testing.T) {
	defer func(p time.Duration) { timeWaitPatience = p }(timeWaitPatience)
	timeWaitPatience = 10 * time.Second
	var said []string
	logf := func(format string, args ...any) { said = append(said, fmt.Sprintf(format, args...)) }

	port, release := holdPort(t)
	time.AfterFunc(500*time.Millisecond, release)
	if err := claimPort(context.Background(), port, "system a, process s", logf); err != nil {
		t.Fatalf("after the port was freed: %v", err)
	}
	if len(said) != 1 || !strings.Contains(said[0], fmt.Sprintf("port %d (system a, process s) is held by closed connections of an earlier run (TIME_WAIT): waiting", port)) {
		t.Errorf("said %q", said)
	}

	timeWaitPatience = time.Second
	port, _ = holdPort(t)
	if err := claimPort(context.Background(), port, "system a, process s", logf); err == nil || !strings.Contains(err.Error(), "is still held by closed connections (TIME_WAIT) after 1s; run with --ports auto") {
		t.Errorf("held past the bound: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := claimPort(ctx, port, "system a, process s", logf); err != context.Canceled {
		t.Errorf("interrupted: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	if err := claimPort(context.Background(), busy, "system a, process s", logf); err == nil || !strings.Contains(err.Error(), "is in use: another server is on it") {
		t.Errorf("a server on the port: %v", err)
	}
}
