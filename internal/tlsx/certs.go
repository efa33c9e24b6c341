// Package tlsx is loadlab's TLS: a server's certificates — loaded from
// files and reloaded on SIGHUP, or made in memory for local experiments —
// picked by SNI, and the TLS configurations serve, balance and bench
// build on them. TLS itself is Go's crypto/tls.
package tlsx

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Pair names a certificate file and its key file, both PEM; in YAML,
// {cert: FILE, key: FILE}.
type Pair struct {
	CertFile string `yaml:"cert"`
	KeyFile  string `yaml:"key"`
}

// Store is a server's certificates. The first is the default; a client
// that names a host (SNI) gets the first certificate for that name,
// wildcards included, as nginx and HAProxy choose. Reload re-reads the
// files; a file that no longer loads keeps its old certificate.
type Store struct {
	mu    sync.RWMutex
	pairs []Pair // nil for a certificate made in memory
	certs []*loaded
}

type loaded struct {
	cert  *tls.Certificate
	names []string // lower case; "*.example.com" for a wildcard
}

// Load reads every pair; the first is the default certificate. Warnings
// are for keys others may read, which still load.
func Load(pairs []Pair) (s *Store, warnings []string, err error) {
	s = &Store{pairs: pairs}
	for _, p := range pairs {
		l, err := loadPair(p)
		if err != nil {
			return nil, nil, err
		}
		s.certs = append(s.certs, l)
		if w := KeyPermissionWarning(p.KeyFile); w != "" {
			warnings = append(warnings, w)
		}
	}
	if len(s.certs) == 0 {
		return nil, nil, errors.New("no certificate given (use --tls-cert FILE --tls-key FILE)")
	}
	return s, warnings, nil
}

func loadPair(p Pair) (*loaded, error) {
	cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s with key %s: %v", p.CertFile, p.KeyFile, plainError(err))
	}
	return newLoaded(&cert), nil
}

// plainError drops the path-less prefixes crypto/tls puts on its errors.
func plainError(err error) string {
	return strings.TrimPrefix(err.Error(), "tls: ")
}

func newLoaded(cert *tls.Certificate) *loaded {
	l := &loaded{cert: cert}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if cert.Leaf != nil {
		l.names = leafNames(cert.Leaf)
	}
	return l
}

// Reload re-reads every pair's files. A pair that fails keeps its old
// certificate; the error names each that failed.
func (s *Store) Reload() error {
	if s.pairs == nil {
		return nil // made in memory: nothing to read
	}
	fresh := make([]*loaded, len(s.pairs))
	var errs []error
	s.mu.RLock()
	for i, p := range s.pairs {
		l, err := loadPair(p)
		if err != nil {
			errs = append(errs, err)
			l = s.certs[i]
		}
		fresh[i] = l
	}
	s.mu.RUnlock()
	s.mu.Lock()
	s.certs = fresh
	s.mu.Unlock()
	return errors.Join(errs...)
}

// Certificate picks the certificate for a server name (SNI; "" for
// none): an exact name first, then a wildcard for its first label, then
// the default.
func (s *Store) Certificate(serverName string) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if name != "" {
		for _, l := range s.certs {
			for _, n := range l.names {
				if n == name {
					return l.cert
				}
			}
		}
		if dot := strings.IndexByte(name, '.'); dot > 0 {
			wild := "*" + name[dot:]
			for _, l := range s.certs {
				for _, n := range l.names {
					if n == wild {
						return l.cert
					}
				}
			}
		}
	}
	return s.certs[0].cert
}

// CertInfo is what the admin page shows of a certificate.
type CertInfo struct {
	File        string    `json:"file,omitempty"` // empty when made in memory
	Names       []string  `json:"names"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"sha256"`
}

// Info describes the certificates in use, the default first.
func (s *Store) Info() []CertInfo {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []CertInfo
	for i, l := range s.certs {
		ci := CertInfo{Names: l.names, Fingerprint: Fingerprint(l.cert)}
		if s.pairs != nil {
			ci.File = s.pairs[i].CertFile
		}
		if l.cert.Leaf != nil {
			ci.NotAfter = l.cert.Leaf.NotAfter
		}
		out = append(out, ci)
	}
	return out
}

// Describe is what a peer's certificate says of itself, as Info gives
// a server's own: names, expiry, fingerprint.
func Describe(leaf *x509.Certificate) CertInfo {
	return CertInfo{Names: leafNames(leaf), NotAfter: leaf.NotAfter, Fingerprint: fingerprint(leaf.Raw)}
}

// leafNames are a certificate's DNS names in lower case, or its common
// name when it has none.
func leafNames(leaf *x509.Certificate) []string {
	var names []string
	for _, n := range leaf.DNSNames {
		names = append(names, strings.ToLower(n))
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, strings.ToLower(leaf.Subject.CommonName))
	}
	return names
}

// Fingerprint is the SHA-256 of a certificate's leaf, as `openssl x509
// -fingerprint -sha256` prints it: upper-case hex pairs joined by colons.
func Fingerprint(cert *tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	return fingerprint(cert.Certificate[0])
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// KeyPermissionWarning is a line saying that a private key file may be
// read by its group or others, or "" when it may not.
func KeyPermissionWarning(keyFile string) string {
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("warning: private key %s is readable by others (mode %04o); chmod 600 it", keyFile, st.Mode().Perm())
}
