#!/bin/bash
# Hostile input through NGINX: every trick gets a 4xx with a JSON body
# {"error", "status"}, never a 5xx, and never costs an upstream request; the
# proxy survives.  An upstream that sends more than UPSTREAM_MAX_BYTES
# without a Content-Length is cut off, answered 502 and not cached; control
# bytes in upstream header values are never reflected to clients.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream
start_proxy main UPSTREAM_MAX_BYTES=65536
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy
PLOG=$PROXY_LOG

# raw_req PATH_AND_QUERY: send the request target byte for byte (bash $'..'
# escapes allowed), as curl might re-encode it.  Sets HTTP_STATUS, HTTP_BODY.
raw_req() {
    python3 - "$NGINX_PORT" "$1" "$HTTP_BODY_FILE" "$HTTP_HEADERS_FILE" <<'EOF' >"$RUN_DIR/raw.status"
import socket, sys
port, target, bodyf, headf = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
t = target.encode("utf-8", "surrogateescape")
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(b"GET " + t + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
data = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    data += c
head, _, body = data.partition(b"\r\n\r\n")
open(headf, "wb").write(head + b"\r\n")
open(bodyf, "wb").write(body)
print(head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "none")
EOF
    HTTP_STATUS=$(cat "$RUN_DIR/raw.status")
    HTTP_BODY=$(tr -d '\0' <"$HTTP_BODY_FILE" | head -c 20000)
    cat "$HTTP_HEADERS_FILE" "$HTTP_BODY_FILE" >>"$RUN_DIR/all-responses.txt"
}

upstream_control reset
before=$(upstream_requests)
# hostile NAME CODE TARGET: the target (after $P) gets CODE with a JSON body.
hostile() {
    if [ "${3#RAW}" != "$3" ]; then
        raw_req "/here-proxy${3#RAW}"
    else
        req GET "$P$3"
    fi
    check_json_error "$2" "hostile: $1 -> $2 JSON"
}
T=/base/mc/3/2/1/png
hostile ".. segment" 400 "/base/mc/3/../1/png"
hostile "%2e%2e segment" 400 "/base/mc/3/%2e%2e/1/png"
hostile "%2F in the path" 400 "/base/mc/3/2%2F1/png"
hostile "double encoding %252e%252e" 400 "/base/mc/3/%252e%252e/1/png"
hostile "double encoding in a parameter" 400 "$T?style=%2565xplore.day"
hostile "%00 in the indice" 400 "$T?indice=ab%00cd"
hostile "%00 in the path" 400 "/base/mc/3/2/1%00/png"
hostile "CRLF in a parameter" 400 "$T?indice=a%0d%0aX-Evil:%201"
hostile "CRLF in style" 400 "$T?style=explore.day%0d%0aHost:evil"
hostile "@host in the path" 404 "/@evil.example/base/mc/3/2/1/png"
hostile "@host in a parameter" 400 "$T?style=explore.day@evil.example"
hostile "absolute URL in the path" 400 "/http://evil.example/base/mc/3/2/1/png"
hostile "scheme-relative path" 400 "//evil.example/base/mc/3/2/1/png"
hostile "absolute URL in a parameter" 400 "$T?style=http://evil.example/"
hostile "z=99" 400 "/base/mc/99/0/0/png"
hostile "leading zeros in z" 400 "/base/mc/003/2/1/png"
hostile "leading zeros in x" 400 "/base/mc/3/02/1/png"
hostile "huge x" 400 "/base/mc/3/99999999999999999999/1/png"
hostile "repeated parameter" 400 "$T?size=256&size=256"
hostile "repeated indice" 400 "$T?indice=a&indice=b"
PARAMS=$(python3 -c 'print("&".join("p%d=1" % i for i in range(2000)))')
hostile "2,000 parameters" 414 "$T?$PARAMS"
PARAMS=$(python3 -c 'print("&".join("p%d=1" % i for i in range(100)))')
hostile "100 parameters (under the URI cap)" 400 "$T?$PARAMS"
PARAMS=$(python3 -c 'print("&".join("style=explore.day" for i in range(200)))')
hostile "200 repeated parameters" 400 "$T?$PARAMS"
BIG=$(head -c 10240 /dev/zero | tr '\0' a)
hostile "a 10 KB indice" 414 "$T?indice=$BIG"
hostile "a 5 KB URI" 414 "$T?indice=a&style=$(head -c 5000 /dev/zero | tr '\0' b)"
# Beyond what NGINX accepts: its own 414 / 400 / 494, answered in JSON by
# the error_page locations of conf/nginx/hereproxy.conf.
hostile "a 20 KB URI (NGINX's own cap)" 414 "$T?indice=$BIG$BIG"
req GET "$P$T" -H "X-Big: $BIG$BIG"
check_json_error 400 "hostile: a 20 KB header -> 400 JSON (NGINX's cap)"
req GET "$P$T" -H "Cookie: $BIG" -H "X-Big: $BIG" -H "X-Big2: $BIG" -H "X-Big3: $BIG" -H "X-Big4: $BIG"
check_json_error 400 "hostile: 50 KB of headers -> 400 JSON (NGINX's cap)"
hostile "non-UTF-8 bytes raw in the query" 400 "RAW$T?indice="$'\xff\xfe\xc0\xaf'
hostile "non-UTF-8 bytes raw in the path" 400 "RAW/base/mc/3/2/1/png"$'\xc3\x28'
hostile "non-UTF-8 percent-encoded in the indice" 400 "$T?indice=%ff%fe"
hostile "overlong UTF-8 slash" 400 "/base/mc/3/2%c0%af1/png"
assert_eq "$(upstream_requests)" "$before" "hostile: not one request reached the upstream"
req GET "$P$T"
check_status 200 "hostile: the proxy still serves a tile afterwards"
kill -0 "$PROXY_PID" 2>/dev/null && ok "hostile: the proxy process is alive" ||
    not_ok "hostile: the proxy process is alive"

# ------------------------------------------- oversized chunked upstream body
upstream_control reset
upstream_control chunked 'bytes=300000&times=-1&path=/v3/base/mc/6/'
req GET "$P/base/mc/6/1/1/png"
case $HTTP_STATUS in
502) check_json_error 502 "chunked body over UPSTREAM_MAX_BYTES -> 502 JSON" ;;
curl-failed*) ok "chunked body over UPSTREAM_MAX_BYTES: the client is cut off" ;;
*) not_ok "chunked body over UPSTREAM_MAX_BYTES -> 502 or cut" "$(_last_response)" ;;
esac
req GET "$P/base/mc/6/1/1/png"
assert_match "$HTTP_STATUS" '^(502|curl-failed)' "the oversized body was not cached (502 again)"
assert_eq "$(upstream_path_requests /v3/base/mc/6/1/1/png)" 2 "each oversized attempt went upstream (nothing cached)"
upstream_control reset
upstream_control chunked 'bytes=0&times=1&path=/v3/base/mc/6/2/2/'
req GET "$P/base/mc/6/2/2/png"
check_status 200 "a chunked body under the cap is served"
req GET "$P/base/mc/6/2/2/png"
check_header X-Cache HIT "a chunked body under the cap is cached"

