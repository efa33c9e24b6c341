package balancer

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"loadlab/internal/tlsx"
)

// FrontendStatus is what the balancer's clients see, as the stats page's
// frontend row shows it.
type FrontendStatus struct {
	Listen      string     `json:"listen"`
	Mode        string     `json:"mode"`
	Active      int64      `json:"active"`     // client connections open now
	MaxActive   int64      `json:"max_active"` // the most open at once
	Total       int64      `json:"total"`      // client connections taken
	Requests    int64      `json:"requests"`   // http: requests answered; tcp: connections
	SessionRate Rate       `json:"session_rate"`
	RequestRate Rate       `json:"request_rate"`
	Queue       int64      `json:"queue"` // connections waiting over max_conns now
	QueueMax    int64      `json:"queue_max"`
	BytesIn     int64      `json:"bytes_in"`  // from clients, as passed on
	BytesOut    int64      `json:"bytes_out"` // to clients, from the backends
	Responses   *Responses `json:"responses,omitempty"`
}

// Frontend is the frontend's figures now.
func (b *Balancer) Frontend(backends []BackendStatus) FrontendStatus {
	cfg := b.Config()
	f := FrontendStatus{Listen: b.Addr().String(), Mode: cfg.Mode, Active: b.fe.cur.Load(), MaxActive: b.fe.max.Load(),
		Total: b.fe.total.Load(), Requests: b.fe.requests.Load(), Queue: int64(b.Queued()), QueueMax: b.fe.queueMax.Load()}
	f.QueueMax = max(f.QueueMax, f.Queue)
	f.SessionRate, f.RequestRate = b.rates.frontendRates()
	for _, s := range backends {
		f.BytesIn += s.BytesIn
		f.BytesOut += s.BytesOut
	}
	if cfg.Mode == "http" {
		f.Responses = responsesOf(&b.fe.codes)
	}
	return f
}

