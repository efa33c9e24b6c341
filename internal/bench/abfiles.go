package bench

import (
	"fmt"
	"html"
	"io"
	"slices"
	"time"
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

// WriteGnuplot writes ab's -g file: one line per request, sorted by total
// time as ab leaves them. It needs Work.KeepSamples.
func WriteGnuplot(out io.Writer, s *Summary) {
	fmt.Fprintln(out, "starttime\tseconds\tctime\tdtime\tttime\twait")
	samples := slices.Clone(s.Samples)
	slices.SortFunc(samples, func(a, b Sample) int { return int(a.Total - b.Total) })
	ms := func(us int64) int64 { return (us + 500) / 1000 }
	for _, x := range samples {
		fmt.Fprintf(out, "%s\t%d\t%d\t%d\t%d\t%d\n", x.Start.Format(time.ANSIC), x.Start.Unix(),
			ms(x.Connect), ms(x.Total-x.Connect), ms(x.Total), ms(x.Waiting))
	}
}

// WriteHTML writes the results as ab's -w does: an HTML table.
func WriteHTML(out io.Writer, s *Summary) {
	row := func(name, value string) {
		fmt.Fprintf(out, "<tr><th colspan=2>%s</th><td colspan=2>%s</td></tr>\n", name, html.EscapeString(value))
	}
	fmt.Fprintln(out, "<table>")
	row("Server Software:", s.ServerSoftware)
	row("Server Hostname:", s.ServerHostname)
	row("Server Port:", fmt.Sprint(s.ServerPort))
	row("Document Path:", s.DocumentPath)
	row("Document Length:", fmt.Sprintf("%d bytes", s.DocumentLength))
	row("Concurrency Level:", fmt.Sprint(s.Concurrency))
	row("Time taken for tests:", fmt.Sprintf("%.3f seconds", s.TimeTaken))
	row("Complete requests:", fmt.Sprint(s.Complete))
	row("Failed requests:", fmt.Sprint(s.Failed))
	if s.Failed > 0 {
		f := s.Failures
		fmt.Fprintf(out, "<tr><td colspan=4>   (Connect: %d, Receive: %d, Length: %d, Exceptions: %d)</td></tr>\n", f.Connect, f.Receive, f.Length, f.Exceptions)
	}
	if s.Non2xx > 0 {
		row("Non-2xx responses:", fmt.Sprint(s.Non2xx))
	}
	if s.KeepAlive {
		row("Keep-Alive requests:", fmt.Sprint(s.KeepAliveRequests))
	}
	row("Total transferred:", fmt.Sprintf("%d bytes", s.TotalTransferred))
	row("HTML transferred:", fmt.Sprintf("%d bytes", s.HTMLTransferred))
	row("Requests per second:", fmt.Sprintf("%.2f", s.RequestsPerSecond))
	row("Transfer rate:", fmt.Sprintf("%.2f kb/s received", s.TransferRate))
	fmt.Fprintln(out, "<tr><th>&nbsp;</th><th>min</th><th>avg</th><th>max</th></tr>")
	for _, r := range []struct {
		name string
		t    Timing
	}{{"Connect:", s.Connect}, {"Processing:", s.Processing}, {"Total:", s.Total}} {
		fmt.Fprintf(out, "<tr><th>%s</th><td>%d</td><td>%d</td><td>%d</td></tr>\n", r.name, roundMs(r.t.Min), roundMs(r.t.Mean), roundMs(r.t.Max))
	}
	fmt.Fprintln(out, "</table>")
}
