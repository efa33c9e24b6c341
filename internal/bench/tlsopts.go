package bench

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
)

// TLS is how a run speaks HTTPS, with ab's options and loadlab's own.
type TLS struct {
	// Ciphers is ab's -Z: cipher suites by their OpenSSL names, separated
	// by colons. As in ab, they apply to TLS 1.2 and below; TLS 1.3's
	// suites are not chosen by the client.
	Ciphers string
	// Protocol is ab's -f: SSL3, TLS1, TLS1.1, TLS1.2, TLS1.3, or ALL
	// (the default: TLS 1.0 to 1.3).
	Protocol string
	// NoSNI is ab's -I: send no server name.
	NoSNI bool
	// Verify checks the server's certificate (ab never does), against
	// CAFile when given, else the system's roots.
	Verify bool
	CAFile string
	// Resume reuses TLS sessions across connections (ab makes a full
	// handshake on every new connection).
	Resume bool
	// ClientCert is ab's -E: a PEM file holding the client's certificate
	// chain and its private key, shown to a server that asks for one.
	ClientCert string
}

// protocols are -f's values: the lowest and highest version each allows.
var protocols = map[string][2]uint16{
	"ALL":    {tls.VersionTLS10, tls.VersionTLS13},
	"TLS1":   {tls.VersionTLS10, tls.VersionTLS10},
	"TLS1.1": {tls.VersionTLS11, tls.VersionTLS11},
	"TLS1.2": {tls.VersionTLS12, tls.VersionTLS12},
	"TLS1.3": {tls.VersionTLS13, tls.VersionTLS13},
}

