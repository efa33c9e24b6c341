package balancer

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"loadlab/internal/tlsx"
)

// AdminConfig is the admin listener: where (host-less binds loopback),
// and who may use it: with a token, "Authorization: Bearer TOKEN" or
// basic auth with the token as the password (and User as the name, when
// set), as HAProxy's stats auth.
type AdminConfig struct {
	Listen string `yaml:"listen"`
	Token  string `yaml:"token"`
	User   string `yaml:"user"`
}

// Admin is the balancer's admin listener: GET / a stats page that
// refreshes itself, /metrics for Prometheus, /api/backends to list, add,
// remove and drain backends, /healthz.
type Admin struct {
	b    *Balancer
	auth atomic.Pointer[AdminConfig] // who may use it; a reload may change it
	srv  *http.Server
	ln   net.Listener
}

// StartAdmin serves the admin endpoints on c.Listen. A host-less address
// (":9000") binds loopback only: exposing the admin takes saying so. With
// a token, every request must carry it (SetAuth).
func StartAdmin(b *Balancer, c AdminConfig) (*Admin, error) {
	addr := c.Listen
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, listenError(addr, err)
	}
	b.addSelf(ln.Addr(), "admin address")
	for _, be := range b.pool.All() {
		if err := b.refuseSelf(be.Name); err != nil {
			ln.Close()
			return nil, err
		}
	}
	a := &Admin{b: b, ln: ln}
	a.SetAuth(c)
	mux := http.NewServeMux()
	reg := prometheus.NewRegistry()
	reg.MustRegister(&metrics{b: b})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /api/backends", a.list)
	mux.HandleFunc("GET /api/certificates", a.certificates)
	mux.HandleFunc("POST /api/backends", a.add)
	mux.HandleFunc("DELETE /api/backends/{name}", a.remove)
	mux.HandleFunc("PUT /api/backends/{name}", a.update)
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("GET /;csv", a.csvStats)
	// Every read and every idle wait is bounded: clients that never finish
	// a request, or never send one, are closed, not kept.
	a.srv = &http.Server{Handler: a.guard(mux), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
	go a.srv.Serve(ln)
	return a, nil
}

// SetAuth sets who may use the admin: with a token, a request must carry
// "Authorization: Bearer TOKEN", or basic auth whose password is the
// token and whose user is c.User when that is set (any user when not),
// as HAProxy's stats auth; a browser asks for them.
func (a *Admin) SetAuth(c AdminConfig) { a.auth.Store(&c) }

// authorized reports whether r carries the admin's credentials.
func (a *Admin) authorized(r *http.Request, c *AdminConfig) bool {
	same := func(got, want string) bool { return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 }
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return same(bearer, c.Token)
	}
	user, pass, ok := r.BasicAuth()
	return ok && same(pass, c.Token) && (c.User == "" || same(user, c.User))
}

// Addr is where the admin listens.
func (a *Admin) Addr() net.Addr { return a.ln.Addr() }

// Close stops the admin listener.
func (a *Admin) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}

