package balancer

import (
	"net"

	"loadlab/internal/evloop"
	"loadlab/internal/rawsys"
	"loadlab/internal/tlsx"
)

// wire is a socket as a loop reads and writes it: plain, or through TLS's
// record layer when the balancer ended TLS and the handshake's
// connection was handed to the loop (tlsfront.go).
type wire struct {
	fd  int
	tls *tlsx.Records // nil: plain
}

// wireFor is the wire of a connection the loop takes: TLS when the front
// handed it over with its record layer.
func wireFor(fd int, from net.Addr) wire {
	if c, ok := from.(*tlsClient); ok {
		return wire{fd: fd, tls: c.records}
	}
	return wire{fd: fd}
}

// read is read(2) of the plaintext.
func (w *wire) read(buf []byte) (int, error) {
	if w.tls != nil {
		return w.tls.Read(w.fd, buf)
	}
	return rawsys.Read(w.fd, buf)
}

// writeSome is evloop.WriteSome of the plaintext: over TLS, what it
// returns must be given again, unchanged, until it is all written.
func (w *wire) writeSome(p []byte) ([]byte, error) {
	if w.tls != nil {
		return evloop.WriteSomeWith(w.tls.Write, w.fd, p)
	}
	return evloop.WriteSome(w.fd, p)
}

// shutdownWrite ends sending: over TLS, close_notify first.
func (w *wire) shutdownWrite() {
	if w.tls != nil {
		w.tls.ShutdownWrite(w.fd)
		return
	}
	rawsys.ShutdownWrite(w.fd)
}

// release ends the wire before its descriptor is closed (Loop.Disown):
// over TLS, close_notify unless it went already.
func (w *wire) release() {
	if w.tls != nil {
		w.tls.Close(w.fd)
		w.tls = nil
	}
}
