#!/usr/bin/env bash
# loadlab balance against HAProxy, in front of the same four
# `loadlab serve --model async` backends, alternating the two; wrk -t2
# -c100 for each run. Prints every run with p99, the median ratios per
# test (req/s, and p99: the issue asks for both), and the cost of each
# balancer: req/s through it over req/s straight to one backend. The
# order within a pair swaps every pair.
#
#   scripts/perf-balance.sh [pairs] [seconds] [tcp|http]
#
# The third argument runs one mode's tests only. MAXCONN=N in the
# environment limits each backend to N connections at once in both
# balancers (server maxconn; the rest wait in the queue).
#
# Needs haproxy and wrk (apt-get install haproxy wrk).
set -euo pipefail
pairs=${1:-3}; secs=${2:-10}; only=${3:-}
. "$(dirname "$0")/lib.sh"
for p in 19002 19003 19004 19005; do
  "$lb" serve --model async --listen 127.0.0.1:$p --quiet 2>/dev/null &
done
mapfile -t backends < <(balance_backends)
"$lb" balance --quiet --mode tcp --listen 127.0.0.1:14444 "${backends[@]}" 2>/dev/null &
"$lb" balance --quiet --mode http --listen 127.0.0.1:14445 "${backends[@]}" 2>/dev/null &
haproxy_conf 14446 14447
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 &
sleep 1

run() { # url, extra wrk args: prints "req/s p99_ms errors" (socket errors and non-2xx/3xx)
  local url=$1; shift
  wrk -t2 -c100 -d"${secs}s" --latency "$@" "$url" | awk '
    /Requests\/sec/ {r=$2}
    / 99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p=v}
    /Socket errors/ {gsub(/,/,""); e+=$4+$6+$8+$10}
    /Non-2xx/ {e+=$5}
    END {printf "%s %.2f %d\n", r, p, e}'
}

for test in "tcp close 14444 14446" "tcp keepalive 14444 14446" "http keepalive 14445 14447" "http close 14445 14447"; do
  set -- $test
  [ -n "$only" ] && [ "$1" != "$only" ] && continue
  hdr=(); [ "$2" = close ] && hdr=(-H 'Connection: close')
  ratios=(); tails=()
  for p in $(seq "$pairs"); do
    # Who goes first swaps every pair: a run leaves tens of thousands of
    # TIME_WAIT sockets behind for a minute, and the run after it is
    # measurably slower (the same binary measured ~10 % worse p99 in second place).
    if [ $((p % 2)) = 1 ]; then
      read -r h hp he < <(run "http://127.0.0.1:$4/" "${hdr[@]}")
      read -r l lp le < <(run "http://127.0.0.1:$3/" "${hdr[@]}")
    else
      read -r l lp le < <(run "http://127.0.0.1:$3/" "${hdr[@]}")
      read -r h hp he < <(run "http://127.0.0.1:$4/" "${hdr[@]}")
    fi
    r=$(awk -v a="$l" -v b="$h" 'BEGIN {printf "%.2f", a/b}'); ratios+=("$r")
    tails+=("$(awk -v a="$lp" -v b="$hp" 'BEGIN {printf "%.2f", a/b}')")
    echo "$1 $2 pair $p: haproxy $h req/s (p99 $hp ms, $he errors)  loadlab $l req/s (p99 $lp ms, $le errors)  ratio $r"
  done
  echo "$1 $2 MEDIAN loadlab/haproxy req/s $(printf '%s\n' "${ratios[@]}" | median), p99 $(printf '%s\n' "${tails[@]}" | median)"
done

echo "== cost: req/s through the balancer / req/s straight to one backend (keep-alive)"
read -r d _ < <(run http://127.0.0.1:19002/)
for t in "loadlab-tcp 14444" "loadlab-http 14445" "haproxy-tcp 14446" "haproxy-http 14447"; do
  set -- $t
  read -r v _ < <(run "http://127.0.0.1:$2/")
  echo "$1: $v req/s, direct $d req/s, ratio $(awk -v a="$v" -v b="$d" 'BEGIN {printf "%.2f", a/b}')"
done
