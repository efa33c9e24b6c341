package evloop

import "time"

// Deadlines is what a handler's Sweep finds: it asks, connection by
// connection, whether a limit has run out, and keeps the earliest end of
// those that have not, for the loop to sleep until.
type Deadlines struct {
	now, next time.Time
}

// Deadlines starts a sweep at the loop's current time.
func (l *Loop) Deadlines() Deadlines { return Deadlines{now: l.now} }

// Passed reports whether limit has run out since t; if it has not, its
// end is a deadline.
func (d *Deadlines) Passed(t time.Time, limit time.Duration) bool {
	if d.now.Sub(t) > limit {
		return true
	}
	d.Due(t.Add(limit))
	return false
}

// Due notes a deadline at t; d.Soon() for one the sweep cannot place.
func (d *Deadlines) Due(t time.Time) {
	if d.next.IsZero() || t.Before(d.next) {
		d.next = t
	}
}

// Soon notes that something needs the next sweep, whenever it comes
// (within Config.SweepEvery).
func (d *Deadlines) Soon() { d.Due(d.now) }

// Next is the earliest deadline noted, or zero for none: Sweep's answer.
func (d *Deadlines) Next() time.Time { return d.next }
