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

func startResolver(b *Balancer) *resolver {
	r := &resolver{b: b, quit: make(chan struct{}), dns: b.Config().Resolver}
	if r.dns == nil {
		r.dns = net.DefaultResolver
	}
	for _, bc := range b.Config().Backends {
		if strings.HasPrefix(bc.Addr, "srv://") {
			r.refresh() // SRV backends have no address until looked up
			break
		}
	}
	r.wg.Go(r.loop)
	return r
}

func (r *resolver) stop() {
	close(r.quit)
	r.wg.Wait()
}

func (r *resolver) loop() {
	for {
		every := r.b.Config().ResolveEvery
		if every > 0 {
			r.refresh()
		} else {
			every = time.Second // not asked for: look again later in case a reload asks
		}
		select {
		case <-r.quit:
			return
		case <-time.After(every):
		}
	}
}

// refresh re-resolves host names and re-expands SRV records.
func (r *resolver) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg := r.b.Config()
	var want []*Backend
	for _, bc := range cfg.Backends {
		if name, ok := strings.CutPrefix(bc.Addr, "srv://"); ok {
			_, srvs, err := r.dns.LookupSRV(ctx, "", "", name)
			if err != nil {
				continue // keep what there is until DNS answers again
			}
			for _, s := range srvs {
				addr := net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port)))
				want = append(want, NewBackend(addr, max(bc.Weight, int(s.Weight))))
			}
			continue
		}
		want = append(want, NewBackend(bc.Addr, bc.Weight))
	}
	r.b.pool.Replace(want)
	for _, be := range r.b.pool.All() {
		host, port, err := net.SplitHostPort(be.Name)
		if err != nil || net.ParseIP(host) != nil {
			continue
		}
		ips, err := r.dns.LookupHost(ctx, host)
		if err != nil || len(ips) == 0 {
			continue
		}
		slices.Sort(ips)
		addr := net.JoinHostPort(ips[0], port)
		be.addr.Store(&addr)
	}
}
