package server

import (
	"crypto/tls"
	"net"
	"time"

	"loadlab/internal/proxyproto"
	"loadlab/internal/tlsx"
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
	if pc, ok := nc.(*prefixConn); ok {
		nc = pc.Conn
	}
	tlsx.AckNow(nc)
	return tc, remote, nil
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
