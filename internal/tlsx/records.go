package tlsx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"hash"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
)

// TLS 1.3's record layer (RFC 8446 §5), for a connection whose handshake
// crypto/tls made and which an event loop then serves on its own
// non-blocking socket: crypto/tls reads and writes only through a net.Conn
// that blocks, and a goroutine bridging it to the loop costs a hop each
// way (a socket pair: a write, a read and a wake-up more per message,
// docs/PERFORMANCE.md). Records holds the two directions' keys and
// sequence numbers and does what HAProxy's and nginx's loops ask OpenSSL
// to do on theirs: it decrypts what the socket has and encrypts what is
// written, with EAGAIN where the socket would block.
//
// Only application data, alerts and KeyUpdate follow a TLS 1.3
// handshake on a server: anything else is the peer's error, and the
// connection fails.

// Record sizes.
const (
	recordHeader  = 5
	maxPlaintext  = 1 << 14
	maxCiphertext = maxPlaintext + 256 // RFC 8446 §5.2
	// MaxRecord is a whole record's most: Read needs a buffer larger
	// than this.
	MaxRecord = recordHeader + maxCiphertext
	// writeBatch is the most plaintext one Write encrypts: the loops'
	// buffer, four records, sent with one write.
	writeBatch = 4 * maxPlaintext
)

// Content types.
const (
	typeAlert     = 21
	typeHandshake = 22
	typeData      = 23
)

// msgKeyUpdate is the one handshake message a client may send after the
// handshake (without post-handshake authentication, which loadlab never
// asks for).
const msgKeyUpdate = 24

var (
	errRecord     = errors.New("tls: bad record from the peer")
	errAlert      = errors.New("tls: the peer sent an alert")
	errUnexpected = errors.New("tls: unexpected message from the peer")
	errSmallBuf   = errors.New("tls: read buffer smaller than a record")
	errIdle       = errors.New("tls: too many records without data (KeyUpdates or empty ones) in a row")
)

// maxIdleRecords bounds the records in a row that carry no data: a KeyUpdate
// costs a key derivation (two with ours), and nothing sends more than a
// few between data. crypto/tls draws the same line, at 16, on serve's
// connections.
const maxIdleRecords = 16

// direction is one way's keys: the traffic secret (for KeyUpdate), the
// AEAD and its IV, and the next record's sequence number.
type direction struct {
	suite  *suite
	secret []byte
	aead   cipher.AEAD
	iv     [12]byte
	seq    uint64
}

// suite is what a TLS 1.3 cipher suite takes to derive and use keys.
type suite struct {
	hash   func() hash.Hash
	keyLen int
	aead   func(key []byte) (cipher.AEAD, error)
}

var suites = map[uint16]*suite{
	tls.TLS_AES_128_GCM_SHA256:       {sha256.New, 16, newGCM},
	tls.TLS_AES_256_GCM_SHA384:       {sha512.New384, 32, newGCM},
	tls.TLS_CHACHA20_POLY1305_SHA256: {sha256.New, 32, chacha20poly1305.New},
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// expandLabel is HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
func (s *suite) expandLabel(secret []byte, label string, length int) []byte {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0) // no context
	out, err := hkdf.Expand(s.hash, secret, string(info), length)
	if err != nil {
		panic(err) // only for lengths TLS never asks for
	}
	return out
}

// setSecret derives the direction's key and IV from a traffic secret
// (RFC 8446 §7.3); the sequence number starts again at 0.
func (d *direction) setSecret(secret []byte) error {
	aead, err := d.suite.aead(d.suite.expandLabel(secret, "key", d.suite.keyLen))
	if err != nil {
		return err
	}
	d.secret, d.aead, d.seq = secret, aead, 0
	copy(d.iv[:], d.suite.expandLabel(secret, "iv", 12))
	return nil
}

// update moves to the next traffic secret, for a KeyUpdate.
func (d *direction) update() error {
	return d.setSecret(d.suite.expandLabel(d.secret, "traffic upd", d.suite.hash().Size()))
}

// nonce is the IV with the sequence number mixed in (RFC 8446 §5.3).
func (d *direction) nonce() [12]byte {
	n := d.iv
	for i := range 8 {
		n[4+i] ^= byte(d.seq >> (56 - 8*i))
	}
	return n
}

// open decrypts the record rec (header and body) in place and returns
// its content and inner type.
func (d *direction) open(rec []byte) (content []byte, typ byte, err error) {
	nonce := d.nonce()
	plain, err := d.aead.Open(rec[recordHeader:recordHeader], nonce[:], rec[recordHeader:], rec[:recordHeader])
	if err != nil {
		return nil, 0, errRecord
	}
	d.seq++
	// The inner type is the last byte that is not zero padding.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return nil, 0, errRecord
	}
	return plain[:i], plain[i], nil
}

