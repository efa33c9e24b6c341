package report

import (
	"bytes"
	"html/template"
	"io"
	"os"
	"path/filepath"

	"loadlab/internal/bench"
)

// writeHTML writes index.html: the tables and charts on one page that
// needs nothing else, no network and no other file (the charts are inline SVG).
func writeHTML(w io.Writer, res *Results, dir string, charts []chart) error {
	type figure struct {
		Title string
		SVG   template.HTML
	}
	var figs []figure
	for _, c := range charts {
		svg, err := os.ReadFile(filepath.Join(dir, "charts", c.name+".svg"))
		if err != nil {
			return err
		}
		if i := bytes.Index(svg, []byte("<svg")); i > 0 {
			svg = svg[i:] // drop the XML prologue: the page is HTML
		}
		figs = append(figs, figure{c.title, template.HTML(svg)})
	}
	type table struct {
		Title, System string
		Head          []string
		Rows          [][]string
	}
	var tables []table
	for _, name := range []string{"async_lb", "thread"} {
		for _, s := range res.Systems {
			if s.LabTable != name {
				continue
			}
			t := table{Title: labTitles[name], System: s.Title}
			var buf bytes.Buffer
			writeLabTable(&buf, s, res.Levels)
			t.Head, t.Rows = splitMarkdown(buf.String())
			tables = append(tables, t)
		}
	}
	for _, s := range res.Systems {
		if s.Skipped != "" {
			tables = append(tables, table{Title: s.Name, System: s.Title + " — skipped: " + s.Skipped})
			continue
		}
		var rows [][]string
		for i, run := range s.Runs {
			rows = append(rows, bench.ExtendedRow(i+1, run))
		}
		var buf bytes.Buffer
		bench.WriteExtendedTable(&buf, rows)
		t := table{Title: s.Name, System: s.Title}
		t.Head, t.Rows = splitMarkdown(buf.String())
		tables = append(tables, t)
	}
	return pageTemplate.Execute(w, struct {
		Results *Results
		Tables  []table
		Figures []figure
	}{res, tables, figs})
}

// splitMarkdown takes a markdown table apart into its header and rows.
func splitMarkdown(md string) ([]string, [][]string) {
	var head []string
	var rows [][]string
	for i, line := range bytes.Split(bytes.TrimSpace([]byte(md)), []byte("\n")) {
		var cells []string
		for _, c := range bytes.Split(bytes.Trim(line, "|"), []byte("|")) {
			cells = append(cells, string(bytes.TrimSpace(c)))
		}
		switch i {
		case 0:
			head = cells
		case 1: // the alignment row
		default:
			rows = append(rows, cells)
		}
	}
	return head, rows
}

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>loadlab lab report</title>
<style>
body{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:.25em .5em;text-align:center}
th{background:#eee}figure{margin:2em 0}svg{max-width:100%;height:auto}
</style></head><body>
<h1>loadlab lab report</h1>
<p>Run on {{.Results.Started.UTC.Format "2006-01-02 15:04 MST"}}: {{.Results.Requests}} requests at each level
{{range $i, $l := .Results.Levels}}{{if $i}}, {{end}}{{$l}}{{end}}, on {{.Results.Machine.CPU}} ({{.Results.Machine.Cores}} cores),
Go {{.Results.Machine.Go}}, loadlab {{.Results.Machine.Loadlab}}.</p>
{{range .Figures}}<figure class="chart"><figcaption>{{.Title}}</figcaption>{{.SVG}}</figure>
{{end}}
{{range .Tables}}<h2>{{.Title}}</h2><p>{{.System}}</p>
{{if .Head}}<table class="results"><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table>{{end}}
{{end}}
<h2>Configuration</h2><pre>{{.Results.ConfigYAML}}</pre>
</body></html>
`))
