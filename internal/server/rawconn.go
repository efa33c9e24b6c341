package server

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/evloop"
	"loadlab/internal/rawsys"
)

// rawConn is an accepted TCP connection as the thread and pool models
// serve it: its system calls are made directly, and Go's poller takes the
// socket only the first time one would block. A connection that brings
// its request with it and is answered in one write (every connection of
// the lab's ab runs) then costs accept4, read, write and close, as in
// nginx or a C thread-per-connection server; net.Conn adds to that an
// epoll_ctl to register it, another to remove it, a TCP_NODELAY and a
// getsockname, and makes each call through the scheduler's
// entersyscall, where sysmon may take the P away from a goroutine that
// is about to return (docs/PERFORMANCE.md has what each costs).
//
// One goroutine serves it; abort alone may come from another (a stop
// closing idle connections).
type rawConn struct {
	fd     int
	remote *net.TCPAddr

	mu     sync.Mutex // closed and f, against abort
	closed bool
	f      *os.File // the socket in Go's poller, from the first wait on
	sc     syscall.RawConn

	readDeadline, writeDeadline time.Time
	armedRead, armedWrite       time.Time // what f was last given
	noDelay                     bool      // TCP_NODELAY is set
}

// lazyDeadline is how far a deadline may move before the poller is told,
// as nginx keeps a timer that would fire within 300 ms of its new time
// (NGX_TIMER_LAZY_DELAY): a keep-alive connection moves its idle deadline
// with every request, and each move is a runtime timer reset.
const lazyDeadline = 300 * time.Millisecond

// arm gives f the deadline want unless the one it has is close enough.
func arm(set func(time.Time) error, armed *time.Time, want time.Time) {
	if want.IsZero() != armed.IsZero() || (want.Sub(*armed)).Abs() >= lazyDeadline {
		set(want)
		*armed = want
	}
}

// rawListener accepts rawConns. Its socket is out of net's hands (a
// *net.TCPListener's raw connection cannot wait to read), in Go's poller
// as an *os.File, which can.
type rawListener struct {
	f      *os.File
	sc     syscall.RawConn
	addr   net.Addr
	closed atomic.Bool
}

// newRawListener takes ln's socket over; ln is closed. Connections are
// accepted once their first bytes have come (TCP_DEFER_ACCEPT, as
// nginx's `listen … deferred`, bounded by the head timeout as nginx
// bounds it by client_header_timeout): a goroutine then finds its
// request there, where otherwise half of them, on a loaded machine,
// found nothing yet and had to put the socket in the poller and wait.
// Measured, thread model, 4 alternated 5 s pairs of wrk -c100 with a new
// connection each: 28.1–28.8 µs of CPU per request against 36.4–37.1,
// req/s +12..15 % (docs/PERFORMANCE.md).
func newRawListener(ln *net.TCPListener, headTimeout time.Duration) (*rawListener, error) {
	addr := ln.Addr()
	fd, err := evloop.DetachListener(ln)
	if err != nil {
		return nil, err
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, max(int(headTimeout/time.Second), 1))
	f := os.NewFile(uintptr(fd), "tcp-listener") // non-blocking: pollable
	sc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &rawListener{f: f, sc: sc, addr: addr}, nil
}

// Accept takes one connection, waiting in Go's poller while none is
// there; after Close it returns net.ErrClosed.
func (l *rawListener) Accept() (net.Conn, error) {
	var c *rawConn
	var aerr error
	err := l.sc.Read(func(lnfd uintptr) bool {
		fd, from, err := rawsys.Accept4(int(lnfd))
		switch err {
		case unix.EAGAIN:
			return false
		case nil:
			c = &rawConn{fd: fd, remote: from}
		default:
			aerr = os.NewSyscallError("accept4", err)
		}
		return true
	})
	if err != nil {
		if l.closed.Load() {
			return nil, net.ErrClosed // the file's own error for it is internal/poll's
		}
		return nil, err
	}
	if aerr != nil {
		return nil, aerr
	}
	return c, nil
}

func (l *rawListener) Close() error {
	l.closed.Store(true)
	return l.f.Close()
}

func (l *rawListener) Addr() net.Addr { return l.addr }

