package bench

import "time"

// Slice is one interval of a run's timeline: what ended in it. A fault
// injected during a run shows here as the slices whose Failed or Non2xx
// are not zero, and recovery as the first clean slice after them.
type Slice struct {
	AtMs      int64 `json:"at_ms"` // the slice's start, from the run's start
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
	Non2xx    int64 `json:"non_2xx"`
}

// timeline counts completions and failures per interval since the run's
// start. The collector's lock guards it.
type timeline struct {
	origin time.Time
	every  time.Duration
	slices []Slice
}

func (tl *timeline) slice(t time.Time) *Slice {
	i := max(int(t.Sub(tl.origin)/tl.every), 0)
	for len(tl.slices) <= i {
		tl.slices = append(tl.slices, Slice{AtMs: int64(len(tl.slices)) * tl.every.Milliseconds()})
	}
	return &tl.slices[i]
}

func (tl *timeline) completed(end time.Time, non2xx bool) {
	s := tl.slice(end)
	s.Completed++
	if non2xx {
		s.Non2xx++
	}
}

func (tl *timeline) failed(t time.Time) { tl.slice(t).Failed++ }
