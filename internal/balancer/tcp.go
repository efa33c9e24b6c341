package balancer

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/proxyproto"
)

// proxied is one client connection and its backend connection, tracked
// so that the idle reaper and a shutdown can find it.
type proxied struct {
	client, server *net.TCPConn
	idleAfter      time.Duration
	closing        atomic.Bool
}

func (p *proxied) close() {
	if !p.closing.Swap(true) {
		p.client.Close()
		if p.server != nil {
			p.server.Close()
		}
	}
}

// proxiedSet tracks open proxied connections. A mutex and a map: a
// sync.Map is slow when, as here, every entry is added and removed once.
type proxiedSet struct {
	mu sync.Mutex
	m  map[*proxied]struct{}
}

func (s *proxiedSet) add(p *proxied) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*proxied]struct{}{}
	}
	s.m[p] = struct{}{}
	s.mu.Unlock()
}

func (s *proxiedSet) remove(p *proxied) {
	s.mu.Lock()
	delete(s.m, p)
	s.mu.Unlock()
}

// list is a snapshot, to act on without holding the lock.
func (s *proxiedSet) list() []*proxied {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*proxied, 0, len(s.m))
	for p := range s.m {
		out = append(out, p)
	}
	return out
}

// suspectFor is how long a backend whose connect failed is passed over
// when no health check clears it sooner.
const suspectFor = 2 * time.Second

// dialBackend connects to a backend for client, trying others after a
// failed connect (up to Retries), so that a dead backend costs the client
// nothing. It returns the reasons backends were skipped, for the log.
func (b *Balancer) dialBackend(client net.Addr) (*Backend, *net.TCPConn, []string) {
	cfg := b.Config()
	var tried []*Backend
	var skipped []string
	for attempt := 0; attempt <= max(cfg.Retries, 0); attempt++ {
		be := b.pick(client, tried)
		if be == nil {
			break
		}
		tried = append(tried, be)
		began := time.Now()
		d := b.dialer(cfg)
		c, err := d.Dial("tcp", be.Addr())
		if err != nil {
			be.suspect(suspectFor)
			skipped = append(skipped, be.Name+": "+shortErr(err))
			continue
		}
		be.observe(time.Since(began))
		return be, c.(*net.TCPConn), skipped
	}
	if len(tried) == 0 {
		skipped = append(skipped, "no backend available")
	}
	return nil, nil, skipped
}

// dialer connects to backends without TCP keep-alive probes.
func (b *Balancer) dialer(cfg *Config) net.Dialer {
	return net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: -1}
}

// proxyTCP joins a client to a backend and copies bytes both ways until
// both sides are done, with splice(2): the bytes never enter user space.
func (b *Balancer) proxyTCP(client *net.TCPConn) {
	start := time.Now()
	be, server, skipped := b.dialBackend(client.RemoteAddr())
	if be == nil {
		client.SetLinger(0) // refuse at once with a reset, as a closed port would
		client.Close()
		b.log.connection(client.RemoteAddr(), nil, 0, 0, time.Since(start), "refused", skipped)
		return
	}
	cfg := b.Config()
	if cfg.SendProxy != "" {
		hdr := proxyproto.Append(nil, cfg.SendProxy, client.RemoteAddr(), client.LocalAddr())
		if _, err := server.Write(hdr); err != nil {
			be.Errors.Add(1)
			server.Close()
			client.Close()
			return
		}
	}
	be.Active.Add(1)
	be.Total.Add(1)
	be.Requests.Add(1)
	p := &proxied{client: client, server: server, idleAfter: min(cfg.ClientIdle, cfg.ServerIdle)}
	b.conns.add(p)

	var up int64
	var upErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		up, upErr = spliceCopy(server, client)
		if upErr != nil {
			p.close() // a broken side ends both
		} else {
			server.CloseWrite() // pass the client's half-close on
		}
	})
	down, downErr := spliceCopy(client, server)
	if downErr != nil {
		p.close()
	} else {
		client.CloseWrite()
	}
	wg.Wait()
	p.close()
	b.conns.remove(p)
	be.Active.Add(-1)
	be.BytesIn.Add(up)
	be.BytesOut.Add(down)
	status := "done"
	if err := errors.Join(upErr, downErr); err != nil {
		status = "error"
		if !p.closing.Load() {
			be.Errors.Add(1)
		}
	}
	b.log.connection(client.RemoteAddr(), be, up, down, time.Since(start), status, skipped)
}

// reapIdle closes proxied connections on which no data has moved either
// way for their idle timeout. Splice gives no hook per read, so the
// kernel's own record of the last data sent and received (TCP_INFO) says
// how long a socket has been idle.
func (b *Balancer) reapIdle() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
			for _, p := range b.conns.list() {
				if min(idleFor(p.client), idleFor(p.server)) > p.idleAfter {
					p.close()
				}
			}
		}
	}
}

// idleFor is how long ago c last sent or received data.
func idleFor(c *net.TCPConn) time.Duration {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var info *unix.TCPInfo
	raw.Control(func(fd uintptr) { info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if info == nil {
		return 0
	}
	return time.Duration(min(info.Last_data_recv, info.Last_data_sent)) * time.Millisecond
}

func shortErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}
