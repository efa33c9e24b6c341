package tlsx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pairFor writes a self-signed certificate for hosts into a directory of
// its own.
func pairFor(t *testing.T, hosts ...string) Pair {
	t.Helper()
	certPEM, keyPEM, err := SelfSigned(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := WritePair(t.TempDir(), certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCertificateBySNI(t *testing.T) {
	def, exact, wild := pairFor(t), pairFor(t, "shop.example"), pairFor(t, "*.api.example")
	s, _, err := Load([]Pair{def, exact, wild})
	if err != nil {
		t.Fatal(err)
	}
	info := s.Info()
	want := map[string]string{
		"":                     info[0].Fingerprint, // no SNI: the default
		"unknown.example":      info[0].Fingerprint,
		"shop.example":         info[1].Fingerprint,
		"SHOP.Example.":        info[1].Fingerprint, // case and a trailing dot do not matter
		"v1.api.example":       info[2].Fingerprint,
		"deep.v1.api.example":  info[0].Fingerprint, // a wildcard covers one label
		"api.example":          info[0].Fingerprint,
		"localhost":            info[0].Fingerprint, // every self-signed one has it: the first wins
		"xshop.example":        info[0].Fingerprint,
		"v1.api.example.other": info[0].Fingerprint,
	}
	for name, fp := range want {
		if got := Fingerprint(s.Certificate(name)); got != fp {
			t.Errorf("SNI %q: got the certificate %s, want %s", name, got[:8], fp[:8])
		}
	}
	if !strings.Contains(strings.Join(info[2].Names, " "), "*.api.example") || info[2].File != wild.CertFile || info[2].NotAfter.IsZero() {
		t.Errorf("info: %+v", info[2])
	}
}

func TestReloadKeepsTheOldCertificateOnABadFile(t *testing.T) {
	p := pairFor(t)
	s, _, err := Load([]Pair{p})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Info()[0].Fingerprint

	next := pairFor(t)
	for from, to := range map[string]string{next.CertFile: p.CertFile, next.KeyFile: p.KeyFile} {
		b, _ := os.ReadFile(from)
		os.WriteFile(to, b, 0o600)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	second := s.Info()[0].Fingerprint
	if second == first {
		t.Fatal("the reload did not take the new certificate")
	}

	os.WriteFile(p.CertFile, []byte("not a certificate"), 0o644)
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), p.CertFile) {
		t.Fatalf("a bad file: err %v, want one naming %s", err, p.CertFile)
	}
	if got := s.Info()[0].Fingerprint; got != second {
		t.Error("a bad file replaced the certificate")
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	p := pairFor(t)
	for _, bad := range []Pair{
		{CertFile: filepath.Join(t.TempDir(), "missing.pem"), KeyFile: p.KeyFile},
		{CertFile: p.CertFile, KeyFile: pairFor(t).KeyFile}, // a key of another certificate
	} {
		_, _, err := Load([]Pair{bad})
		if err == nil || !strings.Contains(err.Error(), bad.CertFile) || strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if _, _, err := Load(nil); err == nil {
		t.Error("no certificate loaded without an error")
	}
}

func TestKeyPermissionWarning(t *testing.T) {
	p := pairFor(t)
	_, warnings, err := Load([]Pair{p})
	if err != nil || len(warnings) != 0 {
		t.Fatalf("mode 600: %v %q", err, warnings)
	}
	os.Chmod(p.KeyFile, 0o644)
	_, warnings, err = Load([]Pair{p})
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], p.KeyFile) || !strings.Contains(warnings[0], "0644") {
		t.Fatalf("mode 644: %v %q", err, warnings)
	}
}
