#!/usr/bin/env bash
# What a hostile server does to the load generator: loadlab bench beside
# Debian's ab, each against a Python server that answers every request
# one wrong way (a status line or headers without end, a body without
# end under each framing, interim answers without end, a negative length,
# a chunk extension or trailer without end, and 103 Early Hints before a
# good answer). Each run is `-n 2 -c 1 -s 3`, cut at 60 s; a markdown row
# per mode and tool gives the wall time, the exit status, the peak
# resident memory and the report's verdict.
#
#   scripts/hostile-server.sh [mode…]
#
# Needs python3, ab (apt-get install apache2-utils) and GNU time
# (/usr/bin/time). Uses 127.0.0.1:19090.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
modes=${*:-longline manyheaders endless hugecl hugechunk continues badcl chunkext trailers hints}
port=19090

cat >"$work/hostile.py" <<'PY'
import socket, sys, threading
mode, port = sys.argv[1], int(sys.argv[2])
FLOOD = {
    'longline': (b'HTTP/1.1 200 OK', b'x' * 65536),
    'manyheaders': (b'HTTP/1.1 200 OK\r\n', b'X-A: b\r\n' * 4096),
    'endless': (b'HTTP/1.0 200 OK\r\n\r\n', b'x' * 65536),
    'hugecl': (b'HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n', b'x' * 65536),
    'hugechunk': (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffff\r\n', b'x' * 65536),
    'continues': (b'', b'HTTP/1.1 100 Continue\r\n\r\n' * 2048),
    'chunkext': (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;', b'a' * 65536),
    'trailers': (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n', b'T: v\r\n' * 4096),
}
ONCE = {
    'badcl': b'HTTP/1.1 200 OK\r\nContent-Length: -5\r\nConnection: close\r\n\r\nhello',
    'hints': b'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n'
             b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
}
def answer(c):
    try:
        c.recv(65536)
        if mode in ONCE:
            c.sendall(ONCE[mode])
            return
        first, more = FLOOD[mode]
        c.sendall(first)
        while True:
            c.sendall(more)
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', port))
s.listen(128)
while True:
    threading.Thread(target=answer, args=(s.accept()[0],), daemon=True).start()
PY

echo "| server sends | tool | wall time | exit | peak RSS | report |"
echo "|---|---|---|---|---|---|"
for mode in $modes; do
  python3 "$work/hostile.py" "$mode" "$port" &
  srv=$!
  for _ in $(seq 100); do # until it listens (a loaded machine starts python slowly), 10 s at most
    ss -Hltn "sport = :$port" | grep -q . && break
    sleep 0.1
  done
  for tool in "$lb bench" ab; do
    start=$(date +%s.%N)
    rc=0
    /usr/bin/time -f %M -o "$work/rss" timeout 60 $tool -n 2 -c 1 -s 3 "http://127.0.0.1:$port/" >"$work/out" 2>&1 || rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    verdict=$({ grep -E '^(Complete|Failed) requests|^ *\(Connect|^Non-2xx|^Document Length|timeout|apr_|[Ee]rror' "$work/out" || true; } |
      sed 's/^Benchmarking .*(be patient)\.*//' | tr -s ' ' | paste -sd ';' | cut -c1-160)
    [ "$rc" = 124 ] && verdict="killed at 60 s${verdict:+; $verdict}"
    printf '| %s | %s | %.1f s | %s | %s MB | %s |\n' "$mode" "${tool##*/}" "$secs" "$rc" \
      "$(( $(tail -1 "$work/rss" | tr -dc 0-9) / 1024 ))" "${verdict:-—}"
  done
  kill "$srv"
  wait "$srv" 2>/dev/null || true
done
