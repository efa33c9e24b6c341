package bench

import (
	"fmt"
	"io"
	"math"
)

// roundMs rounds milliseconds to a whole number, as ab's ap_round_ms does
// with microseconds.
func roundMs(ms float64) int64 { return int64(math.Floor(ms + 0.5)) }

// TextOptions are ab's switches of its report.
type TextOptions struct {
	NoPercentiles bool // -d: no table of the percentage served within a time
	NoConfidence  bool // -S: min, avg and max only, and no warnings of unreliable figures
}

// WriteText writes s as ab 2.3 prints its results, line for line, from the
// two blank lines before "Server Software" to the percentage table, and
// then the tail ab leaves out: p99.9 and p99.99 from the HDR histogram.
func WriteText(out io.Writer, s *Summary, opts TextOptions) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format, args...) }
	p("\n\n")
	p("Server Software:        %s\n", s.ServerSoftware)
	p("Server Hostname:        %s\n", s.ServerHostname)
	p("Server Port:            %d\n", s.ServerPort)
	if t := s.TLS; t != nil {
		p("SSL/TLS Protocol:       %s\n", t.Protocol)
		if t.TempKey != "" {
			p("Server Temp Key:        %s\n", t.TempKey)
		}
		if t.ServerName != "" {
			p("TLS Server Name:        %s\n", t.ServerName)
		}
	}
	p("\n")
	p("Document Path:          %s\n", s.DocumentPath)
	if s.VariableLength {
		p("Document Length:        Variable\n")
	} else {
		p("Document Length:        %d bytes\n", s.DocumentLength)
	}
	p("\n")
	p("Concurrency Level:      %d\n", s.Concurrency)
	p("Time taken for tests:   %.3f seconds\n", s.TimeTaken)
	p("Complete requests:      %d\n", s.Complete)
	p("Failed requests:        %d\n", s.Failed)
	if s.Failed > 0 {
		f := s.Failures
		p("   (Connect: %d, Receive: %d, Length: %d, Exceptions: %d)\n", f.Connect, f.Receive, f.Length, f.Exceptions)
	}
	if s.WriteErrors > 0 {
		p("Write errors:           %d\n", s.WriteErrors)
	}
	if s.Non2xx > 0 {
		p("Non-2xx responses:      %d\n", s.Non2xx)
	}
	if s.KeepAlive {
		p("Keep-Alive requests:    %d\n", s.KeepAliveRequests)
	}
	p("Total transferred:      %d bytes\n", s.TotalTransferred)
	if s.TotalBodySent > 0 {
		p("Total body sent:        %d\n", s.TotalBodySent)
	}
	p("HTML transferred:       %d bytes\n", s.HTMLTransferred)
	if s.TimeTaken > 0 && s.Complete > 0 {
		p("Requests per second:    %.2f [#/sec] (mean)\n", s.RequestsPerSecond)
		p("Time per request:       %.3f [ms] (mean)\n", s.TimePerRequest)
		p("Time per request:       %.3f [ms] (mean, across all concurrent requests)\n", s.TimePerRequestAll)
		p("Transfer rate:          %.2f [Kbytes/sec] received\n", s.TransferRate)
		if s.TotalBodySent > 0 {
			p("                        %.2f kb/s sent\n", float64(s.TotalBodySent)/s.TimeTaken/1024)
			p("                        %.2f kb/s total\n", float64(s.TotalTransferred+s.TotalBodySent)/s.TimeTaken/1024)
		}
	}
	if s.Complete == 0 {
		return
	}
	p("\nConnection Times (ms)\n")
	if opts.NoConfidence {
		// ab's -S: its Processing row is total less connect, figure by figure.
		p("              min   avg   max\n")
		p("Connect:    %5d %5d %4d\n", roundMs(s.Connect.Min), roundMs(s.Connect.Mean), roundMs(s.Connect.Max))
		p("Processing: %5d %5d %4d\n", roundMs(s.Total.Min-s.Connect.Min), roundMs(s.Total.Mean-s.Connect.Mean), roundMs(s.Total.Max-s.Connect.Max))
		p("Waiting:    %5d %5d %4d\n", roundMs(s.Waiting.Min), roundMs(s.Waiting.Mean), roundMs(s.Waiting.Max))
		p("Total:      %5d %5d %4d\n", roundMs(s.Total.Min), roundMs(s.Total.Mean), roundMs(s.Total.Max))
		writePercentTable(out, s, opts)
		return
	}
	p("              min  mean[+/-sd] median   max\n")
	rows := []struct {
		label string
		t     Timing
		what  string
	}{
		{"Connect:    ", s.Connect, "the initial connection time"},
		{"Processing: ", s.Processing, "the processing time"},
		{"Waiting:    ", s.Waiting, "the waiting time"},
		{"Total:      ", s.Total, "the total time"},
	}
	for _, r := range rows {
		p("%s%5d %4d %5.1f %6d %7d\n", r.label, roundMs(r.t.Min), roundMs(r.t.Mean), r.t.SD, roundMs(r.t.Median), roundMs(r.t.Max))
	}
	for _, r := range rows { // ab's sanity check of its own figures
		d := math.Abs(float64(roundMs(r.t.Mean) - roundMs(r.t.Median)))
		if d > 2*r.t.SD {
			p("ERROR: The median and mean for %s are more than twice the standard\n       deviation apart. These results are NOT reliable.\n", r.what)
		} else if d > r.t.SD {
			p("WARNING: The median and mean for %s are not within a normal deviation\n        These results are probably not that reliable.\n", r.what)
		}
	}
	writePercentTable(out, s, opts)
}

// writePercentTable ends the report: ab's percentage table (unless -d),
// then the tail ab leaves out, and the timeline when one was kept.
func writePercentTable(out io.Writer, s *Summary, opts TextOptions) {
	p := func(format string, args ...any) { fmt.Fprintf(out, format, args...) }
	if s.Complete > 1 && !opts.NoPercentiles {
		p("\nPercentage of the requests served within a certain time (ms)\n")
		for _, pc := range s.Percentiles {
			if pc.Percent >= 100 {
				p(" 100%%  %5d (longest request)\n", roundMs(pc.Ms))
			} else {
				p("  %d%%  %5d\n", pc.Percent, roundMs(pc.Ms))
			}
		}
	}
	p("\nTail (HDR histogram, µs resolution): 99.9%% %.3f ms, 99.99%% %.3f ms\n", s.Total.P999, s.Total.P9999)
	writeTimeline(out, s.Timeline)
}

// writeTimeline prints the timeline, one line per interval, when the run
// kept one (--timeline).
func writeTimeline(out io.Writer, slices []Slice) {
	if len(slices) == 0 {
		return
	}
	fmt.Fprintf(out, "\nTimeline (what ended in each interval)\n")
	fmt.Fprintf(out, "%10s %10s %8s %8s\n", "at [ms]", "completed", "failed", "non-2xx")
	for _, sl := range slices {
		fmt.Fprintf(out, "%10d %10d %8d %8d\n", sl.AtMs, sl.Completed, sl.Failed, sl.Non2xx)
	}
}
