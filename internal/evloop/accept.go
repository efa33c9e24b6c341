package evloop

import (
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"loadlab/internal/rawsys"
)

// Accepting and handing over: the first loop accepts for all, each new
// connection goes to the least loaded loop, and --max-conns admits it
// or keeps it waiting.

// maxAccept is how many connections a loop takes per round; the rest
// wait for the next round (or another loop), so that a burst of new
// connections does not hold up the bytes of those already open.
const maxAccept = 32

// accept takes waiting connections, up to maxAccept, and gives each to
// the loop holding the fewest connections, as HAProxy's listener does
// between its threads. One loop accepts for all: when every loop watched
// the listener, every new connection woke both, and the one that won
// took it whatever it already held — measured, new connections' latency
// spread wider than HAProxy's (standard deviation 5.4–6.1 ms against
// 3.6–4.7) and p99 1.09× its; with one acceptor and exact placement,
// 3.9–5.4 ms and p99 at HAProxy's (docs/PERFORMANCE.md).
//
// It reports whether it stopped at maxAccept, with more perhaps waiting.
// It runs every round while the listener has connections:
// level-triggered epoll puts a reported socket back at the end of its
// ready list, so with thousands of busy connections ahead of it the
// listener would come round again only every few dozen rounds.
func (l *Loop) accept() (more bool) {
	l.acceptable = false
	for range maxAccept {
		fd, from, err := rawsys.Accept4(l.g.lnfd)
		switch err {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return false
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			// Out of descriptors: the listener would wake us at once,
			// again and again. Pause accepting a little; connections
			// wait in the backlog meanwhile.
			l.ctl(unix.EPOLL_CTL_DEL, l.g.lnfd, 0)
			l.listening = false
			l.pausedTo = l.now.Add(min(l.g.cfg.SweepEvery, 100*time.Millisecond))
			return false
		default:
			return false
		}
		if !l.g.cfg.NagleOn {
			rawsys.SetNoDelay(fd)
		}
		// Handed to the lightest loop; but not while stopping, when that
		// loop may be on its way out.
		if to := l.g.lightest(); to != l && to.load.Load() < l.load.Load() && !l.g.stopAccepting.Load() {
			to.handOff(fd, from)
			continue
		}
		l.admit(fd, from)
	}
	l.acceptable = true // took maxAccept: there may be more
	return true
}

// lightest is the loop holding the fewest connections.
func (g *Group) lightest() *Loop {
	best := g.loops[0]
	for _, l := range g.loops[1:] {
		if l.load.Load() < best.load.Load() {
			best = l
		}
	}
	return best
}

// Give hands a connection accepted elsewhere to the least loaded loop, as
// if its listener had: the balancer's TLS front makes its handshakes on
// goroutines and gives the loops the plaintext end of a socket pair. The
// descriptor is the loops' from here, closed by them even if they have
// stopped.
func (g *Group) Give(fd int, from net.Addr) {
	g.lightest().handOff(fd, from)
}

// Wake knocks on every loop, so that each runs its handler's Tick soon:
// how one loop, or the group's owner, tells the loops that something
// they wait for came free (a backend's slot, for the balancer's queue).
func (g *Group) Wake() { g.wake() }

// WakeAll is Wake from one of the group's own loops, which may run
// before Start has returned the group.
func (l *Loop) WakeAll() { l.g.wake() }

// handOff gives an accepted connection to l, from the accepting loop.
// One knock wakes l for all that came before it takes them.
func (l *Loop) handOff(fd int, from net.Addr) {
	l.load.Add(1) // counted at once, so the next choice sees it
	l.inboxMu.Lock()
	if l.exited { // stopped meanwhile: nobody would take it
		l.inboxMu.Unlock()
		l.load.Add(-1)
		rawsys.Close(fd)
		return
	}
	first := len(l.inbox) == 0 && len(l.posted) == 0
	l.inbox = append(l.inbox, handedOff{fd, from})
	l.inboxMu.Unlock()
	if first {
		l.knock()
	}
}

// post runs f on the loop's goroutine at its next round, unless the loop
// has ended.
func (l *Loop) post(f func()) bool {
	l.inboxMu.Lock()
	if l.exited {
		l.inboxMu.Unlock()
		return false
	}
	first := len(l.inbox) == 0 && len(l.posted) == 0
	l.posted = append(l.posted, f)
	l.inboxMu.Unlock()
	if first {
		l.knock()
	}
	return true
}

type handedOff struct {
	fd   int
	from net.Addr
}

// takeInbox takes the connections other loops handed over, and runs what
// was posted.
func (l *Loop) takeInbox() {
	for _, h := range takeAll(&l.inboxMu, &l.inbox) {
		l.load.Add(-1) // admit counts it again
		l.admit(h.fd, h.from)
	}
	l.runPosted()
}

func (l *Loop) runPosted() {
	for _, f := range takeAll(&l.inboxMu, &l.posted) {
		f()
	}
}

// takeAll empties a list that other goroutines add to under mu, and
// returns what it held.
func takeAll[T any](mu *sync.Mutex, list *[]T) []T {
	mu.Lock()
	defer mu.Unlock()
	all := *list
	*list = nil
	return all
}

// admit gives a connection to the handler, or queues it over MaxConns.
func (l *Loop) admit(fd int, from net.Addr) {
	l.load.Add(1)
	if slots := l.g.cfg.Slots; slots != nil {
		select {
		case slots <- struct{}{}:
		default:
			l.queue(append(l.waiting, waiter{fd, from, l.now.Add(l.g.cfg.QueueTimeout())}))
			return
		}
	}
	l.handler.Take(fd, from)
}

// admitWaiting gives free MaxConns slots to connections waiting for one.
func (l *Loop) admitWaiting() {
	for len(l.waiting) > 0 {
		select {
		case l.g.cfg.Slots <- struct{}{}:
			w := l.waiting[0]
			l.queue(l.waiting[1:])
			l.handler.Take(w.fd, w.from)
		default:
			return
		}
	}
}

// queue sets the loop's connections waiting over MaxConns, keeping the
// group's count.
func (l *Loop) queue(w []waiter) {
	l.g.queued.Add(int64(len(w) - len(l.waiting)))
	l.waiting = w
}

// Queued is how many accepted connections wait for a MaxConns slot now,
// over every loop: HAProxy's queue.
func (g *Group) Queued() int { return int(g.queued.Load()) }

// Ended says a connection the handler took is done: its slot is free.
func (l *Loop) Ended() {
	l.load.Add(-1)
	if l.g.cfg.Slots != nil {
		<-l.g.cfg.Slots
	}
}
