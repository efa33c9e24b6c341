package balancer

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// spliceCopy moves bytes from src to dst through a pipe with splice(2),
// as io.Copy between two *net.TCPConn does, with one difference: it holds
// a pipe only while bytes are moving. io.Copy keeps its pipe (two
// descriptors, and the pipe's buffer) while it waits for the next byte, so
// an idle proxied connection cost six descriptors instead of two, and ten
// thousand of them ran out of the process's descriptors.
func spliceCopy(dst, src *net.TCPConn) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	wc, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		var p *pipe
		var n int64
		var serr error
		// The callback runs when src may be readable: the pipe is taken
		// there and given back if there was nothing to read after all.
		err := rc.Read(func(fd uintptr) bool {
			p = pipes.Get().(*pipe)
			for {
				n, serr = unix.Splice(int(fd), nil, p.w, nil, maxSplice, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				if serr != unix.EINTR {
					break
				}
			}
			if serr == unix.EAGAIN {
				pipes.Put(p)
				p = nil
				return false // nothing yet: wait, holding no pipe
			}
			return true
		})
		if err == nil {
			err = serr
		}
		if err != nil || n == 0 {
			if p != nil {
				pipes.Put(p)
			}
			if n == 0 && err == nil {
				return total, nil // EOF
			}
			return total, wrapSplice("read", err)
		}
		left := n
		err = wc.Write(func(fd uintptr) bool {
			for left > 0 {
				m, werr := unix.Splice(p.r, nil, int(fd), nil, int(left), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case werr == unix.EINTR:
					continue
				case werr == unix.EAGAIN:
					return false // dst is full: wait until it drains
				case werr != nil:
					serr = werr
					return true
				}
				left -= m
			}
			return true
		})
		if err == nil {
			err = serr
		}
		total += n - left
		if left > 0 || err != nil {
			p.close() // bytes stuck in it: not fit for reuse
			return total, wrapSplice("write", err)
		}
		pipes.Put(p)
	}
}

// maxSplice is the most moved per splice: a default pipe's capacity.
const maxSplice = 64 << 10

func wrapSplice(op string, err error) error {
	if err == nil {
		return io.ErrShortWrite
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return &net.OpError{Op: op, Net: "tcp", Err: errno}
	}
	return err
}

// pipe is a kernel pipe used as splice's buffer.
type pipe struct{ r, w int }

func (p *pipe) close() {
	runtime.SetFinalizer(p, nil)
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipes are reused: making one costs a system call and two descriptors.
// One dropped by the pool is closed by its finalizer.
var pipes = sync.Pool{New: func() any {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return &pipe{r: -1, w: -1}
	}
	p := &pipe{r: fds[0], w: fds[1]}
	runtime.SetFinalizer(p, (*pipe).close)
	return p
}}