// guard checks the token and keeps other origins out: the admin sends no
// CORS headers, refuses cross-site requests that carry an Origin, and
// forbids framing.
func (a *Admin) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		auth := a.auth.Load()
		if auth.Token != "" && !a.authorized(r, auth) {
			// Basic first: a browser asks for a user and password only
			// when it is named.
			w.Header().Add("WWW-Authenticate", `Basic realm="loadlab admin", charset="UTF-8"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="loadlab admin"`)
			// Close after the answer, and read no more: a body the
			// client may never finish is not waited for.
			w.Header().Set("Connection", "close")
			http.NewResponseController(w).SetReadDeadline(time.Now())
			http.Error(w, "401 Unauthorized: send Authorization: Bearer <admin token>, or basic auth with the token as the password", http.StatusUnauthorized)
			return
		}
		if auth.Token == "" && !a.ownHost(r.Host) {
			// Without a token, only a page that names this address may
			// ask: a DNS-rebinding page names its own host.
			w.Header().Set("Connection", "close")
			http.Error(w, "403 Forbidden: Host must name the admin's own address or loopback (or set --admin-token)", http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			http.Error(w, "403 Forbidden: cross-origin requests are not served", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ownHost reports whether a request's Host names the admin listener: its
// own address, or a loopback name or address, on its port.
func (a *Admin) ownHost(host string) bool {
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, "80"
	}
	own := a.ln.Addr().(*net.TCPAddr)
	if port != strconv.Itoa(own.Port) {
		return false
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && (ip.IsLoopback() || ip.Equal(own.IP) || own.IP.IsUnspecified() && isLocal(ip))
}

func (a *Admin) healthz(w http.ResponseWriter, _ *http.Request) {
	for _, be := range a.b.pool.All() {
		if be.State() == Ready {
			fmt.Fprintln(w, "ok")
			return
		}
	}
	http.Error(w, "no backend is ready", http.StatusServiceUnavailable)
}

// BackendStatus is one backend as the API and the stats page show it.
type BackendStatus struct {
	Name      string       `json:"name"`
	Addr      string       `json:"addr"`
	State     string       `json:"state"`
	Weight    int64        `json:"weight"`
	Backup    bool         `json:"backup"`  // a spare: new traffic only while no other backend is available
	MaxConn   int64        `json:"maxconn"` // the most it serves at once; 0 for no bound
	Active    int64        `json:"active"`
	Total     int64        `json:"total"`
	Requests  int64        `json:"requests"`
	BytesIn   int64        `json:"bytes_in"`
	BytesOut  int64        `json:"bytes_out"`
	Errors    int64        `json:"errors"`
	LastCheck *CheckResult `json:"last_check,omitempty"`
	// Certificate is what the backend showed last over TLS.
	Certificate *tlsx.CertInfo `json:"certificate,omitempty"`
	P50ms       float64        `json:"latency_p50_ms"`
	P99ms       float64        `json:"latency_p99_ms"`

	MaxActive   int64         `json:"max_active"`
	SessionRate Rate          `json:"session_rate"` // connections opened per second
	RequestRate Rate          `json:"request_rate"`
	Responses   *Responses    `json:"responses,omitempty"` // http mode: the backend's answers by class
	Uptime      float64       `json:"uptime_s"`            // in all, ready or drain
	Downtime    float64       `json:"downtime_s"`          // in all, down, checking or in maintenance
	Changed     time.Time     `json:"state_changed"`
	Checks      []CheckResult `json:"checks,omitempty"` // the last ones, newest first
	// ChecksFailed counts failed checks while the backend was up, and
	// ChecksDown its falls to down: HAProxy's chkfail and chkdown.
	ChecksFailed int64 `json:"checks_failed"`
	ChecksDown   int64 `json:"checks_down"`
}

// Responses counts answers by class.
type Responses struct {
	C1xx  int64 `json:"1xx"`
	C2xx  int64 `json:"2xx"`
	C3xx  int64 `json:"3xx"`
	C4xx  int64 `json:"4xx"`
	C5xx  int64 `json:"5xx"`
	Other int64 `json:"other"`
}

func responsesOf(c *codes) *Responses {
	k := c.Classes()
	return &Responses{k[0], k[1], k[2], k[3], k[4], k[5]}
}

// Status lists the backends with their counters.
func (b *Balancer) Status() []BackendStatus {
	var out []BackendStatus
	for _, be := range b.pool.All() {
		out = append(out, b.status(be))
	}
	return out
}

func (b *Balancer) status(be *Backend) BackendStatus {
	p50, p99 := be.Latency()
	s := BackendStatus{
		Name: be.Name, Addr: be.Addr(), State: be.State().String(), Weight: be.Weight(), Backup: be.Backup(), MaxConn: be.MaxConn(),
		Active: be.Active.Load(), Total: be.Total.Load(), Requests: be.Requests.Load(),
		BytesIn: be.BytesIn.Load(), BytesOut: be.BytesOut.Load(), Errors: be.Errors.Load(),
		LastCheck: be.LastCheck(), P50ms: p50, P99ms: p99, Certificate: be.cert.Load(),
		MaxActive: be.maxActive.Load(), Checks: be.Checks(),
		ChecksFailed: be.checksFailed.Load(), ChecksDown: be.checksDown.Load(),
	}
	s.SessionRate, s.RequestRate = b.rates.backendRates(be)
	if b.Config().Mode == "http" {
		s.Responses = responsesOf(&be.codes)
	}
	up, down, changed := be.Uptime()
	s.Uptime, s.Downtime, s.Changed = up.Seconds(), down.Seconds(), changed
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (a *Admin) list(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.b.Status())
}

// certificates lists the certificates TLS is ended with: file, names,
// expiry and fingerprint; an empty list without TLS.
func (a *Admin) certificates(w http.ResponseWriter, _ *http.Request) {
	certs := a.b.Certificates()
	if certs == nil {
		certs = []tlsx.CertInfo{}
	}
	writeJSON(w, http.StatusOK, certs)
}

type backendChange struct {
	Addr    string `json:"addr"`
	Weight  int    `json:"weight"`
	Backup  *bool  `json:"backup"`
	MaxConn *int   `json:"maxconn"`
	State   string `json:"state"`
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "400 Bad Request: body is not the expected JSON: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (a *Admin) add(w http.ResponseWriter, r *http.Request) {
	var c backendChange
	if !decode(w, r, &c) {
		return
	}
	bc := BackendConfig{Addr: c.Addr, Weight: c.Weight, Backup: c.Backup != nil && *c.Backup}
	if c.MaxConn != nil {
		bc.MaxConn = *c.MaxConn
	}
	be, status, err := a.b.AddBackend(bc)
	if err != nil {
		http.Error(w, strconv.Itoa(status)+" "+http.StatusText(status)+": "+err.Error(), status)
		return
	}
	writeJSON(w, http.StatusCreated, a.b.status(be))
}

func (a *Admin) remove(w http.ResponseWriter, r *http.Request) {
	if !a.b.RemoveBackend(r.PathValue("name")) {
		http.Error(w, "404 Not Found: no backend "+r.PathValue("name"), http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Admin) update(w http.ResponseWriter, r *http.Request) {
	be := a.b.pool.Find(r.PathValue("name"))
	if be == nil {
		http.Error(w, "404 Not Found: no backend "+r.PathValue("name"), http.StatusNotFound)
		return
	}
	var c backendChange
	if !decode(w, r, &c) {
		return
	}
	if c.State != "" {
		s, ok := ParseState(c.State)
		if !ok {
			http.Error(w, `400 Bad Request: state must be "ready", "drain" or "maint"`, http.StatusBadRequest)
			return
		}
		a.b.SetAdminState(be, s)
	}
	if c.Weight < 0 || c.Weight > 1000 {
		http.Error(w, "400 Bad Request: weight must be from 1 to 1000", http.StatusBadRequest)
		return
	}
	if c.MaxConn != nil && (*c.MaxConn < 0 || *c.MaxConn > MaxConnLimit) {
		http.Error(w, fmt.Sprintf("400 Bad Request: maxconn must be from 0 (no limit) to %d", MaxConnLimit), http.StatusBadRequest)
		return
	}
	if c.MaxConn != nil {
		a.b.setMaxConn(be, *c.MaxConn)
	}
	if c.Weight > 0 {
		be.weight.Store(int64(c.Weight))
	}
	if c.Backup != nil {
		be.backup.Store(*c.Backup)
	}
	writeJSON(w, http.StatusOK, a.b.Status())
}

// metrics exports the backends' counters as they are at scrape time.
type metrics struct{ b *Balancer }

var (
	descUp       = prometheus.NewDesc("loadlab_backend_up", "1 when the backend takes new traffic (ready), else 0.", []string{"backend", "state"}, nil)
	descWeight   = prometheus.NewDesc("loadlab_backend_weight", "The backend's weight.", []string{"backend"}, nil)
	descBackup   = prometheus.NewDesc("loadlab_backend_backup", "1 for a backup backend (traffic only while no other is available), else 0.", []string{"backend"}, nil)
	descActive   = prometheus.NewDesc("loadlab_backend_active_connections", "Connections (tcp) or requests (http) open to the backend now.", []string{"backend"}, nil)
	descTotal    = prometheus.NewDesc("loadlab_backend_connections_total", "Connections opened to the backend.", []string{"backend"}, nil)
	descRequests = prometheus.NewDesc("loadlab_backend_requests_total", "Requests (http) or connections (tcp) served by the backend.", []string{"backend"}, nil)
	descBytesIn  = prometheus.NewDesc("loadlab_backend_bytes_in_total", "Bytes from clients to the backend.", []string{"backend"}, nil)
	descBytesOut = prometheus.NewDesc("loadlab_backend_bytes_out_total", "Bytes from the backend to clients.", []string{"backend"}, nil)
	descErrors   = prometheus.NewDesc("loadlab_backend_errors_total", "Failed connects and broken exchanges.", []string{"backend"}, nil)
	descChkFail  = prometheus.NewDesc("loadlab_backend_check_failures_total", "Failed health checks while the backend was up (HAProxy's chkfail).", []string{"backend"}, nil)
	descChkDown  = prometheus.NewDesc("loadlab_backend_check_up_down_total", "Times health checks took the backend down (HAProxy's chkdown).", []string{"backend"}, nil)
	descLatency  = prometheus.NewDesc("loadlab_backend_latency_seconds", "Connect time (tcp mode) or time to the response head (http mode).", []string{"backend"}, nil)
	descDropped  = prometheus.NewDesc("loadlab_access_log_dropped_total", "Access log lines dropped because the writer fell behind.", nil, nil)
	descPanics   = prometheus.NewDesc("loadlab_panics_total", "Panics recovered while serving; each closed one connection.", nil, nil)
	descTLS      = prometheus.NewDesc("loadlab_tls_handshakes_total", "TLS handshakes with clients that completed.", nil, nil)
	descTLSError = prometheus.NewDesc("loadlab_tls_handshake_errors_total", "TLS handshakes with clients that failed: given up, timed out, or not TLS.", nil, nil)
	descCertEnd  = prometheus.NewDesc("loadlab_tls_certificate_expiry_seconds", "When each certificate expires, in Unix seconds.", []string{"file"}, nil)

	descCodes      = prometheus.NewDesc("loadlab_backend_http_responses_total", "http mode: the backend's answers by class.", []string{"backend", "code"}, nil)
	descMaxActive  = prometheus.NewDesc("loadlab_backend_max_active", "The most connections (tcp) or requests (http) open to the backend at once.", []string{"backend"}, nil)
	descFeActive   = prometheus.NewDesc("loadlab_frontend_current_sessions", "Client connections open now.", nil, nil)
	descFeMax      = prometheus.NewDesc("loadlab_frontend_max_sessions", "The most client connections open at once.", nil, nil)
	descFeSessions = prometheus.NewDesc("loadlab_frontend_sessions_total", "Client connections taken; its rate is the session rate.", nil, nil)
	descFeRequests = prometheus.NewDesc("loadlab_frontend_requests_total", "http mode: requests answered, by a backend or the balancer; tcp mode: connections.", nil, nil)
	descFeCodes    = prometheus.NewDesc("loadlab_frontend_http_responses_total", "http mode: the answers clients got by class, the balancer's own included.", []string{"code"}, nil)
	descFeQueue    = prometheus.NewDesc("loadlab_frontend_queue", "Client connections waiting for a slot over max_conns now.", nil, nil)
	descMaxConn    = prometheus.NewDesc("loadlab_backend_maxconn", "The most connections (tcp) or requests (http) the backend serves at once; 0 for no bound.", []string{"backend"}, nil)
	descQueue      = prometheus.NewDesc("loadlab_backend_queue", "Connections (tcp) or requests (http) waiting for a backend's slot now, every backend the algorithm may choose being at its maxconn.", nil, nil)
)

// codeClasses name the classes of Responses and codes.Classes.
var codeClasses = []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descWeight, descBackup, descActive, descTotal, descRequests, descBytesIn, descBytesOut, descErrors, descChkFail, descChkDown, descLatency, descDropped, descPanics, descTLS, descTLSError, descCertEnd,
		descCodes, descMaxActive, descFeActive, descFeMax, descFeSessions, descFeRequests, descFeCodes, descFeQueue, descMaxConn, descQueue} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, s := range m.b.Status() {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, gauge(s.State == "ready"), s.Name, s.State)
		ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(s.Weight), s.Name)
		ch <- prometheus.MustNewConstMetric(descBackup, prometheus.GaugeValue, gauge(s.Backup), s.Name)
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(s.Active), s.Name)
		ch <- prometheus.MustNewConstMetric(descMaxConn, prometheus.GaugeValue, float64(s.MaxConn), s.Name)
		for _, c := range []struct {
			d *prometheus.Desc
			v int64
		}{{descTotal, s.Total}, {descRequests, s.Requests}, {descBytesIn, s.BytesIn}, {descBytesOut, s.BytesOut}, {descErrors, s.Errors},
			{descChkFail, s.ChecksFailed}, {descChkDown, s.ChecksDown}} {
			ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v), s.Name)
		}
	}
	http := m.b.Config().Mode == "http"
	for _, be := range m.b.pool.All() {
		count, sum, buckets := be.LatencyHistogram()
		ch <- prometheus.MustNewConstHistogram(descLatency, count, sum, buckets, be.Name)
		ch <- prometheus.MustNewConstMetric(descMaxActive, prometheus.GaugeValue, float64(be.maxActive.Load()), be.Name)
		if http {
			for i, n := range be.codes.Classes() {
				ch <- prometheus.MustNewConstMetric(descCodes, prometheus.CounterValue, float64(n), be.Name, codeClasses[i])
			}
		}
	}
	fe := &m.b.fe
	ch <- prometheus.MustNewConstMetric(descFeActive, prometheus.GaugeValue, float64(fe.cur.Load()))
	ch <- prometheus.MustNewConstMetric(descFeMax, prometheus.GaugeValue, float64(fe.max.Load()))
	ch <- prometheus.MustNewConstMetric(descFeSessions, prometheus.CounterValue, float64(fe.total.Load()))
	ch <- prometheus.MustNewConstMetric(descFeRequests, prometheus.CounterValue, float64(fe.requests.Load()))
	ch <- prometheus.MustNewConstMetric(descFeQueue, prometheus.GaugeValue, float64(m.b.Queued()))
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(m.b.waiting.Load()))
	if http {
		for i, n := range fe.codes.Classes() {
			ch <- prometheus.MustNewConstMetric(descFeCodes, prometheus.CounterValue, float64(n), codeClasses[i])
		}
	}
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(m.b.log.dropped.Load()))
	ch <- prometheus.MustNewConstMetric(descPanics, prometheus.CounterValue, float64(m.b.panics.Load()))
	if certs := m.b.Certificates(); certs != nil {
		made, failed := m.b.Handshakes()
		ch <- prometheus.MustNewConstMetric(descTLS, prometheus.CounterValue, float64(made))
		ch <- prometheus.MustNewConstMetric(descTLSError, prometheus.CounterValue, float64(failed))
		for _, c := range certs {
			ch <- prometheus.MustNewConstMetric(descCertEnd, prometheus.GaugeValue, float64(c.NotAfter.Unix()), c.File)
		}
	}
}

// gauge is a yes or no as Prometheus counts it: 1 or 0.
func gauge(yes bool) float64 {
	if yes {
		return 1
	}
	return 0
}
