package tlsx

import (
	"crypto/tls"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzRecordsRead feeds a record layer whatever a peer might send after
// a handshake: it must answer with plaintext, the end or an error, never
// panic, loop or write past the caller's buffer. The seeds are real
// records (data, close_notify, KeyUpdate) sealed with the peer's key.
func FuzzRecordsRead(f *testing.F) {
	secret := make([]byte, 32)
	peer := func() *Records {
		r, err := newRecords(tls.TLS_AES_128_GCM_SHA256, secret, secret)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	p := peer()
	data := p.out.seal(nil, typeData, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	keyUpdate := p.out.seal(nil, typeHandshake, []byte{msgKeyUpdate, 0, 0, 1, 1})
	p.out.update()
	afterUpdate := p.out.seal(nil, typeData, []byte("after"))
	closeNotify := p.out.seal(nil, typeAlert, []byte{1, 0})
	f.Add(data)
	f.Add(append(append(append(append([]byte(nil), data...), keyUpdate...), afterUpdate...), closeNotify...))
	f.Add(data[:len(data)-3])
	f.Add([]byte{23, 3, 3, 0xff, 0xff})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Skip(err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		if len(input) > 100<<10 {
			input = input[:100<<10] // within the socket's buffer
		}
		if _, err := unix.Write(fds[1], input); err != nil {
			t.Skip(err)
		}
		unix.Shutdown(fds[1], unix.SHUT_WR)
		r, err := newRecords(tls.TLS_AES_128_GCM_SHA256, secret, secret)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		total := 0
		for range len(input) + 2 { // each read takes a byte or more, or ends it
			n, err := r.Read(fds[0], buf)
			if n < 0 || n > len(buf) {
				t.Fatalf("read %d into %d", n, len(buf))
			}
			total += n
			if err != nil || n == 0 {
				break
			}
		}
		if total > len(input) {
			t.Fatalf("%d bytes of plaintext from %d of input", total, len(input))
		}
		r.Close(fds[0])
	})
}

// The fuzz seeds' own meaning: records read in order across a KeyUpdate
// that asks for ours, then close_notify as the end, with our KeyUpdate
// sent back under the old key.
func TestRecordsReadAcrossAKeyUpdate(t *testing.T) {
	secret := make([]byte, 32)
	peer, err := newRecords(tls.TLS_AES_256_GCM_SHA384, append(secret, secret[:16]...), append(secret, secret[:16]...))
	if err != nil {
		t.Fatal(err)
	}
	stream := peer.out.seal(nil, typeData, []byte("before "))
	stream = peer.out.seal(stream, typeHandshake, []byte{msgKeyUpdate, 0, 0, 1, 1})
	peer.out.update()
	stream = peer.out.seal(stream, typeData, []byte("after"))
	stream = peer.out.seal(stream, typeAlert, []byte{1, 0})
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	unix.Write(fds[1], stream)
	r, _ := newRecords(tls.TLS_AES_256_GCM_SHA384, append(secret, secret[:16]...), append(secret, secret[:16]...))
	buf := make([]byte, 64<<10)
	var got []byte
	for {
		n, err := r.Read(fds[0], buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		if n == 0 {
			break
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "before after" {
		t.Fatalf("read %q", got)
	}
	// What came back: our KeyUpdate (update_not_requested) under our
	// first key, which the peer's reading side opens.
	back := make([]byte, 1024)
	n, _ := unix.Read(fds[1], back)
	content, typ, err := peer.in.open(back[:n])
	if err != nil || typ != typeHandshake || string(content) != string([]byte{msgKeyUpdate, 0, 0, 1, 0}) {
		t.Fatalf("answer to the KeyUpdate: %x %d %v", content, typ, err)
	}
}
