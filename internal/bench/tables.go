package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// labColumns are the seed's table headings, in its order.
var labColumns = []string{
	"No test", "Concurrency level", "Time taken for test (seconds)", "Complete request", "Failed request",
	"Total transferred (bytes)", "Request per second", "Time per request (ms)", "Transfer rate (Kbytes/sec)",
}

// LabRow is one row of the seed's table: its cells in the seed's number
// formats. Time per request is ab's "mean, across all concurrent
// requests" figure, as in the seed.
func LabRow(no int, s *Summary) []string {
	return []string{
		strconv.Itoa(no), strconv.Itoa(s.Concurrency), fmt.Sprintf("%.3f", s.TimeTaken),
		strconv.FormatInt(s.Complete, 10), strconv.FormatInt(s.Failed, 10), strconv.FormatInt(s.TotalTransferred, 10),
		fmt.Sprintf("%.2f", s.RequestsPerSecond), fmt.Sprintf("%.3f", s.TimePerRequestAll), fmt.Sprintf("%.2f", s.TransferRate),
	}
}

// BlankLabRow is a row the seed left empty: its number, its level, dashes.
func BlankLabRow(no, concurrency int) []string {
	row := []string{strconv.Itoa(no), strconv.Itoa(concurrency)}
	for len(row) < len(labColumns) {
		row = append(row, "-")
	}
	return row
}

// WriteLabTable writes rows as the seed's markdown table: its nine
// headings, a centred alignment row, and every cell centred in its
// column's width, as the seed has them.
func WriteLabTable(out io.Writer, rows [][]string) {
	writeCentredTable(out, labColumns, rows)
}

func writeCentredTable(out io.Writer, headings []string, rows [][]string) {
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			b.WriteString(centre(c, len(headings[i])+2) + "|")
		}
		fmt.Fprintln(out, b.String())
	}
	line(headings)
	var b strings.Builder
	b.WriteString("|")
	for _, h := range headings {
		b.WriteString(":" + strings.Repeat("-", len(h)) + ":|")
	}
	fmt.Fprintln(out, b.String())
	for _, r := range rows {
		line(r)
	}
}

// centre pads s to width, the odd space going to the left as in the seed.
func centre(s string, width int) string {
	pad := width - len(s)
	if pad <= 0 {
		return " " + s + " "
	}
	right := pad / 2
	return strings.Repeat(" ", pad-right) + s + strings.Repeat(" ", right)
}

// extendedColumns carry what the seed's table leaves out.
var extendedColumns = []string{
	"No test", "Concurrency level", "Time per request (ms, mean)", "Time per request (ms, across all)",
	"p50 (ms)", "p90 (ms)", "p99 (ms)", "max (ms)", "Failed: connect/receive/length/exceptions", "Non-2xx",
}

// ExtendedRow is one row of the extended table.
func ExtendedRow(no int, s *Summary) []string {
	f := s.Failures
	return []string{
		strconv.Itoa(no), strconv.Itoa(s.Concurrency), fmt.Sprintf("%.3f", s.TimePerRequest), fmt.Sprintf("%.3f", s.TimePerRequestAll),
		fmt.Sprintf("%.3f", s.Total.Median), fmt.Sprintf("%.3f", s.Total.P90), fmt.Sprintf("%.3f", s.Total.P99), fmt.Sprintf("%.3f", s.Total.Max),
		fmt.Sprintf("%d/%d/%d/%d", f.Connect, f.Receive, f.Length, f.Exceptions), strconv.FormatInt(s.Non2xx, 10),
	}
}

// WriteExtendedTable writes the extended table for rows made by ExtendedRow.
func WriteExtendedTable(out io.Writer, rows [][]string) {
	writeCentredTable(out, extendedColumns, rows)
}

// WriteMarkdown writes runs as the lab's table and, under it, the extended one.
func WriteMarkdown(out io.Writer, runs []*Summary) {
	var lab, ext [][]string
	for i, s := range runs {
		lab = append(lab, LabRow(i+1, s))
		ext = append(ext, ExtendedRow(i+1, s))
	}
	WriteLabTable(out, lab)
	fmt.Fprintln(out)
	WriteExtendedTable(out, ext)
}

// WriteJSON writes every figure of every run.
func WriteJSON(out io.Writer, runs []*Summary) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Runs []*Summary `json:"runs"`
	}{runs})
}

// csvColumns name the CSV's columns; csvRow fills them.
var csvColumns = []string{
	"label", "url", "concurrency", "keep_alive", "rate", "time_taken_s", "complete", "failed",
	"failed_connect", "failed_receive", "failed_length", "failed_exceptions", "non_2xx", "keep_alive_requests",
	"total_transferred", "html_transferred", "document_length", "requests_per_second", "time_per_request_ms",
	"time_per_request_all_ms", "transfer_rate_kbps", "connect_mean_ms", "waiting_mean_ms", "total_min_ms",
	"total_mean_ms", "total_sd_ms", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "p99_99_ms", "total_max_ms",
}

func csvRow(s *Summary) []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{
		s.Label, s.URL, strconv.Itoa(s.Concurrency), strconv.FormatBool(s.KeepAlive), f(s.Rate), f(s.TimeTaken),
		i(s.Complete), i(s.Failed), i(s.Failures.Connect), i(s.Failures.Receive), i(s.Failures.Length),
		i(s.Failures.Exceptions), i(s.Non2xx), i(s.KeepAliveRequests), i(s.TotalTransferred), i(s.HTMLTransferred),
		i(s.DocumentLength), f(s.RequestsPerSecond), f(s.TimePerRequest), f(s.TimePerRequestAll), f(s.TransferRate),
		f(s.Connect.Mean), f(s.Waiting.Mean), f(s.Total.Min), f(s.Total.Mean), f(s.Total.SD), f(s.Total.Median),
		f(s.Total.P90), f(s.Total.P99), f(s.Total.P999), f(s.Total.P9999), f(s.Total.Max),
	}
}

// WriteCSV writes one row per run under a header row.
func WriteCSV(out io.Writer, runs []*Summary) error {
	w := csv.NewWriter(out)
	w.Write(csvColumns)
	for _, s := range runs {
		w.Write(csvRow(s))
	}
	w.Flush()
	return w.Error()
}
