#!/usr/bin/env bash
# HTTPS side by side, alternating the two of each pair so that the
# machine's drift hits both alike: serve over TLS against nginx `ssl`
# (one worker), with a new connection per request (a full handshake each:
# TLS 1.3, ECDSA P-256, X25519) and with keep-alive. Both serve the same
# certificate (openssl, made at the start). Prints one line per run with
# the server's CPU per request, and the median loadlab/nginx ratio.
#
#   scripts/perf-tls.sh [pairs] [seconds] [models...]
#
# Needs nginx, wrk and openssl. Uses 127.0.0.1:18443 and :19443.
set -euo pipefail
pairs=${1:-5}; secs=${2:-10}; shift $(( $# >= 2 ? 2 : $# ))
models=("${@:-async}")
read -r -a models <<<"${models[*]}"
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
for model in "${models[@]}"; do
  "$lb" serve --model "$model" --listen 127.0.0.1:19443 --quiet --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" 2>"$work/serve.log" &
  pid=$!
  until grep -q "ready on" "$work/serve.log"; do sleep 0.1; done
  for mode in keepalive close; do
    hdr=(); [ "$mode" = close ] && hdr=(-H 'Connection: close')
    ratios=()
    for p in $(seq "$pairs"); do
      read -r n ncpu < <(run "$nginx_pid" https://127.0.0.1:18443/ "${hdr[@]}")
      read -r l lcpu < <(run "$pid" https://127.0.0.1:19443/ "${hdr[@]}")
      r=$(awk -v a="$l" -v b="$n" 'BEGIN {printf "%.2f", a/b}')
      ratios+=("$r")
      printf 'serve %-8s %-9s pair %d  nginx ssl %7.0f req/s %6.1f µs CPU/req  loadlab %7.0f req/s %6.1f µs CPU/req  ratio %s\n' \
        "$model" "$mode" "$p" "$n" "$ncpu" "$l" "$lcpu" "$r"
    done
    printf 'serve %-8s %-9s MEDIAN ratio loadlab/nginx ssl %s\n' "$model" "$mode" "$(printf '%s\n' "${ratios[@]}" | median)"
  done
  kill -TERM "$pid"; wait "$pid" || true
done
kill -QUIT "$nginx_pid"; wait "$nginx_pid" || true
