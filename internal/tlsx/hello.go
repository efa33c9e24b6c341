package tlsx

import (
	"errors"
	"strings"
)

// Reading the server name a client asks for from its ClientHello, as a
// proxy that passes TLS through untouched does to choose a backend
// (HAProxy's req.ssl_sni): the bytes are only looked at, never changed.

// MaxHello is the most of a connection's first bytes ServerName needs:
// a ClientHello over up to four records of the largest size. A client
// whose hello is longer than that is not one to route by name.
const MaxHello = 4 * (5 + 1<<14)

// ErrNotHello is for first bytes that are no TLS ClientHello.
var ErrNotHello = errors.New("not a TLS ClientHello")

// ServerName reads the SNI host name from data, a connection's first
// bytes. more says that data ends before the hello does: read more and
// ask again. A hello without the extension gives "" and no error.
func ServerName(data []byte) (name string, more bool, err error) {
	// The handshake message may be split over several records: gather
	// the records' payloads until the message is whole.
	var msg []byte
	need := -1 // the message's length with its header, once known
	for {
		if len(data) < 5 {
			return "", true, nil
		}
		if data[0] != 0x16 || data[1] != 3 { // handshake, TLS 1.x (SSL 3 on up)
			return "", false, ErrNotHello
		}
		n := int(data[3])<<8 | int(data[4])
		if n == 0 || n > 1<<14 {
			return "", false, ErrNotHello
		}
		if len(data) < 5+n {
			return "", true, nil
		}
		msg = append(msg, data[5:5+n]...)
		data = data[5+n:]
		if need < 0 && len(msg) >= 4 {
			if msg[0] != 1 { // client_hello
				return "", false, ErrNotHello
			}
			need = 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if need > MaxHello {
				return "", false, ErrNotHello
			}
		}
		if need >= 0 && len(msg) >= need {
			return helloServerName(msg[4:need])
		}
	}
}

// helloServerName finds the server_name extension in a ClientHello's
// body.
func helloServerName(b []byte) (string, bool, error) {
	r := reader(b)
	if !r.skip(2+32) || !r.skipVector(1) || !r.skipVector(2) || !r.skipVector(1) { // version, random, session id, suites, compression
		return "", false, ErrNotHello
	}
	if len(r) == 0 {
		return "", false, nil // no extensions at all
	}
	exts, ok := r.vector(2)
	if !ok {
		return "", false, ErrNotHello
	}
	for len(exts) > 0 {
		typ, ok1 := exts.uint16()
		body, ok2 := exts.vector(2)
		if !ok1 || !ok2 {
			return "", false, ErrNotHello
		}
		if typ != 0 { // server_name
			continue
		}
		list, ok := body.vector(2)
		if !ok {
			return "", false, ErrNotHello
		}
		for len(list) > 0 {
			kind, ok1 := list.uint8()
			host, ok2 := list.vector(2)
			if !ok1 || !ok2 {
				return "", false, ErrNotHello
			}
			if kind == 0 { // host_name
				return validName(string(host))
			}
		}
		return "", false, nil
	}
	return "", false, nil
}

// validName refuses what no host name is (RFC 6066 §3: a DNS name,
// without a trailing dot): a name from the wire goes into hashes and
// logs, so it is held to that.
func validName(s string) (string, bool, error) {
	if len(s) == 0 || len(s) > 253 || strings.HasSuffix(s, ".") {
		return "", false, ErrNotHello
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", false, ErrNotHello
		}
	}
	return strings.ToLower(s), false, nil
}

// reader takes big-endian fields off the front of a byte slice.
type reader []byte

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) uint8() (int, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := int((*r)[0])
	*r = (*r)[1:]
	return v, true
}

func (r *reader) uint16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int((*r)[0])<<8 | int((*r)[1])
	*r = (*r)[2:]
	return v, true
}

// vector takes a field with a length prefix of size bytes (1 or 2).
func (r *reader) vector(size int) (reader, bool) {
	var n int
	var ok bool
	if size == 1 {
		n, ok = r.uint8()
	} else {
		n, ok = r.uint16()
	}
	if !ok || len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) skipVector(size int) bool {
	_, ok := r.vector(size)
	return ok
}
