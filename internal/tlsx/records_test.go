package tlsx_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
	"loadlab/internal/testutil"
	"loadlab/internal/tlsx"
)

// handedOff is the server's end of a connection whose handshake
// crypto/tls made and which then left it.
type handedOff struct {
	fd  int
	rec *tlsx.Records
}

// serveHandoffs accepts on a loopback listener, makes each handshake over
// a Handoff and hands the connection to got.
func serveHandoffs(t *testing.T, conf *tls.Config, got func(handedOff, error)) string {
	t.Helper()
	tlsx.ForHandoff(conf)
	ln := testutil.Listen(t)
	testutil.ServeEach(t, ln, func(nc net.Conn) {
		h := tlsx.NewHandoff(nc)
		tc := tls.Server(h, conf)
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			got(handedOff{}, err)
			return
		}
		nc.SetDeadline(time.Time{})
		fd, rec, err := h.Take(tc) // the socket leaves nc: its close after this is nothing to it
		got(handedOff{fd, rec}, err)
	})
	return ln.Addr().String()
}

func serverConfig(t *testing.T) *tls.Config {
	return testutil.SelfSigned(t).Store.ServerConfig()
}

// wait blocks until fd is ready for events, within the test's bounds.
func wait(t *testing.T, fd int, events int16) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	if n, err := unix.Poll(fds, 10_000); n != 1 || err != nil {
		t.Fatalf("poll: %d %v", n, err)
	}
}

// readAll reads from the handed-off socket until n bytes or the end.
func readAll(t *testing.T, h handedOff, n int) ([]byte, bool) {
	t.Helper()
	var got []byte
	buf := make([]byte, 64<<10)
	for len(got) < n {
		m, err := h.rec.Read(h.fd, buf)
		switch {
		case err == unix.EAGAIN:
			wait(t, h.fd, unix.POLLIN)
		case err != nil:
			t.Fatalf("read after %d bytes: %v", len(got), err)
		case m == 0:
			return got, true
		default:
			got = append(got, buf[:m]...)
		}
	}
	return got, false
}

// writeAll writes p through the record layer, waiting when the socket
// is full, as a loop would, giving the same bytes again after EAGAIN.
func writeAll(t *testing.T, h handedOff, p []byte) {
	t.Helper()
	for len(p) > 0 {
		n, err := h.rec.Write(h.fd, p)
		switch err {
		case nil:
			p = p[n:]
		case unix.EAGAIN:
			wait(t, h.fd, unix.POLLOUT)
		default:
			t.Fatal(err)
		}
	}
}

// corkedConn holds a client's writes after its first (the ClientHello)
// until uncorked, to send its Finished and its request in one segment,
// as clients often do.
type corkedConn struct {
	net.Conn
	mu          sync.Mutex
	hello, open bool // the first write went; uncorked
	held        []byte
}

func (c *corkedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.hello || c.open {
		c.hello = true
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	return len(p), nil
}

func (c *corkedConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = true
	_, err := c.Conn.Write(c.held)
	return err
}

func TestHandoffCarriesOnWhereCryptoTLSStopped(t *testing.T) {
	for _, tickets := range []bool{true, false} {
		name := "with a session ticket"
		if !tickets {
			name = "without tickets"
		}
		t.Run(name, func(t *testing.T) {
			conf := serverConfig(t)
			conf.SessionTicketsDisabled = !tickets
			conns := make(chan handedOff, 2)
			addr := serveHandoffs(t, conf, func(h handedOff, err error) {
				if err != nil {
					t.Error(err)
				}
				conns <- h
			})
			cache := tls.NewLRUClientSessionCache(4)
			for i := range 2 { // the second resumes the first's session, when there are tickets
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				cc := &corkedConn{Conn: raw}
				client := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache})
				if err := client.Handshake(); err != nil {
					t.Fatal(err)
				}
				request := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				client.Write(request)
				if err := cc.uncork(); err != nil { // the Finished and the request together
					t.Fatal(err)
				}
				h := <-conns
				if h.rec == nil {
					t.Fatal("no handoff")
				}
				if got, _ := readAll(t, h, len(request)); !bytes.Equal(got, request) {
					t.Fatalf("server read %q", got)
				}
				// A response of many records, larger than the socket
				// takes at once: partial writes, given again.
				answer := bytes.Repeat([]byte("0123456789abcdef"), 40_000)
				done := make(chan []byte)
				go func() {
					got := make([]byte, len(answer))
					io.ReadFull(client, got)
					done <- got
				}()
				writeAll(t, h, answer)
				if got := <-done; !bytes.Equal(got, answer) {
					t.Fatalf("client read %d bytes, not the answer", len(got))
				}
				if i == 1 && tickets != client.ConnectionState().DidResume {
					t.Errorf("resumed: %v, with tickets %v", client.ConnectionState().DidResume, tickets)
				}
				// The client's close_notify is the end; ours reaches it.
				client.CloseWrite()
				if got, eof := readAll(t, h, 1); !eof || len(got) > 0 {
					t.Fatalf("after close_notify: %q, end %v", got, eof)
				}
				h.rec.Close(h.fd)
				rawsys.Close(h.fd)
				if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Fatalf("client after our close: %d %v", n, err)
				}
				client.Close()
			}
		})
	}
}

