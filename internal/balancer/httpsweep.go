package balancer

import (
	"fmt"
	"time"
)

// http mode's clock and stop: what waited too long, and what a graceful
// stop closes at once.

// Sweep ends what waited too long: requests too slow to arrive (408),
// idle clients, connects (the next backend is tried), backends slow to
// answer (504), clients that do not take their response, lingering
// closes, and pooled connections idle past the server timeout. It returns
// the earliest deadline of what is left (zero: nothing held), so that a
// loop holding only idle clients and pooled connections sleeps until the
// first of them runs out.
func (h *httpLoop) Sweep() time.Time {
	cfg := h.b.Config()
	now := h.l.Now()
	dl := h.l.Deadlines()
	for c := range h.clients {
		if len(c.private) > 0 && dl.Passed(c.private[0].idleAt, cfg.ServerIdle) {
			for _, bc := range c.private {
				bc.close()
			}
			c.private = c.private[:0]
		}
		switch c.state {
		case reading:
			switch {
			case c.parser.InHead(len(c.in)) && dl.Passed(c.since, cfg.HeadTimeout):
				c.ex = exchange{start: now}
				c.replyError(408, "408 Request Timeout: request head not received in time\n", true)
				dl.Soon()
			case len(c.in) == 0 && dl.Passed(c.since, cfg.ClientIdle),
				len(c.in) > 0 && dl.Passed(c.active, cfg.ClientIdle):
				c.close()
			}
		case forwarding:
			bc := c.ex.bc
			if bc == nil {
				dl.Soon() // between backends
			}
			switch {
			case bc != nil && bc.connecting && dl.Passed(bc.began, cfg.ConnectTimeout):
				c.backendFailed(fmt.Errorf("%w: %w", errConnect, errConnectTimeout))
				dl.Soon()
			case bc != nil && len(c.out) == 0 && dl.Passed(bc.active, cfg.ServerIdle):
				if c.ex.answered {
					c.close() // the body stopped coming
				} else {
					c.backendFailed(errResponseTimeout)
					dl.Soon()
				}
			case len(c.out) > 0 && dl.Passed(c.active, cfg.ClientIdle):
				c.close() // the client stopped taking its response
			}
		case closing:
			if dl.Passed(c.active, cfg.ClientIdle) {
				c.close()
			}
		case lingering:
			if dl.Passed(c.since, lingerFor) {
				c.close()
			}
		case tunneling:
			if dl.Passed(c.lastByte(), cfg.ClientIdle) {
				c.close()
			}
		}
	}
	for be, list := range h.idle {
		kept := list[:0]
		for _, bc := range list {
			if dl.Passed(bc.idleAt, cfg.ServerIdle) {
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
	return dl.Next()
}

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