# --------------------------------------- control bytes in upstream headers
upstream_control badheader 'times=1&path=/v3/base/mc/6/3/3/'
req GET "$P/base/mc/6/3/3/png" -H 'Origin: http://example.com'
check_status 200 "upstream headers with CR/NUL: the tile is still served"
if grep -qai 'X-Injected' "$HTTP_HEADERS_FILE" || LC_ALL=C grep -qaP '[\x00-\x08\x0b\x0c\x0e-\x1f]' "$HTTP_HEADERS_FILE" ||
    tr -d '\r\n' <"$HTTP_HEADERS_FILE" | LC_ALL=C grep -qaP '\r'; then
    not_ok "no control byte or injected header reaches the client" "$(cat -A "$HTTP_HEADERS_FILE")"
else
    ok "no control byte or injected header reaches the client"
fi
assert_match "$(header ETag)" '^("[0-9a-f]+")?$' "the ETag passed on is clean (or dropped)"
req GET "$P/base/mc/6/3/3/png"
check_header X-Cache HIT "the entry cached from that response is served"
assert_not_contains "$(cat "$HTTP_HEADERS_FILE")" X-Injected "the cached entry carries no injected header"

check_no_key_leak "hostile: no key in responses or logs" "$PLOG"
check_log_json "$PLOG" "hostile: every proxy log line is JSON" 20
finish
