package balancer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// A backend that is the balancer itself — its listen address, or its
// admin address — makes a loop: in http mode each request comes round
// until a limit stops it, in tcp mode every connection (a health check's
// too) opens another, until descriptors run out; the admin address as a
// backend would serve the admin API on the data port. Such a backend is
// refused wherever one is added: configuration, reload and admin API.

// self is one address the balancer listens on.
type self struct {
	addr *net.TCPAddr
	what string // "listen address" or "admin address"
}

// addSelf records an address the balancer listens on.
func (b *Balancer) addSelf(a net.Addr, what string) {
	if ta, ok := a.(*net.TCPAddr); ok {
		b.selfMu.Lock()
		b.selves = append(b.selves, self{ta, what})
		b.selfMu.Unlock()
	}
}

// refuseSelf returns an error when backend is one of the balancer's own
// addresses.
func (b *Balancer) refuseSelf(backend string) error {
	host, port, err := net.SplitHostPort(backend)
	if err != nil || strings.HasPrefix(backend, "srv://") {
		return nil
	}
	b.selfMu.Lock()
	selves := b.selves
	b.selfMu.Unlock()
	var ips []net.IP
	for _, s := range selves {
		if strconv.Itoa(s.addr.Port) != port {
			continue
		}
		if ips == nil {
			ips = lookup(host)
		}
		for _, ip := range ips {
			if ip.Equal(s.addr.IP) || s.addr.IP.IsUnspecified() && isLocal(ip) {
				return fmt.Errorf("backend %s is this balancer's own %s: traffic would go round in a loop", backend, s.what)
			}
		}
	}
	return nil
}

// lookup resolves host (an IP address stays as it is), giving up after a
// second: an unresolvable backend is not the balancer itself.
func lookup(host string) []net.IP {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ips, _ := net.DefaultResolver.LookupIP(ctx, "ip", host)
	return ips
}

// isLocal reports whether ip is an address of this machine.
func isLocal(ip net.IP) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// newPseudonym names this balancer in the Via header, uniquely enough
// that a request carrying it came through this very process.
func newPseudonym() string {
	var id [4]byte
	rand.Read(id[:])
	return "loadlab-" + hex.EncodeToString(id[:])
}

// sameAddress finds two backends of a configuration that are one server
// under two names (localhost:9002 and 127.0.0.1:9002): the pair would get
// twice its share and be counted as two.
func sameAddress(cs []BackendConfig) error {
	seen := map[string]string{}
	for _, c := range cs {
		host, port, err := net.SplitHostPort(c.Addr)
		if err != nil || strings.HasPrefix(c.Addr, "srv://") {
			continue
		}
		for _, ip := range lookup(host) {
			key := net.JoinHostPort(ip.String(), port)
			if other, ok := seen[key]; ok && other != c.Addr {
				return fmt.Errorf("backends %s and %s are the same server (%s); list it once", other, c.Addr, key)
			}
			seen[key] = c.Addr
		}
	}
	return nil
}
