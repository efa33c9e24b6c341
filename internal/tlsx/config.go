package tlsx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ServerConfig is the TLS a server speaks with the store's certificates:
// TLS 1.2 and 1.3 (older versions are refused, as Mozilla's intermediate
// profile and current nginx and HAProxy defaults do), Go's default cipher
// suites, and ALPN http/1.1, or http/1.0 for a client that offers only
// that, as nginx accepts it (a client offering neither, h2 alone, is
// refused with no_application_protocol).
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1", "http/1.0"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.Certificate(hello.ServerName), nil
		},
	}
}

// AckNow acknowledges at once what the client sent last, on a server's
// TCP connection whose handshake just ended: the TLS 1.3 Finished. Go's
// server sends its session tickets before that message arrives, not after
// as OpenSSL's does, so nothing of the server's would carry the
// acknowledgement; a client with Nagle's algorithm on (ab) holds its
// request until it comes, and the kernel delays it 40 ms. Measured: ab
// against serve over TLS 1.3, 219 requests/s at -c 10 without, against
// nginx's 1,710.
func AckNow(nc net.Conn) {
	if raw, ok := nc.(interface{ RawFD() int }); ok { // serve's rawConn
		unix.SetsockoptInt(raw.RawFD(), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
		return
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	if raw, err := tcp.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
	}
}

// SelfSigned makes an ECDSA P-256 certificate for local experiments,
// valid for a year from an hour ago, for localhost, 127.0.0.1 and ::1
// and the hosts given (names or addresses), as PEM.
func SelfSigned(hosts ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"loadlab self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root: a client may trust it with --tls-ca
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && h != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// WritePair writes a certificate and its key into dir as cert.pem and
// key.pem, the key readable by its owner only.
func WritePair(dir string, certPEM, keyPEM []byte) (Pair, error) {
	p := Pair{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(p.CertFile, certPEM, 0o644); err != nil {
		return Pair{}, err
	}
	if err := os.WriteFile(p.KeyFile, keyPEM, 0o600); err != nil {
		return Pair{}, err
	}
	return p, nil
}

// MemPair holds a certificate and its key in memory-backed files
// (memfd_create) and names them /proc/PID/fd/N: this process and the
// children it starts (prefork's, running as the same user) read them as
// files, a reload included, yet nothing reaches the disk and nothing is
// left behind however the process ends. The func returned releases them.
func MemPair(certPEM, keyPEM []byte) (Pair, func(), error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	var paths []string
	for _, part := range []struct {
		name string
		pem  []byte
		mode os.FileMode
	}{{"loadlab-cert.pem", certPEM, 0o644}, {"loadlab-key.pem", keyPEM, 0o600}} {
		fd, err := unix.MemfdCreate(part.name, unix.MFD_CLOEXEC)
		if err != nil {
			closeAll()
			return Pair{}, nil, err
		}
		f := os.NewFile(uintptr(fd), part.name)
		files = append(files, f)
		if err := f.Chmod(part.mode); err != nil {
			closeAll()
			return Pair{}, nil, err
		}
		if _, err := f.Write(part.pem); err != nil {
			closeAll()
			return Pair{}, nil, err
		}
		paths = append(paths, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd))
	}
	return Pair{CertFile: paths[0], KeyFile: paths[1]}, closeAll, nil
}
