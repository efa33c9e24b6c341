package balancer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
	"loadlab/internal/tlsx"
)

// BackendTLSConfig is TLS to the backends, as HAProxy's `ssl` on its
// server lines: verified against the CAs of a file (ca-file), or the
// system's when none is given, or not verified at all (verify none).
type BackendTLSConfig struct {
	Enabled  bool   `yaml:"enabled"`
	CA       string `yaml:"ca"`       // PEM file of the CAs that sign the backends' certificates
	Insecure bool   `yaml:"insecure"` // no verification of the backends' certificates
}

func (c BackendTLSConfig) validate() error {
	switch {
	case !c.Enabled && (c.CA != "" || c.Insecure):
		return errors.New("backend_tls: ca and insecure are for TLS to the backends; turn it on (enabled: true, --backend-tls)")
	case c.CA != "" && c.Insecure:
		return errors.New("backend_tls: give a ca to verify the backends, or insecure not to, not both")
	}
	return nil
}

// backendTLS is the balancer's TLS to its backends. Its session cache
// outlives reloads: a backend connection after a reload resumes, as
// before it, instead of a full handshake (HAProxy keeps its server
// sessions the same way).
type backendTLS struct {
	base    *tls.Config
	byName  sync.Map // server name → *tls.Config for it
	session tls.ClientSessionCache
}

// newBackendTLS builds the client side from c, reusing cache when not
// nil; http mode offers ALPN http/1.1, tcp mode no protocol.
func newBackendTLS(c BackendTLSConfig, mode string, cache tls.ClientSessionCache) (*backendTLS, error) {
	if !c.Enabled {
		return nil, nil
	}
	if cache == nil {
		cache = tls.NewLRUClientSessionCache(1024)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: cache, InsecureSkipVerify: c.Insecure}
	if mode == "http" {
		conf.NextProtos = []string{"http/1.1"}
	}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("backend_tls.ca %s: %v", c.CA, errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend_tls.ca %s: no PEM certificate in it", c.CA)
		}
		conf.RootCAs = pool
	}
	return &backendTLS{base: conf, session: cache}, nil
}

// config is the configuration for be: its host name as SNI and as the
// name its certificate must carry (an IP address is checked against the
// certificate's addresses, and sent as no SNI).
func (t *backendTLS) config(be *Backend) *tls.Config {
	host, _, err := net.SplitHostPort(be.Name)
	if err != nil {
		host, _, _ = net.SplitHostPort(be.Addr())
	}
	if c, ok := t.byName.Load(host); ok {
		return c.(*tls.Config)
	}
	c := t.base.Clone()
	c.ServerName = host
	t.byName.Store(host, c)
	return c
}

// dialTLS starts a TLS connection to be for a loop. The loop cannot make
// the handshake, so a goroutine does, and bridges the TLS connection to
// the socket pair whose other end it returns. The connect's outcome comes
// down the pair first, as one byte — 0 for connected, 1 for failed and
// the error's text after it — and connectResult reads it where a plain
// connect's SO_ERROR is read: a failed handshake is a failed connect,
// and the request goes to the next backend.
func dialTLS(b *Balancer, be *Backend, sa *rawsys.Sockaddr, t *backendTLS) (int, error) {
	loopEnd, pair, err := socketPair()
	if err != nil {
		return -1, &net.OpError{Op: "socket", Net: "tcp", Err: err}
	}
	cfg := b.Config()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
		tc, err := handshake(ctx, sa.TCPAddr().String(), t.config(be))
		cancel()
		if err != nil {
			pair.Write(append([]byte{1}, shortErr(err)...))
			pair.Close()
			return
		}
		be.noteCertificate(tc)
		if _, err := pair.Write([]byte{0}); err != nil { // the loop gave up meanwhile
			tc.Close()
			pair.Close()
			return
		}
		bridge(tc, pair, cfg.ServerIdle)
	}()
	return loopEnd, nil
}

// handshake connects to addr and makes a TLS handshake, within ctx.
func handshake(ctx context.Context, addr string, conf *tls.Config) (*tls.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, &net.OpError{Op: "handshake", Net: "tcp", Err: err}
	}
	return tc, nil
}

// noteCertificate keeps the certificate a backend showed, for the API.
func (be *Backend) noteCertificate(tc *tls.Conn) {
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		info := tlsx.Describe(certs[0])
		be.cert.Store(&info)
	}
}

// connectWant is what a connect in progress waits for in epoll: a plain
// socket becomes writable, a TLS bridge's end readable (its one byte).
func (b *Balancer) connectWant() uint32 {
	if b.backendTLS.Load() != nil {
		return unix.EPOLLIN
	}
	return unix.EPOLLOUT
}

// connectResult reports how a backend connect on fd ended, or that it is
// still under way (pending).
func (b *Balancer) connectResult(fd int) (pending bool, err error) {
	if b.backendTLS.Load() == nil {
		if err := rawsys.SocketError(fd); err != nil {
			return false, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
		return false, nil
	}
	var status [1]byte
	n, rerr := rawsys.Read(fd, status[:]) // one byte: what follows may be the backend's
	switch {
	case rerr == unix.EAGAIN || rerr == unix.EINTR:
		return true, nil
	case rerr != nil:
		return false, &net.OpError{Op: "dial", Net: "tcp", Err: rerr}
	case n == 0:
		return false, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("TLS connect ended with no word")}
	case status[0] == 0:
		return false, nil
	}
	msg := make([]byte, 512)
	n, _ = rawsys.Read(fd, msg)
	return false, errors.New(string(msg[:max(n, 0)]))
}

// CheckFiles loads the files c names — certificates and keys, the
// backends' CA — as a start would, without starting: for --check.
func (c *Config) CheckFiles() error {
	if len(c.TLS) > 0 {
		if _, _, err := tlsx.Load(c.TLS); err != nil {
			return err
		}
	}
	_, err := newBackendTLS(c.BackendTLS, c.Mode, nil)
	return err
}
