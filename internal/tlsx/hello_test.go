package tlsx

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// clientHello is the first flight crypto/tls's client sends for conf.
func clientHello(t testing.TB, conf *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		tls.Client(client, conf).Handshake()
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hello []byte
	buf := make([]byte, 4096)
	for {
		n, err := server.Read(buf)
		hello = append(hello, buf[:n]...)
		if _, more, _ := ServerName(hello); !more || err != nil {
			return hello
		}
	}
}

// refragment splits a hello's one record into records of at most size
// bytes of payload each, as a client may send it.
func refragment(hello []byte, size int) []byte {
	payload := hello[5:]
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, 0x16, 3, 1, byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

func TestServerNameFromRealHellos(t *testing.T) {
	for _, tc := range []struct {
		conf *tls.Config
		want string
	}{
		{&tls.Config{ServerName: "shop.test"}, "shop.test"},
		{&tls.Config{ServerName: "WWW.Example.COM"}, "www.example.com"},
		{&tls.Config{ServerName: "api.shop.test", MaxVersion: tls.VersionTLS12}, "api.shop.test"},
		{&tls.Config{ServerName: "a.test", NextProtos: []string{"h2", "http/1.1"}}, "a.test"},
		{&tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true}, ""}, // an address is sent as no SNI
	} {
		hello := clientHello(t, tc.conf)
		for _, data := range [][]byte{hello, refragment(hello, 100), refragment(hello, 7)} {
			got, more, err := ServerName(data)
			if got != tc.want || more || err != nil {
				t.Errorf("%s: %q more %v err %v, want %q", tc.conf.ServerName, got, more, err, tc.want)
			}
			for cut := range len(data) { // every shorter prefix asks for more
				if _, more, err := ServerName(data[:cut]); !more || err != nil {
					t.Fatalf("%s: %d of %d bytes: more %v err %v", tc.conf.ServerName, cut, len(data), more, err)
				}
			}
		}
	}
}

func TestServerNameRefusesWhatIsNoHello(t *testing.T) {
	hello := clientHello(t, &tls.Config{ServerName: "shop.test"})
	serverHello := append([]byte(nil), hello...)
	serverHello[5] = 2 // server_hello
	for name, data := range map[string][]byte{
		"plain HTTP":              []byte("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n"),
		"SSL 2":                   {0x80, 0x2e, 0x01, 0x00, 0x02},
		"a handshake not a hello": serverHello,
		"an empty record":         {0x16, 3, 1, 0, 0},
		"an alert":                {0x15, 3, 3, 0, 2, 2, 40},
	} {
		if got, more, err := ServerName(data); !errors.Is(err, ErrNotHello) {
			t.Errorf("%s: %q more %v err %v, want ErrNotHello", name, got, more, err)
		}
	}
}

// FuzzServerName: whatever the bytes, no panic; a name found is a valid
// lower-case host name; and the answer depends only on the hello itself,
// not on what follows it on the connection.
func FuzzServerName(f *testing.F) {
	for _, conf := range []*tls.Config{{ServerName: "shop.test"}, {ServerName: "x.test", MaxVersion: tls.VersionTLS12}, {InsecureSkipVerify: true}} {
		hello := clientHello(f, conf)
		f.Add(hello)
		f.Add(refragment(hello, 50))
	}
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		name, more, err := ServerName(data)
		if err != nil && (more || name != "") {
			t.Fatalf("error %v with more %v and name %q", err, more, name)
		}
		if name != "" {
			if _, _, verr := validName(name); verr != nil || name != strings.ToLower(name) {
				t.Fatalf("invalid name %q", name)
			}
		}
		if err == nil && !more {
			again, more2, err2 := ServerName(append(append([]byte(nil), data...), 0x17, 3, 3, 0, 1, 0))
			if again != name || more2 || err2 != nil {
				t.Fatalf("bytes after the hello changed the answer: %q/%v → %q/%v/%v", name, err, again, more2, err2)
			}
		}
	})
}
