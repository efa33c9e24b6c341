package bench

import (
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// sample is one completed request's timings, in microseconds, as ab keeps
// them: connect (zero on a reused connection), waiting (from the request
// written to the first byte) and total.
type sample struct {
	start     time.Time
	connect   int64
	handshake int64 // TLS, within connect; 0 when none was made
	waiting   int64
	total     int64
	non2xx    bool
}

// series folds one timing: exact sums for mean and deviation, an HDR
// histogram (1 µs to 1 h, 3 significant digits) for the percentiles.
type series struct {
	n, sum   int64
	sumSq    float64
	min, max int64
	hist     *hdrhistogram.Histogram
}

func newSeries() *series {
	return &series{min: math.MaxInt64, hist: hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)}
}

func (s *series) add(v int64) {
	v = max(v, 0)
	s.n++
	s.sum += v
	s.sumSq += float64(v) * float64(v)
	s.min = min(s.min, v)
	s.max = max(s.max, v)
	s.hist.RecordValue(max(v, 1))
}

// collector gathers samples from every worker. Workers hand them over in
// batches, so the lock is taken once per batch, not per request.
type collector struct {
	mu                                  sync.Mutex
	connect, processing, waiting, total *series
	handshake                           *series // only connections that made one
	keep                                bool    // keep every sample, for ab's -g
	samples                             []sample
	timeline                            *timeline // nil unless asked for
}

func newCollector(keep bool) *collector {
	return &collector{connect: newSeries(), processing: newSeries(), waiting: newSeries(), total: newSeries(), handshake: newSeries(), keep: keep}
}

func (c *collector) add(batch []sample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range batch {
		c.connect.add(s.connect)
		c.processing.add(s.total - s.connect)
		c.waiting.add(s.waiting)
		c.total.add(s.total)
		if s.handshake > 0 {
			c.handshake.add(s.handshake)
		}
		if c.timeline != nil {
			c.timeline.completed(s.start.Add(time.Duration(s.total)*time.Microsecond), s.non2xx)
		}
	}
	if c.keep {
		c.samples = append(c.samples, batch...)
	}
}

// failedAt counts a failed attempt in the timeline, if there is one.
// Failures are few next to completions, so each takes the lock.
func (c *collector) failedAt(t time.Time) {
	if c.timeline == nil {
		return
	}
	c.mu.Lock()
	c.timeline.failed(t)
	c.mu.Unlock()
}

// recorder is a worker's own batch of samples.
type recorder struct {
	batch []sample
	to    *collector
}

const batchSize = 256

func (r *recorder) record(s sample) {
	r.batch = append(r.batch, s)
	if len(r.batch) == batchSize {
		r.flush()
	}
}

func (r *recorder) flush() {
	if len(r.batch) > 0 {
		r.to.add(r.batch)
		r.batch = r.batch[:0]
	}
}

// Timing summarizes one of ab's four times, in milliseconds.
type Timing struct {
	Min    float64 `json:"min_ms"`
	Mean   float64 `json:"mean_ms"`
	SD     float64 `json:"sd_ms"`
	Median float64 `json:"median_ms"`
	Max    float64 `json:"max_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	P999   float64 `json:"p99_9_ms"`
	P9999  float64 `json:"p99_99_ms"`
}

func (s *series) timing() Timing {
	if s.n == 0 {
		return Timing{}
	}
	mean := float64(s.sum) / float64(s.n)
	var sd float64
	if s.n > 1 { // the sample deviation, as ab's
		sd = math.Sqrt(math.Max(0, (s.sumSq-float64(s.n)*mean*mean)/float64(s.n-1)))
	}
	q := func(p float64) float64 { return float64(s.at(p)) / 1000 }
	return Timing{
		Min: float64(s.min) / 1000, Mean: mean / 1000, SD: sd / 1000, Median: q(50), Max: float64(s.max) / 1000,
		P90: q(90), P99: q(99), P999: q(99.9), P9999: q(99.99),
	}
}

// at returns the value below which p percent of the values fall. The
// histogram answers with the top of the bucket the value is in, which can
// lie past the largest value recorded: kept between the true min and max,
// a percentile never exceeds the maximum (nor falls below the minimum).
func (s *series) at(p float64) int64 {
	return min(max(s.hist.ValueAtQuantile(p), s.min), s.max)
}

// percent is at for a whole percent, as ab reads its sorted times: 0 is
// the minimum, 100 the maximum.
func (s *series) percent(p int) int64 {
	switch p {
	case 0:
		return s.min
	case 100:
		return s.max
	}
	return s.at(float64(p))
}

// abPercents are the rows of ab's "Percentage of the requests served" table.
var abPercents = []int{50, 66, 75, 80, 90, 95, 98, 99, 100}
