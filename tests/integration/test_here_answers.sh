#!/bin/bash
# HERE's answers are checked before they are cached or passed on, and
# clients are told little while operators are told everything (issue 20):
# the Content-Type allow-list (coalesced followers included), header values
# that do not fit, redirects, X-Content-Type-Options on every response,
# error bodies without addresses or curl's words, and clients that go away.
# Through NGINX (the shipped configuration) + spawn-fcgi + the local HERE.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream
start_proxy main
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy
PLOG=$PROXY_LOG

PNG_MAGIC=89504e470d0a1a0a
magic() { head -c 8 "${1:-$HTTP_BODY_FILE}" | od -An -tx1 | tr -d ' \n'; }

# log_check LOG PYEXPR NAME: some line l (a dict) of LOG satisfies PYEXPR.
log_check() {
    local out
    if out=$(python3 - "$1" "$2" <<'EOF'
import json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        l = json.loads(line)
    except ValueError:
        continue
    if isinstance(l, dict) and eval(sys.argv[2]):
        sys.exit(0)
print("no log line satisfies " + sys.argv[2]); sys.exit(1)
EOF
    ); then ok "$3"; else not_ok "$3" "$out"; fi
}

# access_field LOG REQUEST_ID PYEXPR: PYEXPR on the request's access line l.
access_field() { access_line "$1" request_id "$2" "$3"; }

# nosniff NAME: the last response says nosniff, once.
nosniff() {
    check_header X-Content-Type-Options nosniff "nosniff: $1"
    assert_eq "$(header_count X-Content-Type-Options)" 1 "nosniff: $1, one header"
}

# ------------------------------------------------- Content-Type: tile text/html
T1=/base/mc/4/1/1/png
upstream_control ctype "value=text/html&times=1&path=/v3$T1"
req GET "$P$T1?indice=ct" -H "X-Request-ID: ctype-html-1"
check_json_error 502 "text/html tile: 502 with a JSON error"
assert_eq "$(json_field 'd["error"]')" "HERE sent an unexpected Content-Type" \
    "text/html tile: the error says why"
assert_not_contains "$(header Content-Type)" html "text/html tile: not passed on as text/html"
nosniff "a 502"
assert_contains "$(access_field "$PLOG" ctype-html-1 'l.get("error")')" '"text/html"' \
    "text/html tile: the access line names the Content-Type HERE sent"
assert_eq "$(access_field "$PLOG" ctype-html-1 'l.get("status")')" 502 \
    "text/html tile: the access line says 502"
req GET "$P$T1?indice=ct"
check_status 200 "text/html tile: not cached, the next request is served"
check_header X-Cache MISS "text/html tile: the next request is a MISS"
assert_eq "$(magic)" "$PNG_MAGIC" "text/html tile: the next request gets the PNG"
check_header Content-Type image/png "text/html tile: then image/png"
assert_eq "$(upstream_path_requests "/v3$T1")" 2 "text/html tile: HERE was asked twice"
req GET "$P$T1?indice=ct"
check_header X-Cache HIT "text/html tile: the PNG is cached"

# No Content-Type at all, and one in another case with parameters.
T2=/base/mc/4/1/2/png
upstream_control ctype "value=&times=1&path=/v3$T2"
req GET "$P$T2?indice=ct"
check_json_error 502 "no Content-Type: 502"
assert_eq "$(json_field 'd["error"]')" "HERE sent an unexpected Content-Type" \
    "no Content-Type: the error says why"
T3=/base/mc/4/1/3/png
upstream_control ctype "value=IMAGE/PNG%3B%20foo%3Dbar&times=1&path=/v3$T3"
req GET "$P$T3?indice=ct"
check_status 200 "IMAGE/PNG; foo=bar: allowed"
check_header Content-Type image/png "IMAGE/PNG; foo=bar: served as image/png"
req GET "$P$T3?indice=ct"
check_header X-Cache HIT "IMAGE/PNG; foo=bar: cached"
check_header Content-Type image/png "IMAGE/PNG; foo=bar: cached as image/png"
# A JPEG type for a PNG URL is still an image: HERE decides the format.
T4=/base/mc/4/1/4/png
upstream_control ctype "value=image/svg%2Bxml&times=1&path=/v3$T4"
req GET "$P$T4?indice=ct"
check_json_error 502 "image/svg+xml tile: 502"

