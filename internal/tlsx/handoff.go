package tlsx

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"slices"

	"loadlab/internal/rawsys"
)

// Handing a connection from crypto/tls to an event loop once its
// handshake is made. Three things must be known exactly for the loop to
// carry on where crypto/tls stopped:
//   - the traffic secrets: crypto/tls gives them to Config.KeyLogWriter
//     alone (NSS key log lines). Each handshake over a Handoff gets a
//     Config of its own whose KeyLogWriter is that Handoff's, which keeps
//     its two secrets in memory and writes nothing anywhere; so no line
//     can reach another connection's handoff, whatever client random a
//     client sends;
//   - what the handshake read past its last message (a client sends its
//     request with its Finished): Handoff hands crypto/tls one record at
//     a time, so what follows the Finished stays here;
//   - how many records crypto/tls sent under the application key: Go's
//     server sends its session ticket before the client's Finished
//     arrives. Handoff keeps what the handshake wrote; the records that
//     open with the server's application key are those.

// ForHandoff readies a server's config for handshakes run over a
// Handoff: each gets a copy of conf whose KeyLogWriter is its own. conf
// must have no GetConfigForClient of its own. Session tickets are still
// made and taken with conf's keys: a copy made for one handshake uses
// its original's (crypto/tls's Config.ticketKeys).
func ForHandoff(conf *tls.Config) {
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		h, ok := hello.Conn.(*Handoff)
		if !ok {
			return nil, nil
		}
		own := conf.Clone()
		own.GetConfigForClient = nil
		own.KeyLogWriter = &h.secrets
		return own, nil
	}
}

// secrets are one handshake's application traffic secrets, taken from
// its key log lines.
type secrets struct {
	client, server []byte
}

// Write takes one key log line, "LABEL <client random> <secret>", as
// crypto/tls writes them, one per call.
func (s *secrets) Write(line []byte) (int, error) {
	fields := bytes.Fields(line)
	if len(fields) != 3 {
		return len(line), nil
	}
	secret, err := hex.AppendDecode(nil, fields[2])
	if err != nil {
		return len(line), nil
	}
	switch string(fields[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		s.client = secret
	case "SERVER_TRAFFIC_SECRET_0":
		s.server = secret
	}
	return len(line), nil
}

// Handoff is the net.Conn a server handshake runs over when the
// connection is to leave crypto/tls after it (with a config readied by
// ForHandoff). Use it for the handshake alone, then Take the connection
// or Close it.
type Handoff struct {
	net.Conn
	in        []byte // read from the socket, not yet given to crypto/tls
	recordEnd int    // bytes of in that belong to the record being given; 0 between records
	written   []byte // what the handshake wrote
	secrets   secrets
}

// NewHandoff wraps a server's accepted connection for its handshake.
func NewHandoff(nc net.Conn) *Handoff {
	return &Handoff{Conn: nc}
}

// Read gives crypto/tls the connection's bytes a record at most at a
// time, so that it never holds bytes past the message that ends the
// handshake.
func (h *Handoff) Read(p []byte) (int, error) {
	for {
		if h.recordEnd == 0 && len(h.in) >= recordHeader {
			h.recordEnd = recordHeader + int(binary.BigEndian.Uint16(h.in[3:]))
		}
		if h.recordEnd > 0 && len(h.in) > 0 {
			n := copy(p, h.in[:min(len(h.in), h.recordEnd)])
			h.in = h.in[n:]
			h.recordEnd -= n
			return n, nil
		}
		h.in = slices.Grow(h.in, 4096)
		m, err := h.Conn.Read(h.in[len(h.in):cap(h.in)])
		h.in = h.in[:len(h.in)+m]
		if err != nil && m == 0 {
			return 0, err
		}
	}
}

// Write sends the handshake's bytes, keeping a copy.
func (h *Handoff) Write(p []byte) (int, error) {
	h.written = append(h.written, p...)
	return h.Conn.Write(p)
}

// ErrNoHandoff says a connection cannot leave crypto/tls: TLS 1.2, or
// secrets or records that did not come as expected. It stays with
// crypto/tls, which serves it as before.
var ErrNoHandoff = errors.New("tls: this connection cannot be handed off")

// Take ends the handoff after tc's handshake: tc, which runs over h, must
// not be used again. It returns the connection's socket, out of Go's
// poller and non-blocking, with its record layer; the caller owns the
// descriptor. On ErrNoHandoff, tc and h are as they were.
func (h *Handoff) Take(tc *tls.Conn) (fd int, rec *Records, err error) {
	state := tc.ConnectionState()
	if state.Version != tls.VersionTLS13 || h.secrets.client == nil || h.secrets.server == nil || h.recordEnd != 0 {
		return -1, nil, ErrNoHandoff
	}
	rec, err = newRecords(state.CipherSuite, h.secrets.client, h.secrets.server)
	if err != nil {
		return -1, nil, ErrNoHandoff
	}
	rec.out.seq, err = sentUnder(&rec.out, h.written)
	if err != nil {
		return -1, nil, ErrNoHandoff
	}
	rec.partial = h.in
	tcp, ok := h.Conn.(*net.TCPConn)
	if !ok {
		return -1, nil, ErrNoHandoff
	}
	if fd, err = rawsys.Detach(tcp); err != nil {
		return -1, nil, err
	}
	h.written, h.in = nil, nil
	return fd, rec, nil
}

// sentUnder counts the records at the end of written (the handshake's
// bytes) that open with d's key: the server's application records, its
// session tickets. Those of the handshake's own keys do not open.
func sentUnder(d *direction, written []byte) (uint64, error) {
	var sent uint64
	probe := *d
	for len(written) >= recordHeader {
		end := recordHeader + int(binary.BigEndian.Uint16(written[3:]))
		if end > len(written) {
			return 0, ErrNoHandoff
		}
		rec := append([]byte(nil), written[:end]...) // opened in place: a copy
		written = written[end:]
		if rec[0] != typeData {
			continue
		}
		probe.seq = sent
		if _, _, err := probe.open(rec); err == nil {
			sent++
		} else if sent > 0 {
			return 0, ErrNoHandoff // a handshake record after an application one
		}
	}
	if len(written) > 0 {
		return 0, ErrNoHandoff
	}
	return sent, nil
}
