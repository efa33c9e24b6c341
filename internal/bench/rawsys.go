package bench

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's socket calls never block (every socket is non-blocking), so
// they are made as raw system calls: a normal call tells the Go scheduler
// it may block, and on a busy machine the scheduler then hands the loop's
// processor to another thread and has to win it back after every connect
// and close. epoll_wait, which does block, stays a normal call.

func rawErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func rawSocket(family int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	return int(fd), rawErr(e)
}

// rawSockaddr is a socket address in the kernel's layout.
type rawSockaddr struct {
	ptr unsafe.Pointer
	len uintptr
	v4  unix.RawSockaddrInet4
	v6  unix.RawSockaddrInet6
}

func newRawSockaddr(ip []byte, port int) *rawSockaddr {
	sa := &rawSockaddr{}
	pb := (*[2]byte)(unsafe.Pointer(&sa.v4.Port))
	if ip4 := len(ip) == 4; ip4 {
		sa.v4.Family = unix.AF_INET
		pb[0], pb[1] = byte(port>>8), byte(port)
		copy(sa.v4.Addr[:], ip)
		sa.ptr, sa.len = unsafe.Pointer(&sa.v4), unix.SizeofSockaddrInet4
		return sa
	}
	sa.v6.Family = unix.AF_INET6
	pb = (*[2]byte)(unsafe.Pointer(&sa.v6.Port))
	pb[0], pb[1] = byte(port>>8), byte(port)
	copy(sa.v6.Addr[:], ip)
	sa.ptr, sa.len = unsafe.Pointer(&sa.v6), unix.SizeofSockaddrInet6
	return sa
}

func rawConnect(fd int, sa *rawSockaddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(sa.ptr), sa.len)
	return rawErr(e)
}

func rawWrite(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), rawErr(e)
}

func rawRead(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), rawErr(e)
}

func rawClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawEpollAdd(epfd, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return rawErr(e)
}