// seal appends to dst a record of type typ carrying content.
func (d *direction) seal(dst []byte, typ byte, content []byte) []byte {
	n := len(content) + 1 + d.aead.Overhead()
	dst = append(dst, typeData, 3, 3, byte(n>>8), byte(n))
	hdr := len(dst) - recordHeader
	body := len(dst)
	dst = append(dst, content...)
	dst = append(dst, typ)
	nonce := d.nonce()
	d.seq++
	return d.aead.Seal(dst[:body], nonce[:], dst[body:], dst[hdr:body])
}

// Records is the record layer of one TLS 1.3 connection served on a
// non-blocking socket: one loop's, never used by two goroutines at once.
type Records struct {
	in, out direction
	// partial is the start of a record read but not yet whole: kept
	// between reads, and where what the handshake read ahead begins.
	partial []byte
	// sending is ciphertext made and not yet all written; owed is the
	// caller's plaintext it carries, reported written once it is gone.
	sending *[]byte
	sent    int
	owed    int
	eof     bool  // close_notify came
	err     error // the connection failed
	closed  bool  // close_notify sent
	// updateOwed: the peer asked for our KeyUpdate while an earlier
	// record of ours still waited for the socket; ours goes before our
	// next data.
	updateOwed bool
	idle       int // records in a row that carried no data
}

// sendBufs hold the ciphertext of a write until the socket has taken it:
// a connection holds one only while the socket is full.
var sendBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, writeBatch+4*(recordHeader+1+16)+64)
	return &b
}}

// Read reads what fd has and returns the plaintext it carries in p, like
// read(2) on a plain socket: EAGAIN when no whole record came yet, 0 at
// the end (close_notify, or the peer's FIN). p must be larger than
// MaxRecord. Every whole record read is decrypted into p at once, so a
// loop waiting on epoll for more is never left with input held here.
func (r *Records) Read(fd int, p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.eof {
		return 0, nil
	}
	if len(p) <= MaxRecord {
		return 0, errSmallBuf
	}
	for {
		// What the handshake read ahead may hold whole records: they are
		// opened even when the socket has nothing new.
		k := copy(p, r.partial)
		m, err := rawsys.Read(fd, p[k:])
		switch err {
		case nil:
		case unix.EAGAIN, unix.EINTR:
			m = 0
		default:
			return 0, err
		}
		n, rest, derr := r.decrypt(fd, p[:k+m])
		r.partial = append(r.partial[:0], rest...)
		switch {
		case derr != nil:
			r.err = derr
			if n > 0 {
				return n, nil
			}
			return 0, derr
		case n > 0 || r.eof:
			return n, nil
		case err == nil && m == 0:
			// A FIN without close_notify (a truncated record, even): the
			// end, as a plain socket's.
			r.partial = r.partial[:0]
			return 0, nil
		case err != nil:
			return 0, err
		case k+m < len(p):
			return 0, unix.EAGAIN // the socket is drained, and no whole record came
		}
	}
}

// decrypt opens the whole records at the start of buf and moves their
// content to buf's front (content is shorter than its record, so it never
// overtakes what is still to open); rest is an unfinished record.
func (r *Records) decrypt(fd int, buf []byte) (n int, rest []byte, err error) {
	o := 0
	for len(buf)-o >= recordHeader {
		size := int(binary.BigEndian.Uint16(buf[o+3:]))
		if buf[o] != typeData || size > maxCiphertext {
			return n, nil, errRecord
		}
		end := o + recordHeader + size
		if end > len(buf) {
			break
		}
		content, typ, err := r.in.open(buf[o:end])
		if err != nil {
			return n, nil, err
		}
		o = end
		if typ == typeData && len(content) > 0 {
			r.idle = 0
		} else if r.idle++; r.idle > maxIdleRecords {
			return n, nil, errIdle
		}
		switch typ {
		case typeData:
			n += copy(buf[n:], content)
		case typeAlert:
			if len(content) == 2 && content[1] == 0 { // close_notify
				r.eof = true
				// The socket must say readable again, for the loop to ask
				// and see the end, whatever else it has.
				unix.Shutdown(fd, unix.SHUT_RD)
				return n, nil, nil
			}
			return n, nil, errAlert
		case typeHandshake:
			if err := r.handshakeMessages(fd, content); err != nil {
				return n, nil, err
			}
		default:
			return n, nil, errUnexpected
		}
	}
	return n, buf[o:], nil
}

