package balancer

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
	"loadlab/internal/tlsx"
)

// TLS termination. A handshake is a hundred microseconds of CPU that
// would hold up every other connection of a loop, and crypto/tls makes it
// only over a net.Conn that blocks. So the front accepts on a goroutine
// and makes each handshake on the connection's own goroutine; then a TLS
// 1.3 connection leaves crypto/tls (tlsx.Handoff) and is given to the
// loops with its record layer (tlsx.Records), as if they had accepted
// it: tcp and http modes, the algorithms, the counters and the timeouts
// stay as they are, and the loop decrypts and encrypts as HAProxy's loop
// does with OpenSSL. TLS 1.2, which has no record layer of ours, gets one
// end of a socket pair instead, its goroutines moving bytes between TLS
// and the pair: the hop that costs a write, a read and a wake-up more
// each way (docs/PERFORMANCE.md).
type tlsFront struct {
	b        *Balancer
	ln       net.Listener
	certs    atomic.Pointer[tlsx.Store]
	warnings atomic.Pointer[[]string] // of the certificates' last load
	conf     *tls.Config

	handshakes, failures atomic.Int64
	bridged              atomic.Int64 // connections served through a socket pair (TLS 1.2)

	mu      sync.Mutex
	closed  bool
	clients map[net.Conn]struct{} // every client connection, to close at the end
	running sync.WaitGroup        // the acceptor and every connection's goroutines
}

// startTLSFront serves TLS on ln with the store's certificates; mode
// decides ALPN: http offers http/1.1 (and 1.0), tcp passes on whatever
// is inside and so names no protocol.
func startTLSFront(b *Balancer, ln net.Listener, certs *tlsx.Store, warnings []string, mode string) *tlsFront {
	f := &tlsFront{b: b, ln: ln, clients: map[net.Conn]struct{}{}}
	f.certs.Store(certs)
	f.warnings.Store(&warnings)
	f.conf = certs.ServerConfig()
	f.conf.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return f.certs.Load().Certificate(hello.ServerName), nil
	}
	if mode == "tcp" {
		f.conf.NextProtos = nil
	}
	tlsx.ForHandoff(f.conf)
	f.running.Go(f.accept)
	return f
}

func (f *tlsFront) accept() {
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: let some free, as
			// net/http's Serve does, rather than spin.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if !f.track(nc) {
			nc.Close()
			return
		}
		f.running.Go(func() { f.serve(nc) })
	}
}

func (f *tlsFront) track(nc net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.clients[nc] = struct{}{}
	return true
}

func (f *tlsFront) untrack(nc net.Conn) {
	f.mu.Lock()
	delete(f.clients, nc)
	f.mu.Unlock()
}

// serve makes the handshake, within the head timeout, then hands the
// connection to the loops: a TLS 1.3 one itself, its record layer with
// it; any other, the plaintext end of a socket pair, bridged here.
func (f *tlsFront) serve(nc net.Conn) {
	defer f.untrack(nc)
	h := tlsx.NewHandoff(nc)
	defer h.Close() // once handed over, the socket's original descriptor alone
	tc := tls.Server(h, f.conf)
	nc.SetDeadline(time.Now().Add(f.b.Config().HeadTimeout))
	if err := tc.Handshake(); err != nil {
		f.failures.Add(1)
		return
	}
	f.handshakes.Add(1)
	nc.SetDeadline(time.Time{})
	tlsx.AckNow(nc)
	from := &tlsClient{TCPAddr: nc.RemoteAddr().(*net.TCPAddr), local: nc.LocalAddr(), serverName: tc.ConnectionState().ServerName}
	fd, rec, err := h.Take(tc)
	switch {
	case err == nil:
		from.records = rec
		f.b.loops.Give(fd, from)
		return
	case err != tlsx.ErrNoHandoff:
		return // out of descriptors: the client sees a close
	}
	loopEnd, pair, err := socketPair()
	if err != nil {
		return
	}
	f.bridged.Add(1)
	f.b.loops.Give(loopEnd, from)
	bridge(tc, pair, f.b.Config().ClientIdle)
}

// socketPair makes a connected pair of Unix stream sockets: the loop's
// end as a raw non-blocking descriptor, the other as a file in Go's
// poller (os.NewFile takes a non-blocking descriptor as it is, where
// net.FileConn would duplicate it and ask the kernel three questions).
func socketPair() (loopEnd int, pair *pairEnd, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	return fds[0], &pairEnd{os.NewFile(uintptr(fds[1]), "tls-bridge")}, nil
}

// pairEnd is the goroutines' end of a socket pair.
type pairEnd struct{ *os.File }

// CloseWrite passes the end of sending on, as a FIN would.
func (p *pairEnd) CloseWrite() error {
	raw, err := p.SyscallConn()
	if err != nil {
		return err
	}
	raw.Control(func(fd uintptr) { err = unix.Shutdown(int(fd), unix.SHUT_WR) })
	return err
}

