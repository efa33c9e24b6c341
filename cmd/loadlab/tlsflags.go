package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"loadlab/internal/tlsx"
)

// tlsFlags are a server's certificate flags: serve and balance share them.
type tlsFlags struct {
	certs, keys []string
	selfSigned  bool
}

func (t *tlsFlags) add(fl *pflag.FlagSet) {
	fl.StringArrayVar(&t.certs, "tls-cert", nil, "serve HTTPS with this certificate (PEM; with --tls-key; repeat for more, picked by SNI, the first the default)")
	fl.StringArrayVar(&t.keys, "tls-key", nil, "the private key of each --tls-cert, in the same order (PEM)")
	fl.BoolVar(&t.selfSigned, "tls-self-signed", false, "serve HTTPS with an ECDSA P-256 certificate made at start for localhost (its SHA-256 fingerprint is on the ready line)")
}

func (t *tlsFlags) on() bool { return t.selfSigned || len(t.certs) > 0 || len(t.keys) > 0 }

func (t *tlsFlags) validate() error {
	switch {
	case t.selfSigned && (len(t.certs) > 0 || len(t.keys) > 0):
		return usagef("--tls-self-signed makes its own certificate: leave out --tls-cert and --tls-key, or it")
	case len(t.certs) != len(t.keys):
		return usagef("%d --tls-cert and %d --tls-key: give each certificate its key, in the same order", len(t.certs), len(t.keys))
	}
	return nil
}

// load loads the certificates, or makes the self-signed one in memory
// files (tlsx.MemPair: a prefork child reads it from there, and a killed
// server leaves no key behind). It returns the store, the files it is
// read from, and what undoes it.
func (t *tlsFlags) load(warn func(string)) (*tlsx.Store, []tlsx.Pair, func(), error) {
	var pairs []tlsx.Pair
	cleanup := func() {}
	if t.selfSigned {
		certPEM, keyPEM, err := tlsx.SelfSigned()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("making a self-signed certificate: %v", err)
		}
		p, release, err := tlsx.MemPair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("keeping the self-signed certificate: %v", err)
		}
		cleanup = release
		pairs = []tlsx.Pair{p}
	} else {
		for i := range t.certs {
			pairs = append(pairs, tlsx.Pair{CertFile: t.certs[i], KeyFile: t.keys[i]})
		}
	}
	store, warnings, err := tlsx.Load(pairs)
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	for _, w := range warnings {
		warn(w)
	}
	return store, pairs, cleanup, nil
}
