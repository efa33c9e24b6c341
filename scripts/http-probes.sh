#!/usr/bin/env bash
# serve's answers beside nginx's: the same raw requests (validators,
# conditional requests, ranges, HEAD, Host, transfer codings, methods,
# OPTIONS, request lines, paths, bounds) to nginx and to `loadlab serve`, both serving the lab's site
# from internal/site/www, and a markdown table of what each answered:
# the status and the headers that carry the semantics.
#
#   scripts/http-probes.sh [model]
#
# Needs nginx (apt-get install nginx) and python3. Uses 127.0.0.1:18082 for nginx
# and :19082 for loadlab.
set -euo pipefail
model=${1:-async}
. "$(dirname "$0")/lib.sh"
root=$(pwd)/internal/site/www
start_nginx 18082 "root $root;"
"$lb" serve --model "$model" --root "$root" --listen 127.0.0.1:19082 --quiet 2>/dev/null &
sleep 0.3

file=/testing.txt
size=$(stat -c %s "$root$file")
mtime=$(date -u -r "$root$file" '+%a, %d %b %Y %H:%M:%S GMT')
etag=$(printf '"%x-%x"' "$(stat -c %Y "$root$file")" "$size")

# ask PORT RAW: the status and the semantic headers of the answer, on one
# line. The request goes out in one write: nginx closes at once after
# some 400s, and bytes arriving after that would reset the connection
# and lose its answer.
ask() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
port, raw = int(sys.argv[1]), sys.argv[2].encode().decode("unicode_escape").encode("latin-1")
s = socket.create_connection(("127.0.0.1", port), timeout=2)
s.sendall(raw)
data = b""
try:
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError:
    pass
if data and not data.startswith(b"HTTP/"):
    print("(an HTTP/0.9 answer: the body alone)", end="")
    sys.exit()
lines = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "(no answer in 2 s)"
keep = ("etag", "content-range", "allow", "accept-ranges", "content-length", "last-modified")
heads = []
for h in lines[1:]:
    name = h.split(":")[0].lower()
    if name in keep or h.lower().startswith("content-type: multipart"):
        heads.append(h.split("boundary=")[0] + ("boundary=…" if "boundary=" in h else ""))
print(status, "; ".join(heads), end="")
PY
}

g="Host: t\r\nConnection: close"
probes=(
  "GET a file|GET $file HTTP/1.1\r\n$g\r\n\r\n"
  "If-None-Match: the ETag|GET $file HTTP/1.1\r\n$g\r\nIf-None-Match: $etag\r\n\r\n"
  "If-None-Match: W/ the ETag|GET $file HTTP/1.1\r\n$g\r\nIf-None-Match: W/$etag\r\n\r\n"
  "If-None-Match: *|GET $file HTTP/1.1\r\n$g\r\nIf-None-Match: *\r\n\r\n"
  "If-None-Match: \"nomatch\" + matching If-Modified-Since|GET $file HTTP/1.1\r\n$g\r\nIf-None-Match: \"nomatch\"\r\nIf-Modified-Since: $mtime\r\n\r\n"
  "If-Modified-Since: its time|GET $file HTTP/1.1\r\n$g\r\nIf-Modified-Since: $mtime\r\n\r\n"
  "If-Match: \"other\"|GET $file HTTP/1.1\r\n$g\r\nIf-Match: \"other\"\r\n\r\n"
  "Range: bytes=0-9|GET $file HTTP/1.1\r\n$g\r\nRange: bytes=0-9\r\n\r\n"
  "Range: bytes=10-|GET $file HTTP/1.1\r\n$g\r\nRange: bytes=10-\r\n\r\n"
  "Range: bytes=-5|GET $file HTTP/1.1\r\n$g\r\nRange: bytes=-5\r\n\r\n"
  "Range: bytes=SIZE- (unsatisfiable)|GET $file HTTP/1.1\r\n$g\r\nRange: bytes=$size-\r\n\r\n"
  "Range + If-Range: the ETag|GET $file HTTP/1.1\r\n$g\r\nRange: bytes=0-2\r\nIf-Range: $etag\r\n\r\n"
  "Range + If-Range: \"old\"|GET $file HTTP/1.1\r\n$g\r\nRange: bytes=0-2\r\nIf-Range: \"old\"\r\n\r\n"
  "Range: bytes=0-2,4-5|GET $file HTTP/1.1\r\n$g\r\nRange: bytes=0-2,4-5\r\n\r\n"
  "HEAD with Range: bytes=0-9|HEAD $file HTTP/1.1\r\n$g\r\nRange: bytes=0-9\r\n\r\n"
  "HEAD, HTTP/1.0, no Host|HEAD $file HTTP/1.0\r\n\r\n"
  "Host: a b|GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n"
  "Host: x/y|GET / HTTP/1.1\r\nHost: x/y\r\nConnection: close\r\n\r\n"
  "Transfer-Encoding: chunked, gzip|POST / HTTP/1.1\r\n$g\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
  "BREW (unknown method)|BREW $file HTTP/1.1\r\n$g\r\n\r\n"
  "DELETE a file|DELETE $file HTTP/1.1\r\n$g\r\n\r\n"
  "OPTIONS *|OPTIONS * HTTP/1.1\r\n$g\r\n\r\n"
  "OPTIONS a file|OPTIONS $file HTTP/1.1\r\n$g\r\n\r\n"
  "HTTP/0.9: GET $file and no version|GET $file\r\n"
  "HTTP/3.0, the head not yet ended|GET $file HTTP/3.0\r\nHost: t\r\n"
  "HTTP/1.10|GET $file HTTP/1.10\r\n$g\r\n\r\n"
  "lowercase method|get $file HTTP/1.1\r\n$g\r\n\r\n"
  "two spaces after the method|GET  $file HTTP/1.1\r\n$g\r\n\r\n"
  "Range: bytes=5-2 (last before first)|GET $file HTTP/1.1\r\n$g\r\nRange: bytes=5-2\r\n\r\n"
  "a directory without its slash|GET /images HTTP/1.1\r\n$g\r\n\r\n"
  "two slashes|GET /$file HTTP/1.1\r\n$g\r\n\r\n"
  "dot-dot inside the root|GET /images/..$file HTTP/1.1\r\n$g\r\n\r\n"
  "dot-dot above the root|GET /..$file HTTP/1.1\r\n$g\r\n\r\n"
  "an encoded slash|GET /images%2f..%2F$file HTTP/1.1\r\n$g\r\n\r\n"
  "an encoded NUL|GET $file%00 HTTP/1.1\r\n$g\r\n\r\n"
  "a 9,000-byte path|GET /$(printf 'a%.0s' {1..9000}) HTTP/1.1\r\n$g\r\n\r\n"
  "a 9,000-byte header line|GET $file HTTP/1.1\r\n$g\r\nX-A: $(printf 'a%.0s' {1..9000})\r\n\r\n"
  "DEL in a header value|GET $file HTTP/1.1\r\n$g\r\nX-A: a\x7fb\r\n\r\n"
  "HTTP/2's preface|PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

echo "| request | nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') | loadlab serve --model $model |"
echo "|---|---|---|"
for p in "${probes[@]}"; do
  name=${p%%|*} raw=${p#*|}
  echo "| $name | $(ask 18082 "$raw") | $(ask 19082 "$raw") |"
done
