package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// HTTPS runs on a goroutine per connection, not on the loops: crypto/tls
// reads and writes through a blocking net.Conn. Each goroutine is one of
// ab's -c connections, with the loop engine's rules: a ticket per request,
// ab's timings (the handshake inside Connect, as ab's connect time ends
// when the request is first written), one silent retry of a kept-alive
// connection the server closed, and rate mode's scheduled sends.

// runTLS performs r with w.Concurrency TLS clients and returns their
// counters.
func runTLS(r *run, cfg *tls.Config) []workerStats {
	stats := make([]workerStats, r.w.Concurrency)
	live := &liveConns{m: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	for i := range stats {
		wg.Go(func() {
			c := &tlsClient{r: r, cfg: cfg, ws: &stats[i], rec: recorder{to: r.coll}, live: live, buf: make([]byte, 64<<10)}
			c.work()
		})
	}
	// A stopped run (Ctrl-C, -t) must not wait for answers in flight: their
	// reads are cut short, as the loops retire their connections.
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			return stats
		case now := <-tick.C:
			if !r.deadline.IsZero() && now.After(r.deadline) {
				r.stop.Store(true)
			}
			if r.stop.Load() {
				live.cut()
			}
		}
	}
}

// liveConns are the open connections of a TLS run, to cut when it stops.
type liveConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (l *liveConns) add(c net.Conn) {
	l.mu.Lock()
	l.m[c] = struct{}{}
	l.mu.Unlock()
}

func (l *liveConns) remove(c net.Conn) {
	l.mu.Lock()
	delete(l.m, c)
	l.mu.Unlock()
}

func (l *liveConns) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.m {
		c.SetDeadline(time.Now())
	}
}

// tlsClient is one connection's worker.
type tlsClient struct {
	r    *run
	cfg  *tls.Config
	ws   *workerStats
	rec  recorder
	live *liveConns
	buf  []byte
	conn *tls.Conn // nil between connections
	p    parser
}

func (c *tlsClient) work() {
	defer c.rec.flush()
	defer c.close()
	r := c.r
	for r.take() {
		begin := time.Now()
		if r.w.Rate > 0 {
			// The request's place in the schedule is where its latency starts.
			i := r.scheduled.Add(1) - 1
			begin = r.start.Add(time.Duration(float64(i) / r.w.Rate * float64(time.Second)))
			for wait := time.Until(begin); wait > 0 && !r.stop.Load(); wait = time.Until(begin) {
				time.Sleep(min(wait, sweepEvery))
			}
			if r.stop.Load() {
				return
			}
		}
		c.request(begin)
	}
}

// request makes one request, from begin; a kept-alive connection the
// server closed meanwhile gets one retry on a new one, as in ab.
func (c *tlsClient) request(begin time.Time) {
	r := c.r
	for retried := false; ; retried = true {
		reused := c.conn != nil
		out, err := c.attempt(begin)
		switch {
		case err == nil:
			return
		case r.stop.Load():
			return // cut short by the stop: not a failure
		case reused && !retried && (out == writeFailed || out == receiveFailed && !c.p.started() && !isTimeout(err)):
			continue
		}
		r.fail(c.ws, out, err)
		return
	}
}

// attempt sends the request and reads its answer; on failure the
// connection is closed and the outcome says which of ab's kinds it was.
func (c *tlsClient) attempt(begin time.Time) (outcome, error) {
	r := c.r
	deadline := time.Now().Add(r.w.Timeout)
	connected, handshake := begin, time.Duration(0)
	if c.conn == nil {
		d := &net.Dialer{Deadline: deadline, Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			rc.Control(func(fd uintptr) { err = r.prepare(int(fd)) })
			return err
		}}
		raw, err := d.Dial("tcp", r.addr.String())
		if err != nil {
			return connectFailed, err
		}
		c.live.add(raw)
		shaking := time.Now()
		c.conn = tls.Client(raw, c.cfg)
		c.conn.SetDeadline(deadline)
		if err := c.conn.Handshake(); err != nil {
			c.close()
			var verr *tls.CertificateVerificationError
			if errors.As(err, &verr) { // every connection would fail alike
				r.abort(fmt.Sprintf("TLS: %v (trust its CA with --tls-ca FILE, or leave out --tls-verify)", verr.Err), 1)
			}
			return connectFailed, err
		}
		connected = time.Now()
		handshake = connected.Sub(shaking)
		if r.tls.Load() == nil {
			r.tls.CompareAndSwap(nil, tlsInfo(c.conn.ConnectionState(), c.cfg.ServerName))
		}
	}
	c.conn.SetDeadline(deadline)
	c.p.reset(r.noBody, r.server.Load() == nil)
	if _, err := c.conn.Write(r.req); err != nil {
		c.close()
		return writeFailed, err
	}
	written := time.Now()
	var firstByte time.Time
	for {
		n, err := c.conn.Read(c.buf)
		if n > 0 {
			if firstByte.IsZero() {
				firstByte = time.Now()
				r.traceHead(c.buf[:n])
			}
			finished, perr := c.p.feed(c.buf[:n])
			if perr != nil {
				c.close()
				return exception, perr
			}
			if finished {
				break
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && c.p.started() {
				c.p.eof()
				break
			}
			c.close()
			return receiveFailed, err
		}
	}
	end := time.Now()
	res := &c.p.res
	if !res.keepAlive || !r.w.KeepAlive {
		c.close()
	}
	r.complete(c.ws, &c.rec, sample{
		start:     begin,
		connect:   connected.Sub(begin).Microseconds(),
		handshake: handshake.Microseconds(),
		waiting:   firstByte.Sub(written).Microseconds(),
		total:     end.Sub(begin).Microseconds(),
	}, res, end)
	return completed, nil
}

func (c *tlsClient) close() {
	if c.conn != nil {
		c.live.remove(c.conn.NetConn())
		c.conn.Close() // close_notify first, as ab's SSL_shutdown
		c.conn = nil
	}
}
