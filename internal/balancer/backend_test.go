package balancer

import (
	"testing"
	"time"
)

func TestLatencyHistogram(t *testing.T) {
	be := backends(1)[0]
	for _, d := range []time.Duration{50 * time.Microsecond, 200 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 20 * time.Second} {
		be.observe(d)
	}
	count, sum, buckets := be.LatencyHistogram()
	if count != 5 || sum < 19.8 || sum > 20.2 { // two significant figures per value
		t.Errorf("count %d sum %.4f s, want 5 and about 20", count, sum)
	}
	for le, want := range map[float64]uint64{.0001: 1, .00025: 2, .001: 2, .005: 4, 10: 4} {
		if buckets[le] != want {
			t.Errorf("le=%g: %d, want %d (%v)", le, buckets[le], want, buckets)
		}
	}
}