# ------------------------------------------------- coalesced followers
TC=/base/mc/5/7/7/png
upstream_control delay "ms=1000&times=1&path=/v3$TC"
upstream_control ctype "value=text/html&times=1&path=/v3$TC"
URLS=()
for i in 1 2 3 4 5 6; do URLS+=("$P$TC?indice=co$i"); done
fetch_parallel "$RUN_DIR/coal" "${URLS[@]}"
assert_eq "$(results_eval "$RUN_DIR/coal" '[r["status"] for r in rs]')" \
    "[502, 502, 502, 502, 502, 502]" "coalesced text/html: every reader gets 502"
assert_eq "$(results_eval "$RUN_DIR/coal" \
    'sorted(set(json.loads(open("%s/%d.body" % ("'"$RUN_DIR/coal"'", r["i"])).read())["error"] for r in rs))')" \
    '["HERE sent an unexpected Content-Type"]' "coalesced text/html: every reader gets the reason, not the body"
assert_eq "$(results_eval "$RUN_DIR/coal" \
    'sorted(set(r["headers"].get("content-type") for r in rs))')" \
    '["application/json"]' "coalesced text/html: no reader gets text/html"
assert_eq "$(upstream_path_requests "/v3$TC")" 1 "coalesced text/html: HERE was asked once"
log_check "$PLOG" 'l.get("path") == "/here-proxy'"$TC"'" and l.get("cache_status") == "COALESCED" and l.get("status") == 502' \
    "coalesced text/html: followers (COALESCED) were answered 502 too"

# ------------------------------------------------- Content-Type: metadata
upstream_control ctype "value=text/html&times=1&path=/v3/copyright"
req GET "$P/copyright?indice=meta"
check_json_error 502 "text/html metadata: 502"
assert_eq "$(json_field 'd["error"]')" "HERE sent an unexpected Content-Type" \
    "text/html metadata: the error says why"
upstream_control ctype "value=image/png&times=1&path=/v3/copyright"
req GET "$P/copyright?indice=meta"
check_json_error 502 "image/png metadata: 502 (metadata is JSON only)"
req GET "$P/copyright?indice=meta"
check_status 200 "metadata: then 200"
check_header Content-Type application/json "metadata: then application/json"
assert_eq "$(upstream_path_requests /v3/copyright)" 3 "metadata: the refused answers were not cached"

# ------------------------------------------------- a header that does not fit
TL=/base/mc/4/2/2/png
upstream_control longetag "bytes=3000&times=1&path=/v3$TL"
req GET "$P$TL?indice=le"
check_status 200 "3,000-byte ETag: the tile is served"
assert_eq "$(header_count ETag)" 0 "3,000-byte ETag: dropped whole, not cut"
assert_eq "$(magic)" "$PNG_MAGIC" "3,000-byte ETag: the body is the PNG"
req GET "$P$TL?indice=le"
check_header X-Cache HIT "3,000-byte ETag: cached"
assert_eq "$(header_count ETag)" 0 "3,000-byte ETag: cached without an ETag"
log_check "$PLOG" 'l.get("event") == "upstream_header_dropped" and l.get("header") == "ETag" and l.get("length") == 3000 and l.get("reason") == "too_long" and l.get("path") == "'"$TL"'"' \
    "3,000-byte ETag: the log says which header was dropped and how long it was"
assert_eq "$(log_events "$PLOG" upstream_header_dropped)" 1 "3,000-byte ETag: logged once"
# An ETag that fits (256 - 1 bytes) is kept whole.
TK=/base/mc/4/2/3/png
upstream_control longetag "bytes=255&times=1&path=/v3$TK"
req GET "$P$TK?indice=le"
assert_eq "$(header ETag | wc -c)" 256 "255-byte ETag: kept whole"

