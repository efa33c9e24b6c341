# Shared by the perf scripts: a work directory cleaned up on exit, the
# loadlab binary built into it, nginx with the lab's body, and a median.
# Source it: . "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
cd "$(dirname "$0")/.."
go build -o "$work/loadlab" ./cmd/loadlab
lb="$work/loadlab"

# start_nginx PORT [SERVER] [WORKERS] [LISTEN]: one worker unless WORKERS
# says; SERVER is what its server block holds besides listen, by default
# (or when empty) the lab's 31-byte body for every path; LISTEN is added
# to the listen directive (ssl). Its pid is in $nginx_pid.
start_nginx() {
  local server=${2:-'location / { default_type "text/plain; charset=utf-8"; return 200 "Ini Adalah web Server percobaan"; }'}
  cat >"$work/nginx.conf" <<CONF
worker_processes ${3:-1};
daemon off;
error_log $work/nginx-error.log;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    server {
        listen 127.0.0.1:$1 backlog=4096 ${4:-};
        $server
    }
}
CONF
  nginx -c "$work/nginx.conf" &
  nginx_pid=$!
  sleep 0.5
}

# cpu_ticks PID: user + system clock ticks (1/100 s) used so far by PID
# and its children still running (nginx's workers, prefork's children).
cpu_ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# haproxy_servers: the four backends of the perf scripts (ports 19002 to
# 19005), as the server lines of an HAProxy backend section; with
# MAXCONN set, each takes that many connections at once and queues the
# rest.
haproxy_servers() {
  for i in 1 2 3 4; do echo "    server s$i 127.0.0.1:$((19001 + i)) check${MAXCONN:+ maxconn $MAXCONN}"; done
}

# balance_backends: the same four as loadlab balance's --backend flags,
# one argument a line (for mapfile), with MAXCONN as haproxy_servers has
# it.
balance_backends() {
  for i in 1 2 3 4; do printf -- '--backend\n127.0.0.1:%s\n' "$((19001 + i))${MAXCONN:+,maxconn=$MAXCONN}"; done
}

# haproxy_conf TCP_PORT HTTP_PORT [TCP_BIND_OPTS] [HTTP_BIND_OPTS]: HAProxy
# in front of the four backends into $work/haproxy.cfg, a tcp frontend
# and an http one (connections to the backends reused, as the balancer's
# are); the bind options add ssl.
haproxy_conf() {
  cat >"$work/haproxy.cfg" <<CONF
global
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend tcp_in
    mode tcp
    bind 127.0.0.1:$1 ${3:-}
    default_backend tcp_out
backend tcp_out
    mode tcp
    balance roundrobin
$(haproxy_servers)
frontend http_in
    mode http
    bind 127.0.0.1:$2 ${4:-}
    default_backend http_out
backend http_out
    mode http
    balance roundrobin
    http-reuse always
$(haproxy_servers)
CONF
}

# median: the median of the numbers on stdin, one a line.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# self_signed: an ECDSA P-256 certificate for localhost in $work/cert.pem
# and $work/key.pem, made once, for every TLS server of a run alike.
self_signed() {
  [ -f "$work/cert.pem" ] && return
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  chmod 600 "$work/key.pem"
}
