package bench

import (
	"strconv"
	"time"
)

// Summary is everything a run measured: the in-memory result and, through
// its tags, the JSON document. Times are in milliseconds unless named
// otherwise; counts are requests; sizes are bytes.
type Summary struct {
	// Label names the system measured, in a matrix or a lab report.
	Label string `json:"label,omitempty"`

	URL            string `json:"url"`
	ServerSoftware string `json:"server_software"`
	ServerHostname string `json:"server_hostname"`
	ServerPort     int    `json:"server_port"`
	DocumentPath   string `json:"document_path"`
	// VariableLength is -l: lengths were not held to the first's, and
	// ab's report says "Variable" for the document's length.
	VariableLength bool    `json:"variable_length,omitempty"`
	DocumentLength int64   `json:"document_length"`
	Concurrency    int     `json:"concurrency"`
	KeepAlive      bool    `json:"keep_alive"`
	Rate           float64 `json:"rate,omitempty"` // requests/s asked for, in an open-model run

	TimeTaken float64 `json:"time_taken_s"` // first request to last response, in seconds
	Complete  int64   `json:"complete"`     // responses received, whole or not
	Failed    int64   `json:"failed"`       // Connect + Receive + Length + Exceptions
	Failures  struct {
		Connect int64 `json:"connect"`
		Receive int64 `json:"receive"`
		// Refused are the receive failures that were connects refused:
		// ab counts those as receive errors (its connect does not wait),
		// JSON tells them apart.
		Refused    int64 `json:"refused"`
		Length     int64 `json:"length"`
		Exceptions int64 `json:"exceptions"`
	} `json:"failures"`
	WriteErrors       int64 `json:"write_errors"`
	Non2xx            int64 `json:"non_2xx"`
	KeepAliveRequests int64 `json:"keep_alive_requests"`
	TotalTransferred  int64 `json:"total_transferred"` // every byte received
	HTMLTransferred   int64 `json:"html_transferred"`  // the bodies' bytes
	TotalBodySent     int64 `json:"total_body_sent"`

	RequestsPerSecond float64 `json:"requests_per_second"`
	TimePerRequest    float64 `json:"time_per_request_ms"`     // mean, per concurrent user
	TimePerRequestAll float64 `json:"time_per_request_all_ms"` // mean, across all concurrent requests
	TransferRate      float64 `json:"transfer_rate_kbps"`      // Kbytes/sec received

	Connect    Timing `json:"connect"`
	Processing Timing `json:"processing"`
	Waiting    Timing `json:"waiting"`
	Total      Timing `json:"total"`
	// Handshake is the TLS handshakes' times (within Connect), over the
	// connections that made one; nil without TLS.
	Handshake *Timing `json:"handshake,omitempty"`
	// TLS is what ab prints of the first handshake; nil without TLS.
	TLS *TLSInfo `json:"tls,omitempty"`
	// Percentiles is ab's table: the total time within which each share
	// of the requests was served.
	Percentiles []Percentile `json:"percentiles"`

	// Start is when the first request was sent; Timeline (with
	// Work.Interval) counts what ended in each interval after it.
	Start    time.Time `json:"start"`
	Timeline []Slice   `json:"timeline,omitempty"`

	// Aborted is ab's message when the run ended early.
	Aborted string `json:"aborted,omitempty"`

	// Distribution is the total time within which each whole percent of
	// the requests was served, 0 % (the fastest) to 100 % (the slowest):
	// ab's -e file.
	Distribution []float64 `json:"distribution_ms,omitempty"`
	// Samples are every request's timings, with Work.KeepSamples: ab's -g
	// file.
	Samples []Sample `json:"-"`
}

// Sample is one completed request's timings, in microseconds, as ab
// keeps them: connect (zero on a reused connection), waiting (from the
// request written to the first byte) and total.
type Sample struct {
	Start                   time.Time
	Connect, Waiting, Total int64
}

// Percentile is one row of ab's "Percentage of the requests served" table.
type Percentile struct {
	Percent int     `json:"percent"`
	Ms      float64 `json:"ms"`
}

func (r *run) summarize(stats []workerStats) *Summary {
	s := &Summary{
		URL: r.w.URL, ServerHostname: r.t.host, ServerPort: r.t.port, DocumentPath: r.t.path, VariableLength: r.w.VariableLength,
		Concurrency: r.w.Concurrency, KeepAlive: r.w.KeepAlive, Rate: r.w.Rate, Aborted: r.abortMsg,
		Start: r.start,
	}
	if r.coll.timeline != nil {
		s.Timeline = r.coll.timeline.slices
	}
	if p := r.server.Load(); p != nil {
		s.ServerSoftware = *p
	}
	s.DocumentLength = max(r.docLen.Load(), 0)
	last := r.start
	for _, ws := range stats {
		s.Complete += ws.complete
		s.Failures.Connect += ws.connectErr
		s.Failures.Receive += ws.recvErr
		s.Failures.Refused += ws.refused
		s.Failures.Length += ws.lengthErr
		s.Failures.Exceptions += ws.exceptions
		s.WriteErrors += ws.writeErr
		s.Non2xx += ws.non2xx
		s.KeepAliveRequests += ws.keepAlive
		s.TotalTransferred += ws.totalRead
		s.HTMLTransferred += ws.htmlRead
		s.TotalBodySent += ws.bodySent
		if ws.last.After(last) {
			last = ws.last
		}
	}
	if r.abortMsg != "" {
		last = time.Now()
	}
	f := &s.Failures
	s.Failed = f.Connect + f.Receive + f.Length + f.Exceptions
	s.TimeTaken = last.Sub(r.start).Seconds()
	if s.TimeTaken > 0 && s.Complete > 0 {
		s.RequestsPerSecond = float64(s.Complete) / s.TimeTaken
		s.TimePerRequest = float64(s.Concurrency) * s.TimeTaken * 1000 / float64(s.Complete)
		s.TimePerRequestAll = s.TimeTaken * 1000 / float64(s.Complete)
		s.TransferRate = float64(s.TotalTransferred) / 1024 / s.TimeTaken
	}
	c := r.coll
	s.Connect, s.Processing, s.Waiting, s.Total = c.connect.timing(), c.processing.timing(), c.waiting.timing(), c.total.timing()
	if c.handshake.n > 0 {
		h := c.handshake.timing()
		s.Handshake = &h
	}
	s.TLS = r.tls.Load()
	if c.total.n > 0 {
		for _, p := range abPercents {
			s.Percentiles = append(s.Percentiles, Percentile{Percent: p, Ms: float64(c.total.percent(p)) / 1000})
		}
		for p := range 101 {
			s.Distribution = append(s.Distribution, float64(c.total.percent(p))/1000)
		}
	}
	for _, x := range c.samples {
		s.Samples = append(s.Samples, Sample{Start: x.start, Connect: x.connect, Waiting: x.waiting, Total: x.total})
	}
	return s
}

// Levels parses ab's -c extended to a list: "10" or "1,5,10,30".
func Levels(spec string) ([]int, error) {
	var levels []int
	start := 0
	for i := 0; i <= len(spec); i++ {
		if i < len(spec) && spec[i] != ',' {
			continue
		}
		n, err := strconv.Atoi(spec[start:i])
		if err != nil || n < 1 {
			return nil, usage("-c %q: want a positive number or a list like 1,5,10", spec)
		}
		levels = append(levels, n)
		start = i + 1
	}
	return levels, nil
}