// bridgeBufs are the copy buffers of the bridges: a TLS record's most.
var bridgeBufs = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// bridge moves bytes between the client's TLS and the loop's end of the
// pair, each way on its own goroutine, passing on each side's end of
// sending: the loop's close becomes close_notify and a FIN to the client,
// the client's FIN a FIN to the loop. A client that stops reading is given
// up after idle, as the loop would give it up.
func bridge(tc *tls.Conn, pair *pairEnd, idle time.Duration) {
	down := make(chan struct{})
	go func() {
		defer close(down)
		buf := bridgeBufs.Get().(*[16 << 10]byte)
		defer bridgeBufs.Put(buf)
		for {
			n, err := pair.Read(buf[:])
			if n > 0 {
				tc.SetWriteDeadline(time.Now().Add(idle))
				if _, werr := tc.Write(buf[:n]); werr != nil {
					pair.Close() // the loop's next write fails, and it lets go
					break
				}
			}
			if err != nil {
				tc.CloseWrite()
				break
			}
		}
		// Whatever the client still sends after our last byte is read and
		// dropped a little while, so that it does not turn our close into
		// a reset that destroys the answer on its way (lingerFor).
		tc.SetReadDeadline(time.Now().Add(lingerFor))
	}()
	buf := bridgeBufs.Get().(*[16 << 10]byte)
	for {
		n, err := tc.Read(buf[:])
		if n > 0 {
			if _, werr := pair.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	bridgeBufs.Put(buf)
	pair.CloseWrite()
	<-down
	pair.Close()
}

// close stops accepting and, once the loops have ended, closes what is
// left: handshakes under way and bridges whose loop end is gone.
func (f *tlsFront) close() {
	f.ln.Close()
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
}

// end closes every client connection still open and waits for their
// goroutines.
func (f *tlsFront) end() {
	f.mu.Lock()
	for nc := range f.clients {
		nc.Close()
	}
	f.mu.Unlock()
	f.running.Wait()
}

// tlsClient is the address of a client whose TLS the front ended: the
// loops hold a socket pair's end, and take from here what the client's
// socket would have told them.
type tlsClient struct {
	*net.TCPAddr
	local      net.Addr      // the balancer's address the client reached, for PROXY headers
	serverName string        // SNI, "" when the client sent none
	records    *tlsx.Records // the record layer, when the connection itself was handed over
}

// helloClient is the address of a client whose TLS passes through (tcp
// mode, no certificates), with the server name its hello asked for.
type helloClient struct {
	*net.TCPAddr
	serverName string
}

// requestClient is an http mode client (its address as the loop or the
// TLS front gave it) with what its request says of where it goes: the key
// it gives the hash (hash_by uri or header:NAME), and the backend its
// cookie names.
type requestClient struct {
	net.Addr
	key    string
	cookie string
}

// clientAddr is the client's TCP address, accepted by a loop or by the
// TLS front.
func clientAddr(from net.Addr) *net.TCPAddr {
	switch a := from.(type) {
	case *net.TCPAddr:
		return a
	case *tlsClient:
		return a.TCPAddr
	case *helloClient:
		return a.TCPAddr
	case *requestClient:
		return clientAddr(a.Addr)
	}
	return nil
}

// serverName is the name the client asked for in its TLS hello, when
// known.
func serverName(from net.Addr) string {
	switch a := from.(type) {
	case *tlsClient:
		return a.serverName
	case *helloClient:
		return a.serverName
	case *requestClient:
		return serverName(a.Addr)
	}
	return ""
}

// localAddr is the balancer's own address on a client's connection fd.
func localAddr(fd int, from net.Addr) net.Addr {
	if t, ok := from.(*tlsClient); ok {
		return t.local
	}
	a, _ := rawsys.LocalAddr(fd)
	return a
}

// viaTLS reports whether the client came over TLS.
func viaTLS(from net.Addr) bool {
	_, ok := from.(*tlsClient)
	return ok
}

// Certificates are the certificates the balancer ends TLS with, as the
// stats page and /api/certificates show them; none without TLS.
func (b *Balancer) Certificates() []tlsx.CertInfo {
	if b.front == nil {
		return nil
	}
	return b.front.certs.Load().Info()
}

// CertWarnings are the warnings of the last load of the certificates:
// keys others may read.
func (b *Balancer) CertWarnings() []string {
	if b.front == nil {
		return nil
	}
	return *b.front.warnings.Load()
}

// Handshakes counts the TLS handshakes made and those that failed (a
// client that gave up, stalled past the head timeout, or spoke no TLS).
func (b *Balancer) Handshakes() (made, failed int64) {
	if b.front == nil {
		return 0, 0
	}
	return b.front.handshakes.Load(), b.front.failures.Load()
}
