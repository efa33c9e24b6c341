package balancer

import "fmt"

// http mode's clock and stop: what waited too long, and what a graceful
// stop closes at once.

// Sweep ends what waited too long: requests too slow to arrive (408),
// idle clients, connects (the next backend is tried), backends slow to
// answer (504), clients that do not take their response, lingering
// closes, and pooled connections idle past the server timeout.
func (h *httpLoop) Sweep() {
	cfg := h.b.Config()
	now := h.l.Now()
	for c := range h.clients {
		if len(c.private) > 0 && now.Sub(c.private[0].idleAt) > cfg.ServerIdle {
			for _, bc := range c.private {
				bc.close()
			}
			c.private = c.private[:0]
		}
		switch c.state {
		case reading:
			switch {
			case c.parser.InHead(len(c.in)) && now.Sub(c.since) > cfg.HeadTimeout:
				c.ex = exchange{start: now}
				c.replyError(408, "408 Request Timeout: request head not received in time\n", true)
			case len(c.in) == 0 && now.Sub(c.since) > cfg.ClientIdle,
				len(c.in) > 0 && now.Sub(c.active) > cfg.ClientIdle:
				c.close()
			}
		case forwarding:
			bc := c.ex.bc
			switch {
			case bc != nil && bc.connecting && now.Sub(bc.began) > cfg.ConnectTimeout:
				c.backendFailed(fmt.Errorf("%w: %w", errConnect, errConnectTimeout))
			case bc != nil && len(c.out) == 0 && now.Sub(bc.active) > cfg.ServerIdle:
				if c.ex.answered {
					c.close() // the body stopped coming
				} else {
					c.backendFailed(errResponseTimeout)
				}
			case len(c.out) > 0 && now.Sub(c.active) > cfg.ClientIdle:
				c.close() // the client stopped taking its response
			}
		case closing:
			if now.Sub(c.active) > cfg.ClientIdle {
				c.close()
			}
		case lingering:
			if now.Sub(c.since) > lingerFor {
				c.close()
			}
		}
	}
	for be, list := range h.idle {
		kept := list[:0]
		for _, bc := range list {
			if now.Sub(bc.idleAt) > cfg.ServerIdle {
				bc.close()
			} else {
				kept = append(kept, bc)
			}
		}
		if len(kept) == 0 {
			delete(h.idle, be)
		} else {
			h.idle[be] = kept
		}
	}
}

// Idle: no client, and no backend connection kept in the pool.
func (h *httpLoop) Idle() bool { return len(h.clients) == 0 && len(h.idle) == 0 }

// stopping closes the clients waiting for a request; the others are
// answered with "Connection: close".
func (h *httpLoop) Stopping() {
	for c := range h.clients {
		if c.state == reading && len(c.in) == 0 {
			c.close()
		}
	}
	h.closeIdle()
}

func (h *httpLoop) CloseAll() {
	for c := range h.clients {
		c.close()
	}
	h.closeIdle()
}