# ------------------------------------------------- redirects
TR=/base/mc/4/3/3/png
upstream_control redirect "status=301&location=http://evil.invalid/x.png&times=1&path=/v3$TR"
req GET "$P$TR?indice=rd"
check_json_error 502 "301 from HERE: 502"
assert_eq "$(json_field 'd["error"]')" "HERE answered 301 Moved Permanently (redirects are not followed)" \
    "301 from HERE: the error names the redirect"
assert_eq "$(header_count Location)" 0 "301 from HERE: no Location passed on"
assert_not_contains "$(cat "$HTTP_HEADERS_FILE" "$HTTP_BODY_FILE")" evil.invalid \
    "301 from HERE: the target appears nowhere in the response"
upstream_control redirect "status=307&location=http://evil.invalid/y&times=1&path=/v3/info"
req GET "$P/info?indice=rd"
check_json_error 502 "307 for metadata: 502"
assert_contains "$(json_field 'd["error"]')" "307 Temporary Redirect" "307 for metadata: named"
req GET "$P$TR?indice=rd"
check_status 200 "301 from HERE: not cached, the next request is served"
assert_eq "$(upstream_path_requests "/v3$TR")" 2 "301 from HERE: HERE was asked again"

# ------------------------------------------------- nosniff everywhere
req GET "$P$T1?indice=ct"
check_status 200 "nosniff: a hit"
nosniff "a 200 hit"
ETAG=$(header ETag)
req GET "$P$T1?indice=ct" -H "If-None-Match: $ETAG"
check_status 304 "nosniff: a 304"
nosniff "a 304"
req HEAD "$P$T1?indice=ct"
nosniff "a HEAD"
req GET "$P/base/mc/4/5/0/png?indice=ns"
check_header X-Cache MISS "nosniff: a miss"
nosniff "a 200 miss"
req GET "$P/copyright?indice=ns"
nosniff "metadata"
req GET "$P/nosuch/thing"
check_json_error 404 "nosniff: a 404"
nosniff "a 404"
req GET "$P/base/mc/99/0/0/png"
check_json_error 400 "nosniff: a 400"
nosniff "a 400"
req POST "$P$T1"
check_status 405 "nosniff: a 405"
nosniff "a 405"
req GET "$NGINX_URL/healthz"
check_status 200 "nosniff: /healthz"
nosniff "/healthz"
req GET "$NGINX_URL/readyz"
check_status 200 "nosniff: /readyz"
nosniff "/readyz"
req GET "$NGINX_URL/metrics"
check_status 200 "nosniff: /metrics from loopback"
nosniff "/metrics"
req GET "$NGINX_URL/metrics/prometheus"
nosniff "/metrics/prometheus"
req OPTIONS "$P$T1" -H "Origin: http://example.com" \
    -H "Access-Control-Request-Method: GET"
check_status 204 "nosniff: a CORS preflight"
nosniff "a preflight"
req POST "$NGINX_URL/admin/purge?all=1"
check_json_error 404 "nosniff: /admin/purge (off)"
nosniff "/admin/purge"

# ------------------------------------------------- a client that goes away
# Mid-body: HERE sends 1 KiB, then the rest 2.5 s later; the client gives up
# after 1 s, NGINX hangs up, and the proxy's next write fails. (200000 bytes:
# more than HERE_BUFFER_MAX_BYTES, so that it streams.)
TS=/base/mc/6/5/5/jpeg
upstream_control slowbody "first=1024&after_ms=2500&bytes=200000&times=1&path=/v3$TS"
curl -s --max-time 1 -o "$RUN_DIR/gone1.body" -H "X-Request-ID: gone-mid-body" \
    "$P$TS?size=512&indice=gone" 2>/dev/null
assert_eq "$(access_field "$PLOG" gone-mid-body 'l.get("status")')" 499 \
    "client gone mid-body: logged as 499, not 200"