// config is the client configuration for host; "" only checks the
// options.
func (o TLS) config(host string) (*tls.Config, error) {
	cfg := &tls.Config{
		InsecureSkipVerify: !o.Verify && o.CAFile == "",
		// OpenSSL 3's default groups, in its order, so that a handshake
		// costs what ab's does (Go alone would offer its post-quantum
		// hybrid first).
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP521, tls.CurveP384},
		NextProtos:       []string{"http/1.1"},
	}
	if !o.NoSNI {
		cfg.ServerName = host
	}
	proto := strings.ToUpper(o.Protocol)
	if proto == "" {
		proto = "ALL"
	}
	v, ok := protocols[proto]
	switch {
	case proto == "SSL3" || proto == "SSL2":
		return nil, usage("-f %s: SSL 3 is not spoken by Go's TLS, nor by Debian's OpenSSL; use TLS1 or later", o.Protocol)
	case !ok:
		return nil, usage("-f %q: want SSL3, TLS1, TLS1.1, TLS1.2, TLS1.3 or ALL", o.Protocol)
	}
	cfg.MinVersion, cfg.MaxVersion = v[0], v[1]
	if o.Ciphers != "" {
		ids, err := cipherIDs(o.Ciphers)
		if err != nil {
			return nil, err
		}
		cfg.CipherSuites = ids
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, usage("--tls-ca: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usage("--tls-ca %s: no PEM certificate in it", o.CAFile)
		}
	}
	if o.Resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	}
	if o.ClientCert != "" {
		pem, err := os.ReadFile(o.ClientCert)
		if err != nil {
			return nil, usage("-E: %v", err)
		}
		cert, err := tls.X509KeyPair(pem, pem) // one file, as ab's -E: the chain and the key
		if err != nil {
			return nil, usage("-E %s: want the certificate chain and its private key in one PEM file: %v", o.ClientCert, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// cipherIDs turns -Z's OpenSSL names into Go's suite IDs.
func cipherIDs(list string) ([]uint16, error) {
	var ids []uint16
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		id, ok := openSSLSuite(name)
		if !ok {
			var known []string
			for _, s := range opensslNames {
				if s.version12 {
					known = append(known, s.name)
				}
			}
			slices.Sort(known)
			return nil, usage("-Z: no cipher suite %q in Go's TLS (OpenSSL names: %s)", name, strings.Join(known, ", "))
		}
		if id != 0 {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// openSSLSuite finds a suite by its OpenSSL name; a TLS 1.3 name is
// accepted and chooses nothing, as in ab.
func openSSLSuite(name string) (uint16, bool) {
	for id, s := range opensslNames {
		if s.name == name {
			if !s.version12 {
				return 0, true
			}
			return id, true
		}
	}
	return 0, false
}

// suiteName is a cipher suite's OpenSSL name and its key strength in bits,
// as ab's "SSL/TLS Protocol" line shows them.
type suiteName struct {
	name      string
	bits      int
	version12 bool // a suite of TLS 1.2 and below, which -Z chooses
}

var opensslNames = map[uint16]suiteName{
	tls.TLS_AES_128_GCM_SHA256:       {"TLS_AES_128_GCM_SHA256", 128, false},
	tls.TLS_AES_256_GCM_SHA384:       {"TLS_AES_256_GCM_SHA384", 256, false},
	tls.TLS_CHACHA20_POLY1305_SHA256: {"TLS_CHACHA20_POLY1305_SHA256", 256, false},

	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       {"ECDHE-ECDSA-AES128-GCM-SHA256", 128, true},
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         {"ECDHE-RSA-AES128-GCM-SHA256", 128, true},
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       {"ECDHE-ECDSA-AES256-GCM-SHA384", 256, true},
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         {"ECDHE-RSA-AES256-GCM-SHA384", 256, true},
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: {"ECDHE-ECDSA-CHACHA20-POLY1305", 256, true},
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   {"ECDHE-RSA-CHACHA20-POLY1305", 256, true},
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA:          {"ECDHE-ECDSA-AES128-SHA", 128, true},
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA:            {"ECDHE-RSA-AES128-SHA", 128, true},
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:          {"ECDHE-ECDSA-AES256-SHA", 256, true},
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:            {"ECDHE-RSA-AES256-SHA", 256, true},
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256:       {"ECDHE-ECDSA-AES128-SHA256", 128, true},
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256:         {"ECDHE-RSA-AES128-SHA256", 128, true},
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256:               {"AES128-GCM-SHA256", 128, true},
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384:               {"AES256-GCM-SHA384", 256, true},
	tls.TLS_RSA_WITH_AES_128_CBC_SHA:                  {"AES128-SHA", 128, true},
	tls.TLS_RSA_WITH_AES_256_CBC_SHA:                  {"AES256-SHA", 256, true},
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256:               {"AES128-SHA256", 128, true},
	tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA:           {"ECDHE-RSA-DES-CBC3-SHA", 112, true},
	tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:                 {"DES-CBC3-SHA", 112, true},
}

// TLSInfo is what ab prints of the first handshake.
type TLSInfo struct {
	// Protocol is ab's "SSL/TLS Protocol" line: version, cipher suite
	// (OpenSSL's name), the server key's bits and the cipher's.
	Protocol string `json:"protocol"`
	// TempKey is ab's "Server Temp Key" line: the key exchange group.
	TempKey string `json:"temp_key,omitempty"`
	// ServerName is the SNI sent, ab's "TLS Server Name"; empty with -I
	// or an IP address.
	ServerName string `json:"server_name,omitempty"`
}

// tlsInfo describes a handshake as ab's report lines do.
func tlsInfo(st tls.ConnectionState, serverName string) *TLSInfo {
	version := strings.Replace(tls.VersionName(st.Version), "TLS 1.", "TLSv1.", 1)
	version = strings.Replace(version, "TLSv1.0", "TLSv1", 1)
	suite, ok := opensslNames[st.CipherSuite]
	if !ok {
		suite = suiteName{name: tls.CipherSuiteName(st.CipherSuite)}
	}
	keyBits := 0
	if len(st.PeerCertificates) > 0 {
		keyBits = publicKeyBits(st.PeerCertificates[0].PublicKey)
	}
	info := &TLSInfo{Protocol: fmt.Sprintf("%s,%s,%d,%d", version, suite.name, keyBits, suite.bits)}
	switch st.CurveID {
	case tls.X25519:
		info.TempKey = "X25519 253 bits"
	case tls.CurveP256:
		info.TempKey = "ECDH P-256 256 bits"
	case tls.CurveP384:
		info.TempKey = "ECDH P-384 384 bits"
	case tls.CurveP521:
		info.TempKey = "ECDH P-521 521 bits"
	case 0:
	default:
		info.TempKey = st.CurveID.String()
	}
	if serverName != "" && net.ParseIP(serverName) == nil { // no SNI for an address

		info.ServerName = serverName
	}
	return info
}

func publicKeyBits(k any) int {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return k.Curve.Params().BitSize
	case *rsa.PublicKey:
		return k.N.BitLen()
	case ed25519.PublicKey:
		return 253
	}
	return 0
}
