#!/usr/bin/env bash
# Side-by-side throughput of `loadlab serve` models against nginx (1 worker,
# `return 200` of the same body), alternating the two so the machine's drift
# hits both alike. Prints one line per run and, per model and mode, the
# median of the loadlab/nginx ratios of the pairs.
#
#   scripts/perf-serve.sh [pairs] [seconds] [models...]
#
# Needs nginx and wrk (apt-get install nginx wrk). Uses 127.0.0.1:18081
# for nginx and :19002 for loadlab.
set -euo pipefail
pairs=${1:-3}; secs=${2:-10}; shift $(( $# >= 2 ? 2 : $# ))
models=("${@:-async thread pool prefork}")
read -r -a models <<<"${models[*]}"
. "$(dirname "$0")/lib.sh"
start_nginx 18081

wrk_rps() { # url, extra wrk args...
  local url=$1; shift
  wrk -t2 -c100 -d"${secs}s" "$@" "$url" | awk '/Requests\/sec/ {print $2}'
}

for model in "${models[@]}"; do
  "$lb" serve --model "$model" --listen 127.0.0.1:19002 --quiet 2>"$work/serve.log" &
  pid=$!
  until grep -q "ready on" "$work/serve.log"; do sleep 0.1; done
  for mode in keepalive close; do
    hdr=(); [ "$mode" = close ] && hdr=(-H 'Connection: close')
    ratios=()
    for p in $(seq "$pairs"); do
      n=$(wrk_rps http://127.0.0.1:18081/ "${hdr[@]}")
      l=$(wrk_rps http://127.0.0.1:19002/ "${hdr[@]}")
      r=$(awk -v a="$l" -v b="$n" 'BEGIN {printf "%.2f", a/b}')
      ratios+=("$r")
      printf '%-8s %-9s pair %d  nginx %9.0f  loadlab %9.0f  ratio %s\n' "$model" "$mode" "$p" "$n" "$l" "$r"
    done
    med=$(printf '%s\n' "${ratios[@]}" | median)
    printf '%-8s %-9s MEDIAN ratio loadlab/nginx %s\n' "$model" "$mode" "$med"
  done
  kill -TERM "$pid"; wait "$pid" || true
  sleep 1
done
