// Package rawsys makes the socket calls of loadlab's event loops (bench's
// engine, the balancer's tcp mode) as raw system calls. Every socket in
// those loops is non-blocking, so no call here can block; a normal call
// tells the Go scheduler it may, and on a busy machine the scheduler then
// hands the loop's processor to another thread and has to win it back
// after every read, write, connect and close. epoll_wait, which does
// block, stays a normal call in the loops.
package rawsys

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// Socket makes a non-blocking, close-on-exec TCP socket.
func Socket(family int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	return int(fd), errnoErr(e)
}

// Sockaddr is a socket address in the kernel's layout, made once and
// passed to Connect as it is.
type Sockaddr struct {
	Family int
	ptr    unsafe.Pointer
	len    uintptr
	v4     unix.RawSockaddrInet4
	v6     unix.RawSockaddrInet6
}

// NewSockaddr lays out ip (4 or 16 bytes) and port.
func NewSockaddr(ip net.IP, port int) *Sockaddr {
	sa := &Sockaddr{}
	if ip4 := ip.To4(); ip4 != nil {
		sa.Family = unix.AF_INET
		sa.v4.Family = unix.AF_INET
		putPort(&sa.v4.Port, port)
		copy(sa.v4.Addr[:], ip4)
		sa.ptr, sa.len = unsafe.Pointer(&sa.v4), unix.SizeofSockaddrInet4
		return sa
	}
	sa.Family = unix.AF_INET6
	sa.v6.Family = unix.AF_INET6
	putPort(&sa.v6.Port, port)
	copy(sa.v6.Addr[:], ip.To16())
	sa.ptr, sa.len = unsafe.Pointer(&sa.v6), unix.SizeofSockaddrInet6
	return sa
}

// TCPAddr returns sa as Go's net package spells it.
func (sa *Sockaddr) TCPAddr() *net.TCPAddr {
	if sa.Family == unix.AF_INET {
		p := (*[2]byte)(unsafe.Pointer(&sa.v4.Port))
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), sa.v4.Addr[:]...)), Port: int(p[0])<<8 | int(p[1])}
	}
	p := (*[2]byte)(unsafe.Pointer(&sa.v6.Port))
	return &net.TCPAddr{IP: net.IP(append([]byte(nil), sa.v6.Addr[:]...)), Port: int(p[0])<<8 | int(p[1])}
}

// putPort stores port in network byte order.
func putPort(p *uint16, port int) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// Bind binds fd to sa (a client's local address, port 0 for any).
func Bind(fd int, sa *Sockaddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(sa.ptr), sa.len)
	return errnoErr(e)
}

// Connect starts a connect; on a non-blocking socket, EINPROGRESS says it
// is under way.
func Connect(fd int, sa *Sockaddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(sa.ptr), sa.len)
	return errnoErr(e)
}

// Accept4 takes a connection from a non-blocking listener, itself
// non-blocking and close-on-exec, with the peer's address. (x/sys's
// Accept4 asks the listener for its protocol on every call.)
func Accept4(lnfd int) (int, *net.TCPAddr, error) {
	var rsa unix.RawSockaddrAny
	size := uint32(unsafe.Sizeof(rsa))
	fd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lnfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	return int(fd), tcpAddr(&rsa), nil
}

// tcpAddr reads an AF_INET or AF_INET6 address.
func tcpAddr(rsa *unix.RawSockaddrAny) *net.TCPAddr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return &net.TCPAddr{IP: net.IPv4(a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3]), Port: int(p[0])<<8 | int(p[1])}
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: int(p[0])<<8 | int(p[1])}
	}
	return &net.TCPAddr{}
}

func Write(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errnoErr(e)
}

func Read(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errnoErr(e)
}

// Writev writes a then b in one call: a response head and the body that
// lies elsewhere.
func Writev(fd int, a, b []byte) (int, error) {
	iov := [2]unix.Iovec{{Base: unsafe.SliceData(a)}, {Base: unsafe.SliceData(b)}}
	iov[0].SetLen(len(a))
	iov[1].SetLen(len(b))
	n, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), 2)
	return int(n), errnoErr(e)
}

// Close closes fd; that also takes it out of every epoll set.
func Close(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }

// ShutdownWrite sends FIN: the half-close.
func ShutdownWrite(fd int) { unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0) }

// EpollCtl adds, changes or removes fd in epfd's set; data comes back
// with its events, in EpollEvent.Fd.
func EpollCtl(epfd, op, fd int, events uint32, data int32) error {
	ev := unix.EpollEvent{Events: events, Fd: data}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	return errnoErr(e)
}

// SetNoDelay turns Nagle's algorithm off, as Go's net does for every TCP
// connection: a small message goes out at once.
func SetNoDelay(fd int) {
	one := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// SocketError is a socket's pending error: how a non-blocking connect ended.
func SocketError(fd int) error {
	var v int32
	size := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ERROR, uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		return e
	}
	return errnoErr(unix.Errno(v))
}

// LocalAddr is the address a socket is bound to (getsockname).
func LocalAddr(fd int) (*net.TCPAddr, error) {
	var rsa unix.RawSockaddrAny
	size := uint32(unsafe.Sizeof(rsa))
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)))
	if e != 0 {
		return nil, e
	}
	return tcpAddr(&rsa), nil
}

// Detach takes a socket out of Go's poller: it returns a duplicate of its
// descriptor (close-on-exec, and non-blocking as the original was), the
// caller's to close, and closes c, whose close takes the original out of
// the poller; the socket stays open through the duplicate.
func Detach(c interface {
	syscall.Conn
	io.Closer
}) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(f uintptr) { fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, dupErr
	}
	c.Close()
	return fd, nil
}
