#!/usr/bin/env bash
# HTTPS side by side, alternating the two of each pair so that the
# machine's drift hits both alike, with a new connection per request (a
# full handshake each: TLS 1.3, ECDSA P-256, X25519) and with keep-alive.
# Every server uses the same certificate (openssl, made at the start).
# Prints one line per run with the server's CPU per request, and the
# median loadlab/peer ratio of each test. What it runs:
#   MODEL    serve --model MODEL over TLS against nginx `ssl` (1 worker);
#   balance  balance ending TLS (http and tcp mode) against HAProxy
#            `bind ... ssl`, before the same four serve async backends;
#   bench    loadlab bench against ab on nginx ssl, no keep-alive
#            (-c 100, a full handshake per request).
#
#   scripts/perf-tls.sh [pairs] [seconds] [MODEL|balance|bench...]
#
# By default: async balance bench. Needs nginx, haproxy, wrk, ab and
# openssl.
set -euo pipefail
pairs=${1:-5}; secs=${2:-10}; shift $(( $# >= 2 ? 2 : $# ))
what=("${@:-async balance bench}")
read -r -a what <<<"${what[*]}"
. "$(dirname "$0")/lib.sh"
self_signed

# run PID URL [wrk args...]: req/s and the CPU µs per request of PID
# (and its children) meanwhile.
run() {
  local pid=$1 url=$2; shift 2
  local before after
  before=$(cpu_ticks "$pid")
  wrk -t2 -c100 -d"${secs}s" "$@" "$url" >"$work/wrk.out"
  after=$(cpu_ticks "$pid")
  awk -v t=$((after - before)) '/requests in/ {n = $1} /Requests\/sec/ {rps = $2} END {printf "%.0f %.1f\n", rps, t * 10000 / n}' "$work/wrk.out"
}


start_nginx 18443 "ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem; ssl_protocols TLSv1.2 TLSv1.3; location / { default_type \"text/plain; charset=utf-8\"; return 200 \"Ini Adalah web Server percobaan\"; }" 1 ssl
# pair NAME TEST PEER_PID PEER_URL OURS_PID OURS_URL [wrk args]: alternated
# runs, who goes first swapping every pair (a run leaves its TIME_WAIT
# sockets to the next), and the median ratio.
pair() {
  local name=$1 test=$2 ppid=$3 purl=$4 opid=$5 ourl=$6 p n ncpu l lcpu r
  shift 6
  local ratios=()
  for p in $(seq "$pairs"); do
    if [ $((p % 2)) = 1 ]; then
      read -r n ncpu < <(run "$ppid" "$purl" "$@")
      read -r l lcpu < <(run "$opid" "$ourl" "$@")
    else
      read -r l lcpu < <(run "$opid" "$ourl" "$@")
      read -r n ncpu < <(run "$ppid" "$purl" "$@")
    fi
    r=$(awk -v a="$l" -v b="$n" 'BEGIN {printf "%.2f", a/b}')
    ratios+=("$r")
    printf '%-22s %-9s pair %d  %s %7.0f req/s %6.1f µs CPU/req  loadlab %7.0f req/s %6.1f µs CPU/req  ratio %s\n' \
      "$name" "$test" "$p" "$peer" "$n" "$ncpu" "$l" "$lcpu" "$r"
  done
  printf '%-22s %-9s MEDIAN ratio loadlab/%s %s\n' "$name" "$test" "$peer" "$(printf '%s\n' "${ratios[@]}" | median)"
}

serve_tls() {
  local model=$1
  "$lb" serve --model "$model" --listen 127.0.0.1:19443 --quiet --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" 2>"$work/serve.log" &
  local pid=$!
  until grep -q "ready on" "$work/serve.log"; do sleep 0.1; done
  peer=nginx-ssl
  pair "serve $model" keepalive "$nginx_pid" https://127.0.0.1:18443/ "$pid" https://127.0.0.1:19443/
  pair "serve $model" close "$nginx_pid" https://127.0.0.1:18443/ "$pid" https://127.0.0.1:19443/ -H 'Connection: close'
  kill -TERM "$pid"; wait "$pid" || true
}

balance_tls() {
  local p pids=() bpid
  for p in 19002 19003 19004 19005; do
    "$lb" serve --model async --listen 127.0.0.1:$p --quiet 2>/dev/null &
    pids+=($!)
  done
  cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"
  haproxy_conf 14546 14547 "ssl crt $work/haproxy.pem" "ssl crt $work/haproxy.pem alpn http/1.1"
  haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 &
  local hpid=$!
  peer=haproxy-ssl
  for mode in http tcp; do
    port=$([ $mode = http ] && echo 14545 || echo 14544)
    "$lb" balance --quiet --mode $mode --listen 127.0.0.1:$port --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
      --backend 127.0.0.1:19002 --backend 127.0.0.1:19003 --backend 127.0.0.1:19004 --backend 127.0.0.1:19005 2>"$work/balance.log" &
    bpid=$!
    until grep -q "ready on" "$work/balance.log"; do sleep 0.1; done
    hport=$([ $mode = http ] && echo 14547 || echo 14546)
    pair "balance $mode" close "$hpid" https://127.0.0.1:$hport/ "$bpid" https://127.0.0.1:$port/ -H 'Connection: close'
    pair "balance $mode" keepalive "$hpid" https://127.0.0.1:$hport/ "$bpid" https://127.0.0.1:$port/
    kill -TERM "$bpid"; wait "$bpid" || true
  done
  kill "$hpid" "${pids[@]}"; wait "$hpid" "${pids[@]}" 2>/dev/null || true
}

bench_tls() {
  local n=$((secs * 1000)) p a l r ratios=()
  echo "== bench -n $n -c 100 against nginx ssl, no keep-alive: loadlab bench / ab"
  for p in $(seq "$pairs"); do
    a=$(ab -q -n "$n" -c 100 https://127.0.0.1:18443/ 2>/dev/null | awk '/^Requests per second/ {print $4}')
    l=$("$lb" bench -q -n "$n" -c 100 https://127.0.0.1:18443/ | awk '/^Requests per second/ {print $4}')
    r=$(awk -v a="$l" -v b="$a" 'BEGIN {printf "%.2f", a/b}'); ratios+=("$r")
    echo "bench pair $p: ab $a req/s  loadlab $l req/s  ratio $r"
  done
  echo "bench MEDIAN ratio loadlab/ab $(printf '%s\n' "${ratios[@]}" | median)"
}

for w in "${what[@]}"; do
  case $w in
    balance) balance_tls ;;
    bench) bench_tls ;;
    *) serve_tls "$w" ;;
  esac
done
kill -QUIT "$nginx_pid"; wait "$nginx_pid" || true
