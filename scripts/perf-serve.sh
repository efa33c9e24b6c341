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
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
cd "$(dirname "$0")/.."
go build -o "$work/loadlab" ./cmd/loadlab

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/nginx-error.log;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:18081 backlog=4096;
        location / { default_type "text/plain; charset=utf-8"; return 200 "Ini Adalah web Server percobaan"; }
    }
}
CONF
nginx -c "$work/nginx.conf" & sleep 0.5

wrk_rps() { # url, extra wrk args...
  local url=$1; shift
  wrk -t2 -c100 -d"${secs}s" "$@" "$url" | awk '/Requests\/sec/ {print $2}'
}

for model in "${models[@]}"; do
  "$work/loadlab" serve --model "$model" --listen 127.0.0.1:19002 --quiet 2>"$work/serve.log" &
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
    med=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    printf '%-8s %-9s MEDIAN ratio loadlab/nginx %s\n' "$model" "$mode" "$med"
  done
  kill -TERM "$pid"; wait "$pid" || true
  sleep 1
done
