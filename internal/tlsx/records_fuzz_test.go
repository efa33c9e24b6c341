package tlsx

import (
	"bytes"
	"crypto/tls"
	"strings"
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

// A peer that asks for our KeyUpdate again and again, a byte of data
// after each, and never reads: while our data waits in the full socket,
// its requests are answered by one KeyUpdate before our next data (RFC
// 8446 §4.6.3), so what waits here stays one batch however many it
// sends; and once it reads, every record opens under the key it expects.
func TestKeyUpdatesFromAPeerThatNeverReads(t *testing.T) {
	secret := make([]byte, 32)
	server, _ := newRecords(tls.TLS_AES_128_GCM_SHA256, secret, secret)
	peer, _ := newRecords(tls.TLS_AES_128_GCM_SHA256, secret, secret)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	}

	// Our data, until the socket takes no more: a batch waits here.
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i % 251)
	}
	written := 0
	for {
		n, err := server.Write(fds[0], data[written:])
		written += n
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	waiting := len(*server.sending) - server.sent

	// 10,000 requests for our KeyUpdate, read as they come.
	const requests = 10_000
	var stream []byte
	for range requests {
		stream = peer.out.seal(stream, typeHandshake, []byte{msgKeyUpdate, 0, 0, 1, 1})
		peer.out.update()
		stream = peer.out.seal(stream, typeData, []byte("x"))
	}
	buf := make([]byte, 64<<10)
	read := 0
	for len(stream) > 0 {
		n, err := unix.Write(fds[1], stream)
		if err != nil && err != unix.EAGAIN {
			t.Fatal(err)
		}
		stream = stream[max(n, 0):]
		for {
			n, err := server.Read(fds[0], buf)
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", read, err)
			}
			read += n
		}
		if held := len(*server.sending) - server.sent; held > waiting {
			t.Fatalf("%d bytes wait for the peer, %d before its KeyUpdates", held, waiting)
		}
	}

	if read != requests {
		t.Fatalf("read %d bytes of data, want %d", read, requests)
	}

	// The peer reads at last; we finish the data and send more, which
	// must come after our KeyUpdate and under the key it moved to.
	want := append(append([]byte(nil), data[:written]...), data[written:written+64<<10]...)
	want = append(want, "after the KeyUpdates"...)
	rest := [][]byte{data[written : written+64<<10], []byte("after the KeyUpdates")}
	var got []byte
	for range 100_000 {
		if len(got) == len(want) {
			break
		}
		if len(rest) > 0 {
			n, err := server.Write(fds[0], rest[0])
			if err != nil && err != unix.EAGAIN {
				t.Fatal(err)
			}
			if rest[0] = rest[0][n:]; len(rest[0]) == 0 {
				rest = rest[1:]
			}
		}
		n, err := peer.Read(fds[1], buf)
		if err != nil && err != unix.EAGAIN {
			t.Fatalf("the peer, after %d of %d bytes: %v", len(got), len(want), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the peer read %d bytes, want %d (equal up to %d)", len(got), len(want), commonPrefix(got, want))
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// KeyUpdates or empty records, sixteen in a row are taken, as crypto/tls
// takes them; the seventeenth fails the connection, and data between
// them starts the count again.
func TestRecordsWithoutDataAreBounded(t *testing.T) {
	secret := make([]byte, 32)
	for _, tc := range []struct {
		name  string
		idle  func(peer *Records, dst []byte) []byte
		runs  []int // idle records, then a byte of data, for each
		fails bool
	}{
		{"16 KeyUpdates", keyUpdate, []int{16}, false},
		{"17 KeyUpdates", keyUpdate, []int{17}, true},
		{"16 empty records", emptyRecord, []int{16}, false},
		{"17 empty records", emptyRecord, []int{17}, true},
		{"16 KeyUpdates, data, 16 more", keyUpdate, []int{16, 16}, false},
	} {
		server, _ := newRecords(tls.TLS_AES_128_GCM_SHA256, secret, secret)
		peer, _ := newRecords(tls.TLS_AES_128_GCM_SHA256, secret, secret)
		var stream []byte
		for _, run := range tc.runs {
			for range run {
				stream = tc.idle(peer, stream)
			}
			stream = peer.out.seal(stream, typeData, []byte("x"))
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Write(fds[1], stream)
		unix.Shutdown(fds[1], unix.SHUT_WR)
		buf := make([]byte, 64<<10)
		var got []byte
		for range 100 {
			n, err := server.Read(fds[0], buf)
			got = append(got, buf[:n]...)
			if err != nil || n == 0 {
				if failed := err != nil; failed != tc.fails {
					t.Errorf("%s: read %q, then %v", tc.name, got, err)
				}
				break
			}
		}
		if want := strings.Repeat("x", len(tc.runs)); !tc.fails && string(got) != want {
			t.Errorf("%s: read %q, want %q", tc.name, got, want)
		}
		unix.Close(fds[0])
		unix.Close(fds[1])
	}
}

func keyUpdate(peer *Records, dst []byte) []byte {
	dst = peer.out.seal(dst, typeHandshake, []byte{msgKeyUpdate, 0, 0, 1, 0})
	peer.out.update()
	return dst
}

func emptyRecord(peer *Records, dst []byte) []byte { return peer.out.seal(dst, typeData, nil) }