GONE_BYTES=$(access_field "$PLOG" gone-mid-body 'l.get("bytes")')
assert_contains "$(access_field "$PLOG" gone-mid-body 'l.get("error")')" "client went away" \
    "client gone mid-body: the error says so"
req GET "$P$TS?size=512&indice=gone"
check_header X-Cache HIT "client gone mid-body: the tile was still stored"
FULL=$(wc -c <"$HTTP_BODY_FILE" | tr -d ' ')
if [ "$GONE_BYTES" -lt "$FULL" ] 2>/dev/null; then
    ok "client gone mid-body: bytes ($GONE_BYTES) are what was written, less than the tile ($FULL)"
else
    not_ok "client gone mid-body: bytes are what was written" "logged $GONE_BYTES, tile $FULL"
fi
# Before the response: HERE takes 1.5 s, the client gives up after 0.5 s;
# the whole response would have gone out in one write and been lost.
TD=/base/mc/6/6/6/png
upstream_control delay "ms=1500&times=1&path=/v3$TD"
curl -s --max-time 0.5 -o /dev/null -H "X-Request-ID: gone-before" \
    "$P$TD?indice=gone" 2>/dev/null
assert_eq "$(access_field "$PLOG" gone-before 'l.get("status")')" 499 \
    "client gone before the response: logged as 499, not 200"
assert_eq "$(access_field "$PLOG" gone-before 'l.get("bytes")')" 0 \
    "client gone before the response: 0 bytes written"
req GET "$P$TD?indice=gone"
check_header X-Cache HIT "client gone before the response: the tile was still stored"
req GET "$P$TD?indice=gone" -H "X-Request-ID: stayed"
assert_eq "$(access_field "$PLOG" stayed 'l.get("status")')" 200 \
    "a client that stays: 200 on the access line"

# ------------------------------------------------- metrics
req GET "$NGINX_URL/metrics/prometheus"
PROM=$RUN_DIR/prom.txt
cp "$HTTP_BODY_FILE" "$PROM"
prom() { grep -F "$1" "$PROM" | awk '{print $2}'; }
assert_eq "$(prom 'hereproxy_errors_total{indice="ct",kind="upstream_bad_response"}')" 3 \
    "metrics: refused Content-Types counted as upstream_bad_response"
assert_eq "$(prom 'hereproxy_errors_total{indice="rd",kind="upstream_3xx"}')" 2 \
    "metrics: redirects counted as upstream_3xx"
assert_eq "$(prom 'hereproxy_upstream_requests_total{indice="ct",outcome="bad_response"}')" 3 \
    "metrics: the upstream exchanges counted as bad_response"
assert_eq "$(prom 'hereproxy_requests_total{indice="gone",cache="miss",code="499"}')" 2 \
    "metrics: clients gone counted under code 499"

# ------------------------------------------------- unreachable: tell little
DEAD_PORT=$(free_port)
start_proxy dead "HERE_BASE_URL=http://127.0.0.1:$DEAD_PORT/v3" HERE_RETRIES=1
start_nginx dead "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/2/1/1/png?indice=dead" -H "X-Request-ID: dead-1"
check_json_error 502 "unreachable: 502"
assert_eq "$(json_field 'd["error"]')" "HERE unreachable" "unreachable: the body says what kind of failure"
BODY=$(cat "$HTTP_BODY_FILE")
assert_not_contains "$BODY" "127.0.0.1" "unreachable: no address in the body"
assert_not_contains "$BODY" "$DEAD_PORT" "unreachable: no port in the body"
assert_not_contains "$BODY" "onnect" "unreachable: no curl text in the body"
check_header X-Request-ID dead-1 "unreachable: the client has the request id"
assert_contains "$(access_field "$PROXY_LOG" dead-1 'l.get("error")')" "$DEAD_PORT" \
    "unreachable: the access line with that request id has curl's detail"
assert_contains "$(access_field "$PROXY_LOG" dead-1 'l.get("error")')" "HERE unreachable: " \
    "unreachable: ... after the client's text"

check_no_key_leak "no response or log holds the HERE key" "$PLOG" "$PROXY_LOG"
finish