func TestHandoffRefusesTLS12(t *testing.T) {
	errs := make(chan error, 1)
	addr := serveHandoffs(t, serverConfig(t), func(h handedOff, err error) { errs <- err })
	client, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := <-errs; !errors.Is(err, tlsx.ErrNoHandoff) {
		t.Fatalf("TLS 1.2: %v, want ErrNoHandoff", err)
	}
}

func TestRecordsFailOnGarbage(t *testing.T) {
	conns := make(chan handedOff, 1)
	addr := serveHandoffs(t, serverConfig(t), func(h handedOff, err error) { conns <- h })
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	client := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	h := <-conns
	defer rawsys.Close(h.fd)
	// A record of the right shape whose tag is wrong, then garbage.
	raw.Write(append([]byte{23, 3, 3, 0, 20}, bytes.Repeat([]byte{7}, 20)...))
	buf := make([]byte, 64<<10)
	for {
		n, err := h.rec.Read(h.fd, buf)
		if err == unix.EAGAIN {
			wait(t, h.fd, unix.POLLIN)
			continue
		}
		if err == nil || n != 0 {
			t.Fatalf("a forged record read as %d bytes, %v", n, err)
		}
		break
	}
	if _, err := h.rec.Write(h.fd, []byte("x")); err == nil {
		t.Fatal("a failed connection still writes")
	}
}

// TestRecordsAgainstOpenSSL runs Debian's openssl s_client against a
// handed-off connection: each TLS 1.3 cipher suite, and a KeyUpdate that
// asks for ours ("K" on s_client's input), with data both ways after it.
func TestRecordsAgainstOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed (.ci/run installs it)")
	}
	for _, suite := range []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"} {
		t.Run(suite, func(t *testing.T) {
			conns := make(chan handedOff, 1)
			addr := serveHandoffs(t, serverConfig(t), func(h handedOff, err error) {
				if err != nil {
					t.Error(err)
				}
				conns <- h
			})
			cmd := exec.Command("openssl", "s_client", "-connect", addr, "-tls1_3", "-ciphersuites", suite)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			out, errOut := bufio.NewReader(stdout), bufio.NewReader(stderr)
			h := <-conns
			if h.rec == nil {
				t.Fatal("no handoff")
			}
			defer rawsys.Close(h.fd)
			expect := func(out *bufio.Reader, want string) {
				t.Helper()
				deadline := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
				defer deadline.Stop()
				for {
					line, err := out.ReadString('\n')
					if strings.Contains(line, want) {
						return
					}
					if err != nil {
						t.Fatalf("s_client never printed %q", want)
					}
				}
			}
			for round, line := range []string{"first", "after a key update", "after another"} {
				writeAll(t, h, []byte("server says "+line+"\n"))
				expect(out, "server says "+line)
				if round > 0 {
					// A KeyUpdate asking for ours; s_client takes a line
					// beginning with K for that, so the data waits for it.
					io.WriteString(stdin, "K\n")
					expect(errOut, "KEYUPDATE")
				}
				io.WriteString(stdin, "client says "+line+"\n")
				want := "client says " + line + "\n"
				if got, _ := readAll(t, h, len(want)); string(got) != want {
					t.Fatalf("read %q, want %q", got, want)
				}
			}
			stdin.Close()
			h.rec.Close(h.fd)
		})
	}
}
