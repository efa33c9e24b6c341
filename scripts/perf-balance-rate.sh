#!/usr/bin/env bash
# Latency at a fixed offered load: loadlab balance and HAProxy in front of
# the same four `loadlab serve --model async` backends, each sent the same
# open-model load by `loadlab bench --rate` (a new connection per request
# unless -k), alternating who goes first. wrk's closed loop gives the
# faster balancer more load to carry; here both carry the same.
#
#   scripts/perf-balance-rate.sh [rounds] [rate] [tcp|http] [-k]
#
# Needs haproxy (apt-get install haproxy).
set -euo pipefail
rounds=${1:-4}; rate=${2:-3000}; mode=${3:-tcp}; ka=${4:-}
. "$(dirname "$0")/lib.sh"
for p in 19002 19003 19004 19005; do
  "$lb" serve --model async --listen 127.0.0.1:$p --quiet 2>/dev/null &
done
mapfile -t backends < <(balance_backends)
"$lb" balance --quiet --mode "$mode" --listen 127.0.0.1:14444 "${backends[@]}" 2>/dev/null &
cat >"$work/haproxy.cfg" <<CONF
global
    maxconn 8000
defaults
    mode $mode
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:14446
    default_backend be
backend be
    balance roundrobin
    http-reuse always
$(haproxy_servers)
CONF
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 &
sleep 1

run() { # name port: one line of figures
  "$lb" bench -q --format json --rate "$rate" -c 300 -t 8 $ka "http://127.0.0.1:$2/" | python3 -c '
import json, sys
r = json.load(sys.stdin)["runs"][0]; t = r["total"]
print("%-7s %5.0f req/s  failed %d  median %6.2f  p90 %6.2f  p99 %6.2f  p99.9 %6.2f ms" % (sys.argv[1],
      r["requests_per_second"], r["failed"] + r["non_2xx"], t["median_ms"], t["p90_ms"], t["p99_ms"], t["p99_9_ms"]))' "$1"
}

echo "== $mode ${ka:-new connection per request}, $rate req/s offered"
ratios=()
for i in $(seq "$rounds"); do
  if [ $((i % 2)) = 1 ]; then h=$(run haproxy 14446); l=$(run loadlab 14444); else l=$(run loadlab 14444); h=$(run haproxy 14446); fi
  echo "$h"; echo "$l"
  ratios+=("$(awk -v a="$(echo "$l" | awk '{print $13}')" -v b="$(echo "$h" | awk '{print $13}')" 'BEGIN {printf "%.2f", a/b}')")
done
echo "MEDIAN p99 loadlab/haproxy $(printf '%s\n' "${ratios[@]}" | median)  (pairs: ${ratios[*]})"