var pageTemplate = template.Must(template.New("stats").Funcs(template.FuncMap{
	"ago":      func(t time.Time) string { return since(t) + " ago" },
	"since":    since,
	"join":     strings.Join,
	"duration": func(s float64) string { return since(time.Now().Add(-time.Duration(s * float64(time.Second)))) },
	"bytes":    humanBytes,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>loadlab balance — {{.Front.Listen}}</title>
<style>
body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1em}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}th{background:#eee}th[title]{text-decoration:underline dotted}
td.l{text-align:left}.ready{background:#d8f5d8}.drain{background:#fff3c4}.down{background:#f8d0d0}
.maint{background:#d9d9f5}.checking{background:#ffe3c4}.ok{color:#060}.failed{color:#a00}
button{font-size:.85em}small{color:#555}.nowrap{white-space:nowrap}
</style></head><body>
<h1>loadlab balance</h1>
<p>Listening on <b>{{.Front.Listen}}</b>, mode <b>{{.Front.Mode}}</b>, algorithm <b>{{.Algo}}</b>. Refreshed in place every 2 s
(<span id="updated">{{.Now}}</span>). <a href="/;csv">CSV</a> · <a href="/metrics">Prometheus</a> · <a href="/api/backends">JSON</a></p>
<div id="stats">
<h2>Frontend</h2>
<table id="frontend">
<tr><th colspan="3">sessions</th><th colspan="2">session rate /s</th><th colspan="2">request rate /s</th><th colspan="2">queue</th><th colspan="2">bytes</th>{{if .Front.Responses}}<th colspan="6">responses to clients</th>{{end}}</tr>
<tr><th title="client connections open now">cur</th><th title="the most open at once">max</th><th title="client connections taken since start">total</th>
<th>cur</th><th>max</th><th>cur</th><th>max</th>
<th title="connections waiting for a slot over max_conns">cur</th><th>max</th><th>in</th><th>out</th>
{{if .Front.Responses}}<th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>other</th>{{end}}</tr>
{{with .Front}}<tr><td>{{.Active}}</td><td>{{.MaxActive}}</td><td>{{.Total}}</td><td>{{.SessionRate.Cur}}</td><td>{{.SessionRate.Max}}</td>
<td>{{.RequestRate.Cur}}</td><td>{{.RequestRate.Max}}</td><td>{{.Queue}}</td><td>{{.QueueMax}}</td><td>{{bytes .BytesIn}}</td><td>{{bytes .BytesOut}}</td>
{{with .Responses}}<td>{{.C1xx}}</td><td>{{.C2xx}}</td><td>{{.C3xx}}</td><td>{{.C4xx}}</td><td>{{.C5xx}}</td><td>{{.Other}}</td>{{end}}</tr>{{end}}
</table>
<h2>Backends</h2>
<table id="backends">
<tr><th rowspan="2">backend</th><th rowspan="2">state</th><th rowspan="2">weight</th><th colspan="4" title="{{.SessionWord}} open to the backend">{{.SessionWord}}</th>
<th colspan="2">session rate /s</th><th colspan="2">request rate /s</th>
{{if .HTTP}}<th colspan="6">responses</th>{{end}}<th rowspan="2" title="failed connects and broken exchanges">errors</th>
<th colspan="2" title="{{.LatencyMeaning}}">{{.LatencyWord}} (ms)</th><th colspan="2">bytes</th>
<th colspan="2">time</th><th rowspan="2">last checks</th>{{if .Actions}}<th rowspan="2">action</th>{{end}}</tr>
<tr><th>cur</th><th>max</th><th title="maxconn: the most it serves at once">limit</th><th title="{{.TotalMeaning}}">total</th><th>cur</th><th>max</th><th>cur</th><th>max</th>
{{if .HTTP}}<th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>other</th>{{end}}
<th>p50</th><th>p99</th><th>in</th><th>out</th><th title="in all: ready or drain">up</th><th title="in all: down, checking or maintenance">down</th></tr>
{{range .Backends}}<tr class="{{.State}}" data-backend="{{.Name}}"><td class="l">{{.Name}}{{if .Backup}} <small title="takes traffic only while no other backend is available">backup</small>{{end}}</td>
<td class="l nowrap">{{.State}} <small>for {{since .Changed}}</small></td><td>{{.Weight}}</td>
<td>{{.Active}}</td><td>{{.MaxActive}}</td><td>{{if .MaxConn}}{{.MaxConn}}{{else}}-{{end}}</td><td>{{.Total}}</td><td>{{.SessionRate.Cur}}</td><td>{{.SessionRate.Max}}</td>
<td>{{.RequestRate.Cur}}</td><td>{{.RequestRate.Max}}</td>
{{with .Responses}}<td>{{.C1xx}}</td><td>{{.C2xx}}</td><td>{{.C3xx}}</td><td>{{.C4xx}}</td><td>{{.C5xx}}</td><td>{{.Other}}</td>{{end}}
<td>{{.Errors}}</td><td>{{printf "%.3f" .P50ms}}</td><td>{{printf "%.3f" .P99ms}}</td><td>{{bytes .BytesIn}}</td><td>{{bytes .BytesOut}}</td>
<td>{{duration .Uptime}}</td><td>{{duration .Downtime}}</td>
<td class="l nowrap">{{range .Checks}}<span class="{{if .OK}}ok{{else}}failed{{end}}" title="{{.Status}}: {{.Detail}}, {{ago .At}}">●</span>{{end}}
{{with .LastCheck}}{{if .OK}}{{.Status}}{{with .Code}} {{.}}{{end}}{{else}}<span class="failed">{{.Status}}: {{.Detail}}</span>{{end}} <small>{{ago .At}}, {{printf "%.1f" .DurationMS}} ms</small>{{else}}-{{end}}</td>
{{if $.Actions}}<td class="l nowrap">{{range $.States}}<button data-state="{{.}}">{{.}}</button> {{end}}</td>{{end}}</tr>
{{end}}</table>
<p><small>{{.SessionWord}}: {{.SessionMeaning}} <i>total</i>: {{.TotalMeaning}} <i>Request rate</i>: {{.RequestMeaning}}
<i>limit</i>: the backend's maxconn. Waiting for a backend's slot, every backend the algorithm may choose being at its maxconn:
<b id="backend-queue">{{.Queue}}</b> now, {{.QueueMax}} at most; connections over max_conns wait at the frontend.</small></p>
{{with .Certs}}<h2>TLS</h2>
<p>{{$.Handshakes}} handshakes, {{$.Failures}} failed.</p>
<table id="certificates">
<tr><th>certificate</th><th>names</th><th>expires</th><th>SHA-256</th></tr>
{{range .}}<tr><td class="l">{{.File}}</td><td class="l">{{join .Names ", "}}</td><td class="l">{{.NotAfter.Format "2006-01-02 15:04 MST"}}</td>
<td class="l"><code>{{.Fingerprint}}</code></td></tr>
{{end}}</table>{{end}}
</div>
<script nonce="{{.Nonce}}">
// Refresh in place: the page is fetched again and its figures swapped in,
// so the scroll position and the buttons stay where they are.
async function refresh() {
  try {
    const r = await fetch(location.pathname, {cache: "no-store"});
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    document.getElementById("stats").replaceWith(doc.getElementById("stats"));
    document.getElementById("updated").textContent = doc.getElementById("updated").textContent;
  } catch (e) {}
}
setInterval(refresh, 2000);
document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-state]");
  if (!b) return;
  const name = b.closest("tr").dataset.backend;
  const r = await fetch("/api/backends/" + encodeURIComponent(name), {method: "PUT",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({state: b.dataset.state})});
  if (!r.ok) alert(await r.text());
  refresh();
});
</script>
</body></html>
`))

// page is the stats page: the frontend, every backend with its state,
// figures and last checks, buttons that change a backend's state, and
// the certificates TLS is ended with. It refreshes itself in place.
func (a *Admin) page(w http.ResponseWriter, _ *http.Request) {
	cfg := a.b.Config()
	backends := a.b.Status()
	made, failed := a.b.Handshakes()
	nonce := newNonce()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-"+nonce+"'; connect-src 'self'; frame-ancestors 'none'")
	d := struct {
		Front                                       FrontendStatus
		Algo, Now, Nonce                            string
		HTTP, Actions                               bool
		States                                      []string
		SessionWord, SessionMeaning, TotalMeaning   string
		RequestMeaning, LatencyWord, LatencyMeaning string
		Backends                                    []BackendStatus
		Certs                                       []tlsx.CertInfo
		Handshakes, Failures                        int64
		Queue, QueueMax                             int64
	}{Front: a.b.Frontend(backends), Algo: cfg.Algo, Now: time.Now().Format("15:04:05"), Nonce: nonce,
		HTTP: cfg.Mode == "http", Actions: true, States: []string{"ready", "drain", "maint"},
		Backends: backends, Certs: a.b.Certificates(), Handshakes: made, Failures: failed}
	d.Queue, d.QueueMax = a.b.Waiting()
	if d.HTTP {
		d.SessionWord, d.SessionMeaning = "requests", "requests under way at the backend (http mode)."
		d.TotalMeaning = "connections opened to the backend (kept alive and reused, so far fewer than requests)."
		d.RequestMeaning = "requests the backend answered per second."
		d.LatencyWord, d.LatencyMeaning = "time to response head", "from the request sent to the backend to its response head"
	} else {
		d.SessionWord, d.SessionMeaning = "connections", "client connections passed to the backend, open now (tcp mode)."
		d.TotalMeaning = "connections passed to the backend since start."
		d.RequestMeaning = "in tcp mode a connection is a request."
		d.LatencyWord, d.LatencyMeaning = "connect time", "time to connect to the backend (tcp mode measures nothing later)"
	}
	pageTemplate.Execute(w, d)
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// since is a duration as the page says it: 3s, 4m12s, 2h05m, 3d4h.
func since(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func humanBytes(n int64) string {
	switch {
	case n < 10<<10:
		return strconv.FormatInt(n, 10)
	case n < 10<<20:
		return fmt.Sprintf("%.0fK", float64(n)/(1<<10))
	case n < 10<<30:
		return fmt.Sprintf("%.0fM", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
}

// csvFields are HAProxy's stats CSV columns up to req_tot, in its order
// (its management guide, "CSV format"): tools that read HAProxy's CSV by
// its header read this one. Columns loadlab has no figure for are empty.
var csvFields = strings.Split("pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,"+
	"status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,"+
	"rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,"+
	"req_rate,req_rate_max,req_tot", ",")

// csvStats is the stats page as CSV, at HAProxy's /;csv: a FRONTEND row,
// a row per backend server, and the BACKEND row that sums them.
func (a *Admin) csvStats(w http.ResponseWriter, _ *http.Request) {
	backends := a.b.Status()
	fe := a.b.Frontend(backends)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="loadlab-stats.csv"`)
	out := csv.NewWriter(w)
	out.Write(append([]string{"# " + csvFields[0]}, csvFields[1:]...))
	row := func(set map[string]any) {
		rec := make([]string, len(csvFields))
		for i, f := range csvFields {
			if v, ok := set[f]; ok {
				rec[i] = fmt.Sprint(v)
			}
		}
		out.Write(rec)
	}
	codes := func(set map[string]any, r *Responses) {
		if r != nil {
			set["hrsp_1xx"], set["hrsp_2xx"], set["hrsp_3xx"], set["hrsp_4xx"], set["hrsp_5xx"], set["hrsp_other"] = r.C1xx, r.C2xx, r.C3xx, r.C4xx, r.C5xx, r.Other
		}
	}
	f := map[string]any{"pxname": "loadlab", "svname": "FRONTEND", "qcur": fe.Queue, "qmax": fe.QueueMax, "scur": fe.Active,
		"smax": fe.MaxActive, "stot": fe.Total, "bin": fe.BytesIn, "bout": fe.BytesOut, "status": "OPEN", "pid": 1, "iid": 1,
		"sid": 0, "type": 0, "rate": fe.SessionRate.Cur, "rate_max": fe.SessionRate.Max, "req_rate": fe.RequestRate.Cur,
		"req_rate_max": fe.RequestRate.Max, "req_tot": fe.Requests}
	codes(f, fe.Responses)
	row(f)
	var sum struct{ cur, tot, bin, bout, econ, lbtot, weight, act, bck int64 }
	for i, s := range backends {
		status := map[string]string{"ready": "UP", "drain": "DRAIN", "maint": "MAINT", "down": "DOWN", "checking": "DOWN"}[s.State]
		r := map[string]any{"pxname": "loadlab", "svname": s.Name, "scur": s.Active, "smax": s.MaxActive, "slim": limit(s.MaxConn), "stot": s.Total,
			"bin": s.BytesIn, "bout": s.BytesOut, "econ": s.Errors, "status": status, "weight": s.Weight, "act": gauge(!s.Backup), "bck": gauge(s.Backup),
			"lastchg": int64(time.Since(s.Changed).Seconds()), "downtime": int64(s.Downtime), "pid": 1, "iid": 2, "sid": i + 1,
			"lbtot": s.Total, "type": 2, "rate": s.SessionRate.Cur, "rate_max": s.SessionRate.Max, "req_rate": s.RequestRate.Cur,
			"req_rate_max": s.RequestRate.Max, "req_tot": s.Requests}
		r["chkfail"], r["chkdown"] = s.ChecksFailed, s.ChecksDown
		if c := s.LastCheck; c != nil {
			r["check_status"], r["check_duration"] = c.Status, int64(c.DurationMS)
			if c.Code != 0 {
				r["check_code"] = c.Code
			}
		}
		codes(r, s.Responses)
		row(r)
		sum.cur, sum.tot, sum.bin, sum.bout, sum.econ, sum.lbtot = sum.cur+s.Active, sum.tot+s.Total, sum.bin+s.BytesIn, sum.bout+s.BytesOut, sum.econ+s.Errors, sum.lbtot+s.Total
		switch {
		case s.State != "ready":
		case s.Backup:
			sum.bck++
		default:
			sum.weight, sum.act = sum.weight+s.Weight, sum.act+1
		}
	}
	status := "UP"
	if sum.act+sum.bck == 0 {
		status = "DOWN"
	}
	queue, queueMax := a.b.Waiting()
	row(map[string]any{"pxname": "loadlab", "svname": "BACKEND", "qcur": queue, "qmax": queueMax, "scur": sum.cur, "stot": sum.tot, "bin": sum.bin,
		"bout": sum.bout, "econ": sum.econ, "status": status, "weight": sum.weight, "act": sum.act, "bck": sum.bck, "pid": 1,
		"iid": 2, "sid": 0, "lbtot": sum.lbtot, "type": 1})
	out.Flush()
}

// limit is a bound as HAProxy's CSV writes it: empty for none.
func limit(n int64) any {
	if n == 0 {
		return ""
	}
	return n
}
