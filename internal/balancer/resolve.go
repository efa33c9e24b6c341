package balancer

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// resolver follows DNS: every ResolveEvery it looks up the backends' host
// names again (A/AAAA), and expands srv:// backends into one backend per
// SRV target, which is how the balancer follows a Kubernetes headless
// service or Consul's DNS.
type resolver struct {
	b    *Balancer
	quit chan struct{}
	wg   sync.WaitGroup
	dns  *net.Resolver
}

// newResolver looks the backends' names up once, before the balancer
// serves: SRV backends and host names have no address until then.
func newResolver(b *Balancer) *resolver {
	r := &resolver{b: b, quit: make(chan struct{}), dns: b.Config().Resolver}
	if r.dns == nil {
		r.dns = net.DefaultResolver
	}
	r.refresh(false)
	return r
}

// start follows DNS from now on.
func (r *resolver) start() { r.wg.Go(r.loop) }

func (r *resolver) stop() {
	close(r.quit)
	r.wg.Wait()
}

// loop looks again every ResolveEvery; without it, only names never yet
// answered (a backend added since, or whose DNS was down) are looked up,
// once a second.
func (r *resolver) loop() {
	for {
		every := r.b.Config().ResolveEvery
		if every > 0 {
			r.refresh(false)
		} else {
			every = time.Second
			r.refresh(true)
		}
		select {
		case <-r.quit:
			return
		case <-time.After(every):
		}
	}
}

// refresh re-expands SRV records and re-resolves host names (only those
// never resolved, when unresolvedOnly). A look-up that fails keeps the
// last good answer: a DNS outage does not take backends away.
func (r *resolver) refresh(unresolvedOnly bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !unresolvedOnly {
		r.expandSRV(ctx)
	}
	for _, be := range r.b.pool.All() {
		if unresolvedOnly && be.sockaddr.Load() != nil {
			continue
		}
		r.resolve(ctx, be)
	}
}

// expandSRV replaces the backends that came from srv:// entries with the
// targets DNS names now; the other backends are left as they are.
func (r *resolver) expandSRV(ctx context.Context) {
	for _, bc := range r.b.Config().Backends {
		name, ok := strings.CutPrefix(bc.Addr, "srv://")
		if !ok {
			continue
		}
		_, srvs, err := r.dns.LookupSRV(ctx, "", "", name)
		if err != nil {
			continue // keep what there is until DNS answers again
		}
		var want []*Backend
		for _, s := range srvs {
			addr := net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port)))
			each := bc
			each.Weight = max(bc.Weight, int(s.Weight))
			be := newBackendFor(addr, each)
			if old := r.b.pool.Find(addr); old != nil {
				be = old // keeps its address; the refresh below looks it up again
			} else {
				r.resolve(ctx, be) // a new target enters the pool with its address
			}
			be.backup.Store(bc.Backup)
			be.maxConn.Store(int64(bc.MaxConn))
			want = append(want, be)
		}
		r.b.forget(r.b.pool.ReplaceFrom(bc.Addr, want))
	}
}

// resolve looks up be's host name, if it has one, and keeps the answer.
func (r *resolver) resolve(ctx context.Context, be *Backend) {
	host, port, err := net.SplitHostPort(be.Name)
	if err != nil || net.ParseIP(host) != nil {
		return
	}
	ips, err := r.dns.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return
	}
	slices.SortFunc(ips, func(a, b net.IP) int { return strings.Compare(a.String(), b.String()) })
	be.resolved(ips[0], port)
}
