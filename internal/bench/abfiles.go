package bench

import (
	"fmt"
	"html"
	"io"
	"slices"
)

// WritePercentileCSV writes ab's -e file: the total time within which each
// whole percent of the requests was served, 0 to 100 as ab's rows. (ab's
// own column reads the connect times of the requests in total-time order,
// which is why its figures are not monotonic; these are total times.)
func WritePercentileCSV(out io.Writer, s *Summary) {
	fmt.Fprintln(out, "Percentage served,Time in ms")
	for i, ms := range s.Distribution {
		fmt.Fprintf(out, "%d,%.3f\n", i, ms)
	}
}

// aprCtime is APR's apr_ctime, which ab's -g file dates with: time.ANSIC
// but with the day of the month zero-padded ("Thu Dec 03", not "Thu Dec  3").
const aprCtime = "Mon Jan 02 15:04:05 2006"

// WriteGnuplot writes ab's -g file: one line per request, sorted by total
// time as ab leaves them. It needs Work.KeepSamples.
func WriteGnuplot(out io.Writer, s *Summary) {
	fmt.Fprintln(out, "starttime\tseconds\tctime\tdtime\tttime\twait")
	samples := slices.Clone(s.Samples)
	slices.SortFunc(samples, func(a, b Sample) int { return int(a.Total - b.Total) })
	ms := func(us int64) int64 { return (us + 500) / 1000 }
	for _, x := range samples {
		fmt.Fprintf(out, "%s\t%d\t%d\t%d\t%d\t%d\n", x.Start.Format(aprCtime), x.Start.Unix(),
			ms(x.Connect), ms(x.Total-x.Connect), ms(x.Total), ms(x.Waiting))
	}
}

// HTMLAttrs are ab's -x, -y and -z: attributes for the HTML report's
// table, its rows, and its cells (ab's default for cells: bgcolor=white).
type HTMLAttrs struct{ Table, TR, TD string }

// DefaultTD is ab's -z when none is given.
const DefaultTD = "bgcolor=white"

// WriteHTML writes the results as ab's -w does, tag for tag: an HTML
// table with the attributes of -x, -y and -z.
func WriteHTML(out io.Writer, s *Summary, a HTMLAttrs) {
	tr, td := a.TR, a.TD
	p := func(format string, args ...any) { fmt.Fprintf(out, format, args...) }
	row := func(name, value string) {
		p("<tr %s><th colspan=2 %s>%s</th><td colspan=2 %s>%s</td></tr>\n", tr, td, name, td, html.EscapeString(value))
	}
	extra := func(value string) {
		p("<tr %s><td colspan=2 %s>&nbsp;</td><td colspan=2 %s>%s</td></tr>\n", tr, td, td, value)
	}
	p("\n\n<table %s>\n", a.Table)
	row("Server Software:", s.ServerSoftware)
	row("Server Hostname:", s.ServerHostname)
	row("Server Port:", fmt.Sprint(s.ServerPort))
	row("Document Path:", s.DocumentPath)
	row("Document Length:", fmt.Sprintf("%d bytes", s.DocumentLength))
	row("Concurrency Level:", fmt.Sprint(s.Concurrency))
	row("Time taken for tests:", fmt.Sprintf("%.3f seconds", s.TimeTaken))
	row("Complete requests:", fmt.Sprint(s.Complete))
	row("Failed requests:", fmt.Sprint(s.Failed))
	if s.Failed > 0 { // ab's HTML leaves Receive out of the breakdown
		f := s.Failures
		p("<tr %s><td colspan=4 %s >   (Connect: %d, Length: %d, Exceptions: %d)</td></tr>\n", tr, td, f.Connect, f.Length, f.Exceptions)
	}
	if s.Non2xx > 0 {
		row("Non-2xx responses:", fmt.Sprint(s.Non2xx))
	}
	if s.KeepAlive {
		row("Keep-Alive requests:", fmt.Sprint(s.KeepAliveRequests))
	}
	row("Total transferred:", fmt.Sprintf("%d bytes", s.TotalTransferred))
	if s.TotalBodySent > 0 {
		row("Total body sent:", fmt.Sprint(s.TotalBodySent))
	}
	row("HTML transferred:", fmt.Sprintf("%d bytes", s.HTMLTransferred))
	if s.TimeTaken > 0 {
		row("Requests per second:", fmt.Sprintf("%.2f", s.RequestsPerSecond))
		row("Transfer rate:", fmt.Sprintf("%.2f kb/s received", s.TransferRate))
		if s.TotalBodySent > 0 {
			extra(fmt.Sprintf("%.2f kb/s sent", float64(s.TotalBodySent)/s.TimeTaken/1024))
			extra(fmt.Sprintf("%.2f kb/s total", float64(s.TotalTransferred+s.TotalBodySent)/s.TimeTaken/1024))
		}
	}
	p("<tr %s><th %s colspan=4>Connection Times (ms)</th></tr>\n", tr, td)
	p("<tr %s><th %s>&nbsp;</th> <th %s>min</th>   <th %s>avg</th>   <th %s>max</th></tr>\n", tr, td, td, td, td)
	for _, r := range []struct {
		name          string
		min, avg, max float64
	}{
		{"Connect:", s.Connect.Min, s.Connect.Mean, s.Connect.Max},
		// As ab's: processing is total less connect, figure by figure.
		{"Processing:", s.Total.Min - s.Connect.Min, s.Total.Mean - s.Connect.Mean, s.Total.Max - s.Connect.Max},
		{"Total:", s.Total.Min, s.Total.Mean, s.Total.Max},
	} {
		p("<tr %s><th %s>%s</th><td %s>%5d</td><td %s>%5d</td><td %s>%5d</td></tr>\n", tr, td, r.name, td, roundMs(r.min), td, roundMs(r.avg), td, roundMs(r.max))
	}
	p("</table>\n")
}