func (c *rawConn) Read(p []byte) (int, error) {
	if c.f == nil {
		for {
			n, err := rawsys.Read(c.fd, p)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
			case err != nil:
				return 0, os.NewSyscallError("read", err)
			case n == 0 && len(p) > 0:
				return 0, io.EOF
			default:
				return n, nil
			}
			break
		}
		if err := c.poll(); err != nil {
			return 0, err
		}
	}
	arm(c.f.SetReadDeadline, &c.armedRead, c.readDeadline)
	// Through the poller's raw connection rather than File.Read: the read
	// itself stays a direct system call, the scheduler not entered.
	var n int
	var rerr error
	err := c.sc.Read(func(fd uintptr) bool {
		for {
			n, rerr = rawsys.Read(int(fd), p)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	done := 0
	{ // directly first, even once in the poller: a small answer fits
		for done < len(p) {
			n, err := rawsys.Write(c.fd, p[done:])
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				return done, os.NewSyscallError("write", err)
			}
			done += n
		}
		if done == len(p) {
			return done, nil
		}
		if err := c.poll(); err != nil {
			return done, err
		}
	}
	arm(c.f.SetWriteDeadline, &c.armedWrite, c.writeDeadline)
	n, err := c.f.Write(p[done:])
	return done + n, err
}

// writev writes a then b with one system call when the socket takes
// them: a response head and the body that lies elsewhere.
func (c *rawConn) writev(a, b []byte) error {
	{
		n, err := rawsys.Writev(c.fd, a, b)
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			return os.NewSyscallError("writev", err)
		}
		n = max(n, 0)
		if n == len(a)+len(b) {
			return nil
		}
		if n >= len(a) {
			a, b = nil, b[n-len(a):]
		} else {
			a = a[n:]
		}
	}
	if _, err := c.Write(a); err != nil {
		return err
	}
	_, err := c.Write(b)
	return err
}

// ReadFrom sends a file's bytes with sendfile(2), as net.TCPConn does;
// anything else is copied.
func (c *rawConn) ReadFrom(r io.Reader) (int64, error) {
	var size int64 = -1
	src := r
	if lr, ok := r.(*io.LimitedReader); ok {
		size, src = lr.N, lr.R
	}
	file, ok := src.(*os.File)
	if !ok || size < 0 {
		return io.Copy(struct{ io.Writer }{c}, r) // struct{}: not back into ReadFrom
	}
	if err := c.poll(); err != nil {
		return 0, err
	}
	sc := c.sc
	arm(c.f.SetWriteDeadline, &c.armedWrite, c.writeDeadline)
	var sent int64
	var serr error
	for sent < size && serr == nil {
		err := sc.Write(func(fd uintptr) bool {
			n, err := unix.Sendfile(int(fd), int(file.Fd()), nil, int(min(size-sent, 1<<30)))
			if err == unix.EAGAIN {
				return false
			}
			switch {
			case err != nil && err != unix.EINTR:
				serr = os.NewSyscallError("sendfile", err)
			case n == 0 && err == nil:
				serr = io.ErrUnexpectedEOF // the file is shorter than it was
			}
			sent += int64(max(n, 0))
			return true
		})
		if err != nil {
			return sent, err
		}
	}
	if lr, ok := r.(*io.LimitedReader); ok {
		lr.N -= sent
	}
	return sent, serr
}

// poll puts the socket in Go's poller, for the waits and deadlines of a
// connection that has to wait (keep-alive, mostly).
func (c *rawConn) poll() error {
	if c.f != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	// A non-blocking descriptor: os.NewFile makes it a pollable file.
	f := os.NewFile(uintptr(c.fd), "tcp")
	sc, err := f.SyscallConn()
	if err != nil {
		return err // never for a file NewFile made
	}
	c.f, c.sc = f, sc
	return nil
}

// keptAlive turns Nagle's algorithm off once a second request comes, as
// nginx's tcp_nodelay does: from then on a small answer may follow one
// not yet acknowledged. One-request connections never pay for it.
func (c *rawConn) keptAlive() {
	if !c.noDelay {
		c.noDelay = true
		rawsys.SetNoDelay(c.fd)
	}
}

func (c *rawConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.f != nil {
		return c.f.Close()
	}
	rawsys.Close(c.fd)
	return nil
}

// abort ends the connection from another goroutine than its own: the
// descriptor is shut down, which ends a wait in the poller and any
// read after, and is left for its own goroutine to close, so that its
// number cannot be reused under a system call in flight.
func (c *rawConn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
}

// CloseWrite sends the FIN.
func (c *rawConn) CloseWrite() error {
	rawsys.ShutdownWrite(c.fd)
	return nil
}

// RawFD is the socket's descriptor, for socket options (tlsx.AckNow).
func (c *rawConn) RawFD() int { return c.fd }

func (c *rawConn) LocalAddr() net.Addr {
	a, err := rawsys.LocalAddr(c.fd)
	if err != nil {
		return &net.TCPAddr{}
	}
	return a
}

func (c *rawConn) RemoteAddr() net.Addr { return c.remote }

func (c *rawConn) SetDeadline(t time.Time) error {
	c.readDeadline, c.writeDeadline = t, t
	return nil
}

func (c *rawConn) SetReadDeadline(t time.Time) error {
	c.readDeadline = t
	return nil
}

func (c *rawConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline = t
	return nil
}

var _ net.Conn = (*rawConn)(nil)
