#!/usr/bin/env bash
# Side-by-side throughput of `loadlab serve` models against nginx (`return
# 200` of the same body; 1 worker, or as many as prefork's --procs),
# alternating the two so the machine's drift hits both alike. Prints one
# line per run, with the server's CPU time per request (from /proc: the
# process and its children), and per model and mode the median of the
# loadlab/nginx ratios of the pairs.
#
#   scripts/perf-serve.sh [pairs] [seconds] [models...]
#
# Needs nginx and wrk (apt-get install nginx wrk). Uses 127.0.0.1:18081
# for nginx and :19002 for loadlab. PROCS (default 2) is prefork's
# --procs and nginx's worker_processes beside it. NGINX_LISTEN adds
# options to nginx's listen line: NGINX_LISTEN=deferred compares against
# nginx with TCP_DEFER_ACCEPT, as serve's thread and pool models accept.
set -euo pipefail
pairs=${1:-3}; secs=${2:-10}; shift $(( $# >= 2 ? 2 : $# ))
models=("${@:-async thread pool prefork}")
read -r -a models <<<"${models[*]}"
procs=${PROCS:-2}
. "$(dirname "$0")/lib.sh"

# run PID URL [wrk args...]: wrk against URL; prints req/s and the CPU µs
# per request PID (and its children) spent meanwhile.
run() {
  local pid=$1 url=$2; shift 2
  local before after
  before=$(cpu_ticks "$pid")
  wrk -t2 -c100 -d"${secs}s" "$@" "$url" >"$work/wrk.out"
  after=$(cpu_ticks "$pid")
  awk -v t=$((after - before)) '/requests in/ {n = $1} /Requests\/sec/ {rps = $2} END {printf "%.0f %.1f\n", rps, t * 10000 / n}' "$work/wrk.out"
}

for model in "${models[@]}"; do
  workers=1; extra=()
  [ "$model" = prefork ] && workers=$procs && extra=(--procs "$procs")
  start_nginx 18081 "" "$workers" "${NGINX_LISTEN:-}"
  "$lb" serve --model "$model" "${extra[@]}" --listen 127.0.0.1:19002 --quiet 2>"$work/serve.log" &
  pid=$!
  until grep -q "ready on" "$work/serve.log"; do sleep 0.1; done
  for mode in keepalive close; do
    hdr=(); [ "$mode" = close ] && hdr=(-H 'Connection: close')
    ratios=()
    for p in $(seq "$pairs"); do
      read -r n ncpu < <(run "$nginx_pid" http://127.0.0.1:18081/ "${hdr[@]}")
      read -r l lcpu < <(run "$pid" http://127.0.0.1:19002/ "${hdr[@]}")
      r=$(awk -v a="$l" -v b="$n" 'BEGIN {printf "%.2f", a/b}')
      ratios+=("$r")
      printf '%-8s %-9s pair %d  nginx(%d) %7.0f req/s %5.1f µs CPU/req  loadlab %7.0f req/s %5.1f µs CPU/req  ratio %s\n' \
        "$model" "$mode" "$p" "$workers" "$n" "$ncpu" "$l" "$lcpu" "$r"
    done
    med=$(printf '%s\n' "${ratios[@]}" | median)
    printf '%-8s %-9s MEDIAN ratio loadlab/nginx(%d) %s\n' "$model" "$mode" "$workers" "$med"
  done
  kill -TERM "$pid"; wait "$pid" || true
  kill -QUIT "$nginx_pid"; wait "$nginx_pid" || true
  sleep 1
done
