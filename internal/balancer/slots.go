package balancer

import (
	"slices"
	"time"

	"loadlab/internal/evloop"
)

// A backend's maxconn, as HAProxy's: a connection (tcp) or request (http)
// takes a slot on its backend when it is dispatched (Backend.take) and
// gives it back when it ends (Balancer.release). One that finds every
// backend the algorithm may choose full waits in its loop's slotQueue,
// oldest first, until a slot frees or queue_timeout passes: then it is
// turned away, a reset in tcp mode, 503 in http mode, as HAProxy's
// timeout queue.
//
// A slot may free on any loop. The queue's loop learns of it by a knock
// (evloop.Group.Wake) from the loop that gave the slot back, whenever
// any loop has something queued: the balancer's count of queued is raised
// before a waiter's last look for a slot and lowered only once it has
// left the queue, so either the look finds the slot or the release sees
// the count and knocks.

// slotWaiter is what waits in a slotQueue: a tcp pair or an http client.
type slotWaiter interface {
	// redispatch tries the backends again: it takes a slot, or queues
	// the waiter again (slotQueue.add), or turns the client away.
	redispatch()
	// queueTimedOut turns the client away: no slot came in time.
	queueTimedOut()
}

// slotQueue is one loop's waiters for a backend slot, oldest first.
type slotQueue struct {
	b        *Balancer
	items    []queuedWaiter
	retrying slotWaiter // the head, while serve gives it another try
	requeued bool       // the head found no slot again
	recheck  bool       // a waiter came: look once more before sleeping
}

type queuedWaiter struct {
	w     slotWaiter
	until time.Time
}

// add queues w, which found no backend with a free slot, until
// queue_timeout from now; or, when w is the head serve is retrying, keeps
// it at the head with its time.
func (q *slotQueue) add(w slotWaiter, now time.Time) {
	if w == q.retrying {
		q.requeued = true
		return
	}
	q.b.waiting.Add(1)
	raiseMax(&q.b.waitingMax, q.b.waiting.Load())
	q.items = append(q.items, queuedWaiter{w, now.Add(q.b.Config().QueueTimeout)})
	// A slot may have freed between w's look and the count's raise, with
	// nobody knocking for it: look again at the end of this round.
	q.recheck = true
}

// remove takes w out of the queue, if it is there: its client left.
func (q *slotQueue) remove(w slotWaiter) {
	if i := slices.IndexFunc(q.items, func(x queuedWaiter) bool { return x.w == w }); i >= 0 {
		q.items = slices.Delete(q.items, i, i+1)
		q.b.waiting.Add(-1)
	}
}

// next is when the queue's loop must run serve: at once after a waiter
// came, by the first queue timeout, or zero for an empty queue. A slot
// freed elsewhere knocks.
func (q *slotQueue) next(now time.Time) time.Time {
	switch {
	case len(q.items) == 0:
		return time.Time{}
	case q.recheck:
		return now
	}
	first := q.items[0].until
	for _, it := range q.items[1:] {
		if it.until.Before(first) {
			first = it.until
		}
	}
	return first
}

// serve turns away the waiters past their time, then gives the oldest
// another try, and the next, until one finds no slot: those behind it
// would not either.
func (q *slotQueue) serve(now time.Time) {
	q.recheck = false
	for len(q.items) > 0 {
		i := slices.IndexFunc(q.items, func(x queuedWaiter) bool { return now.After(x.until) })
		if i < 0 {
			break
		}
		w := q.items[i].w
		q.remove(w)
		w.queueTimedOut()
	}
	for len(q.items) > 0 {
		head := q.items[0].w
		q.retrying, q.requeued = head, false
		head.redispatch()
		q.retrying = nil
		if q.requeued {
			return
		}
		q.remove(head)
	}
}

// setMaxConn changes be's maxconn, as the admin API asks; a raised one
// has slots for those waiting.
func (b *Balancer) setMaxConn(be *Backend, n int) {
	be.maxConn.Store(int64(n))
	if b.waiting.Load() > 0 {
		b.loops.Wake()
	}
}

// Waiting is how many connections or requests wait for a backend's slot
// now, and the most that ever did at once: HAProxy's backend queue.
func (b *Balancer) Waiting() (now, most int64) {
	now = b.waiting.Load()
	return now, max(now, b.waitingMax.Load())
}

// release gives back the slot a connection or request held on be, from
// loop l, and knocks on every loop when something waits for one.
func (b *Balancer) release(l *evloop.Loop, be *Backend) {
	be.Active.Add(-1)
	if b.waiting.Load() > 0 {
		l.WakeAll()
	}
}