// handshakeMessages handles what may come after the handshake: a
// KeyUpdate, which moves the peer's key on and, when asked, ours
// (RFC 8446 §4.6.3).
func (r *Records) handshakeMessages(fd int, b []byte) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errRecord // a message split over records: nothing sends those after a handshake
		}
		size := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if len(b) < 4+size {
			return errRecord
		}
		msg := b[:4+size]
		b = b[4+size:]
		switch msg[0] {
		case msgKeyUpdate:
			if size != 1 || msg[4] > 1 {
				return errRecord
			}
			if err := r.in.update(); err != nil {
				return err
			}
			if msg[4] == 1 { // update_requested: ours moves too, after saying so
				// While something of ours waits for a peer that does not
				// read, its requests are answered by one KeyUpdate before
				// our next data, as RFC 8446 §4.6.3 has a silent side do:
				// one queued per request would grow without bound.
				r.updateOwed = true
			}
		default:
			return errUnexpected
		}
	}
	if r.updateOwed && r.sending == nil {
		if err := r.queueKeyUpdate(); err != nil {
			return err
		}
		r.flush(fd)
	}
	return nil
}

// queueKeyUpdate queues the KeyUpdate the peer asked for and moves our
// key on: what follows goes under the next one.
func (r *Records) queueKeyUpdate() error {
	r.updateOwed = false
	r.queue(typeHandshake, []byte{msgKeyUpdate, 0, 0, 1, 0})
	return r.out.update()
}

// queue adds a record of ours to what is to be sent, after whatever is
// there already.
func (r *Records) queue(typ byte, content []byte) {
	if r.sending == nil {
		r.sending = sendBufs.Get().(*[]byte)
		*r.sending = (*r.sending)[:0]
		r.sent = 0
	}
	*r.sending = r.out.seal(*r.sending, typ, content)
}

// flush writes what is queued; done reports that none is left.
func (r *Records) flush(fd int) (done bool, err error) {
	for r.sending != nil {
		m, err := rawsys.Write(fd, (*r.sending)[r.sent:])
		switch err {
		case nil:
		case unix.EINTR:
			continue
		default:
			return false, err
		}
		if r.sent += m; r.sent == len(*r.sending) {
			sendBufs.Put(r.sending)
			r.sending = nil
		}
	}
	return true, nil
}

// Write encrypts p's start (at most four records) and writes it to fd,
// like write(2) on a plain socket: n is how much of p was written, and
// EAGAIN says the socket is full. What it encrypted and could not send
// waits here: the next Write must be given the same bytes again, which
// it reports written once the socket has taken them, as OpenSSL's
// SSL_write is retried.
func (r *Records) Write(fd int, p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.sending == nil && len(p) > 0 {
		if r.updateOwed {
			if err := r.queueKeyUpdate(); err != nil {
				r.err = err
				return 0, err
			}
		}
		batch := p[:min(len(p), writeBatch)]
		for len(batch) > 0 {
			rec := batch[:min(len(batch), maxPlaintext)]
			r.queue(typeData, rec)
			batch = batch[len(rec):]
			r.owed += len(rec)
		}
	}
	done, err := r.flush(fd)
	if err != nil {
		if err != unix.EAGAIN {
			r.err = err
		}
		return 0, err
	}
	if !done {
		return 0, unix.EAGAIN
	}
	n := r.owed
	r.owed = 0
	return n, nil
}

// ShutdownWrite ends our sending as TLS does: close_notify, then the
// FIN. What the socket cannot take of it is lost: the caller has
// written everything before.
func (r *Records) ShutdownWrite(fd int) {
	r.closeNotify(fd)
	rawsys.ShutdownWrite(fd)
}

// Close sends close_notify unless it went already, before the caller
// closes fd, as nginx's SSL_shutdown does: OpenSSL 3 clients take a bare
// FIN for an error. It releases what the connection held.
func (r *Records) Close(fd int) {
	r.closeNotify(fd)
	if r.sending != nil {
		sendBufs.Put(r.sending)
		r.sending = nil
	}
	r.partial = nil
}

func (r *Records) closeNotify(fd int) {
	if r.closed || r.err != nil {
		return
	}
	r.closed = true
	r.queue(typeAlert, []byte{1, 0}) // warning, close_notify
	r.flush(fd)
}

// newRecords makes the record layer of a TLS 1.3 connection from its
// traffic secrets; outSeq records of ours went already.
func newRecords(cipherSuite uint16, inSecret, outSecret []byte) (*Records, error) {
	s := suites[cipherSuite]
	if s == nil {
		return nil, errors.New("tls: no record layer for this cipher suite")
	}
	r := &Records{in: direction{suite: s}, out: direction{suite: s}}
	if err := r.in.setSecret(inSecret); err != nil {
		return nil, err
	}
	if err := r.out.setSecret(outSecret); err != nil {
		return nil, err
	}
	return r, nil
}
