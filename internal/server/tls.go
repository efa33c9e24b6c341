package server

import (
	"crypto/tls"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/proxyproto"
)

// TLS runs on goroutines in every model: crypto/tls reads and writes
// through a net.Conn that blocks, which the event loops' non-blocking
// sockets are not, and a handshake is tens of microseconds of CPU that
// would stall every other connection of a loop. With Config.TLS set,
// async and prefork's children serve each connection on a goroutine, as
// the thread model does (docs/PERFORMANCE.md has what it costs).

// startTLS opens a TLS connection for the blocking models: first the
// PROXY header, when one is expected (it comes before the handshake, as
// HAProxy's send-proxy sends it on an ssl server line), then the
// handshake, both within the header timeout. It returns the connection to
// serve and the client's address.
func (c *core) startTLS(nc net.Conn) (*tls.Conn, net.Addr, error) {
	nc.SetDeadline(time.Now().Add(c.cfg.HeaderTimeout))
	remote := nc.RemoteAddr()
	if c.cfg.AcceptProxy {
		addr, rest, err := readProxyHeader(nc)
		if err != nil {
			return nil, nil, err
		}
		if addr != nil {
			remote = addr
		}
		if len(rest) > 0 {
			nc = &prefixConn{Conn: nc, prefix: rest}
		}
	}
	tc := tls.Server(nc, c.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		return nil, nil, err
	}
	nc.SetDeadline(time.Time{})
	ackNow(nc)
	return tc, remote, nil
}

// ackNow acknowledges at once what the client sent last: the TLS 1.3
// Finished. Go's server sends its session tickets before that message
// arrives, not after as OpenSSL's does, so nothing of the server's would
// carry the acknowledgement; a client with Nagle's algorithm on (ab) holds
// its request until it comes, and the kernel delays it 40 ms. Measured:
// ab against serve over TLS 1.3, 219 requests/s at -c 10 without, against
// nginx's 1,710.
func ackNow(nc net.Conn) {
	if pc, ok := nc.(*prefixConn); ok {
		nc = pc.Conn
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		if raw, err := tcp.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
		}
	}
}

// readProxyHeader reads a PROXY header from the start of nc; rest is what
// came after it in the same reads.
func readProxyHeader(nc net.Conn) (addr net.Addr, rest []byte, err error) {
	buf := make([]byte, 0, 4096) // a v2 header may carry TLVs
	for {
		m, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		addr, n, perr := proxyproto.Parse(buf)
		switch {
		case perr != nil:
			return nil, nil, perr
		case n > 0:
			return addr, buf[n:], nil
		case err != nil:
			return nil, nil, err
		case len(buf) == cap(buf):
			return nil, nil, proxyproto.ErrNotProxy // longer than any header
		}
	}
}

// prefixConn reads prefix before the connection's own input.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
