package rawsys_test

import (
	"net"
	"testing"
	"time"

	"loadlab/internal/rawsys"
	"loadlab/internal/testutil"

	"golang.org/x/sys/unix"
)

// TestConnectAcceptAndAddresses connects with Socket and Connect to a
// listener, takes the connection with Accept4, and checks the peer
// address Accept4 decoded against the one the connecting socket has, for
// IPv4 and (where the machine has it) IPv6.
func TestConnectAcceptAndAddresses(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		host := map[string]string{"tcp4": "127.0.0.1", "tcp6": "::1"}[network]
		ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
		if err != nil {
			t.Logf("%s: %v (skipped)", network, err)
			continue
		}
		defer ln.Close()
		var lnfd int
		raw, _ := ln.(*net.TCPListener).SyscallConn()
		raw.Control(func(fd uintptr) { lnfd = int(fd) })
		la := ln.Addr().(*net.TCPAddr)

		sa := rawsys.NewSockaddr(la.IP, la.Port)
		fd, err := rawsys.Socket(sa.Family)
		if err != nil {
			t.Fatal(err)
		}
		defer rawsys.Close(fd)
		rawsys.SetNoDelay(fd)
		if err := rawsys.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
			t.Fatalf("%s connect: %v", network, err)
		}
		var cfd int
		var from *net.TCPAddr
		testutil.Eventually(t, 2*time.Second, network+" accept", func() bool {
			cfd, from, err = rawsys.Accept4(lnfd)
			return err != unix.EAGAIN
		})
		if err != nil {
			t.Fatalf("%s accept: %v", network, err)
		}
		defer rawsys.Close(cfd)
		if err := rawsys.SocketError(fd); err != nil {
			t.Errorf("%s: the connect ended with %v", network, err)
		}
		local, _ := unix.Getsockname(fd)
		var port int
		switch a := local.(type) {
		case *unix.SockaddrInet4:
			port = a.Port
		case *unix.SockaddrInet6:
			port = a.Port
		}
		if !from.IP.Equal(la.IP) || from.Port != port {
			t.Errorf("%s: Accept4 says the peer is %v, want %s port %d", network, from, la.IP, port)
		}
		if n, err := rawsys.Write(fd, []byte("ping")); n != 4 || err != nil {
			t.Fatalf("%s write: %d %v", network, n, err)
		}
		buf := make([]byte, 8)
		var n int
		testutil.Eventually(t, 2*time.Second, network+" read", func() bool {
			n, err = rawsys.Read(cfd, buf)
			return err != unix.EAGAIN
		})
		if err != nil || string(buf[:n]) != "ping" {
			t.Fatalf("%s read: %q %v", network, buf[:max(n, 0)], err)
		}
	}
}
