package report

import (
	"bytes"
	"encoding/base64"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/renderer/html"
)

// writeHTML writes index.html: everything REPORT.md holds, on one page
// that needs no network and no other file — the charts inline SVG, the
// screenshots inline PNG, the configuration folded away — with links to
// runs/ and the results files beside it.
func writeHTML(w io.Writer, res *Results, dir string, charts []chart) error {
	var md bytes.Buffer
	if err := writeMarkdown(&md, res, charts); err != nil {
		return err
	}
	var body bytes.Buffer
	conv := goldmark.New(goldmark.WithExtensions(extension.Table), goldmark.WithRendererOptions(html.WithUnsafe()))
	if err := conv.Convert(md.Bytes(), &body); err != nil {
		return err
	}
	page := tableTag.ReplaceAll(body.Bytes(), []byte(`<table class="results">`))
	var err error
	page = image.ReplaceAllFunc(page, func(tag []byte) []byte {
		m := image.FindSubmatch(tag)
		src, alt := string(m[1]), string(m[2])
		switch filepath.Dir(src) {
		case "charts":
			svg, rerr := os.ReadFile(filepath.Join(dir, "charts", trimExt(filepath.Base(src))+".svg"))
			if rerr != nil {
				err = rerr
				return tag
			}
			if i := bytes.Index(svg, []byte("<svg")); i > 0 {
				svg = svg[i:] // drop the XML prologue: the page is HTML
			}
			return append(append([]byte(`<figure class="chart"><figcaption>`+template.HTMLEscapeString(alt)+`</figcaption>`), svg...), "</figure>"...)
		case "screenshots":
			png, rerr := os.ReadFile(filepath.Join(dir, src))
			if rerr != nil {
				return tag // taken after the report was written (index.png): leave the link
			}
			return []byte(`<img src="data:image/png;base64,` + base64.StdEncoding.EncodeToString(png) + `" alt="` + template.HTMLEscapeString(alt) + `">`)
		}
		return tag
	})
	if err != nil {
		return err
	}
	return pageTemplate.Execute(w, template.HTML(page))
}

var (
	tableTag = regexp.MustCompile(`<table>`)
	image    = regexp.MustCompile(`<img src="([^"]+)" alt="([^"]*)"\s*/?>`)
)

func trimExt(name string) string { return name[:len(name)-len(filepath.Ext(name))] }

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>loadlab lab report</title>
<style>
body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em;line-height:1.4}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #bbb;padding:.25em .5em;text-align:center}
th{background:#eee}figure{margin:2em 0}svg{max-width:100%;height:auto}img{max-width:100%}
details{margin:1em 0}summary{cursor:pointer;font-weight:bold}pre{background:#f6f6f6;padding:1em;overflow:auto}
</style></head><body>
{{.}}
</body></html>
`))
