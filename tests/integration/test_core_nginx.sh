#!/bin/bash
# Core behaviour through NGINX (fastcgi_pass, keep-alive) + spawn-fcgi +
# hereproxy + the local HERE imitation.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream
start_proxy main
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy
PLOG=$PROXY_LOG

# ---------------------------------------------------------------- tile MISS
TILE=/base/mc/3/2/1/png
req GET "$P$TILE?indice=myIdx_1&apiKey=clientkey&app_id=x" \
    -H 'Cookie: session=c00kie' -H 'Authorization: Bearer clienttoken' \
    -H 'Origin: http://example.com'
check_status 200 "tile: first request 200"
check_header X-Cache MISS "tile: first request X-Cache MISS"
check_header X-Index myIdx_1 "tile: X-Index is the indice given"
assert_match "$(header Content-Type)" '^image/png' "tile: Content-Type image/png"
assert_match "$(header Cache-Control)" '^public, *max-age=[0-9]+$' "tile: Cache-Control public, max-age=N"
ETAG=$(header ETag)
assert_match "$ETAG" '.' "tile: ETag present"
assert_match "$(header Access-Control-Allow-Origin)" '.' "tile: Access-Control-Allow-Origin present"
assert_eq "$(head -c 8 "$HTTP_BODY_FILE" | od -An -tx1 | tr -d ' \n')" 89504e470d0a1a0a "tile: body is a PNG"
BODY1=$(save_body tile1.png)
assert_eq "$(upstream_requests)" 1 "tile: MISS reached the upstream once"

# ---------------------------------------------------------------- tile HIT
req GET "$P$TILE?indice=other.label&apiKey=clientkey&app_id=x"
check_status 200 "tile: second request 200"
check_header X-Cache HIT "tile: second request X-Cache HIT"
check_header X-Index other.label "tile: X-Index on a HIT is this request's indice"
if cmp -s "$BODY1" "$HTTP_BODY_FILE"; then ok "tile: HIT body identical to MISS body"; else not_ok "tile: HIT body identical to MISS body" "$(wc -c <"$BODY1") vs $(wc -c <"$HTTP_BODY_FILE") bytes"; fi
check_header ETag "$ETAG" "tile: HIT has the same ETag"
assert_match "$(header Content-Type)" '^image/png' "tile: HIT Content-Type image/png"
assert_eq "$(upstream_requests)" 1 "tile: HIT did not reach the upstream"

req GET "$P$TILE"
check_header X-Index - "tile: X-Index is - without indice"
req GET "$P$TILE?size=256&style=explore.day"
check_header X-Cache HIT "tile: explicit HERE defaults share the cache entry"

# ---------------------------------------------------------------- 304
req GET "$P$TILE?indice=x" -H "If-None-Match: $ETAG"
check_status 304 "tile: If-None-Match with its ETag -> 304"
assert_eq "$(wc -c <"$HTTP_BODY_FILE" | tr -d ' ')" 0 "tile: 304 has no body"
req GET "$P$TILE" -H 'If-None-Match: "not-the-etag"'
check_status 200 "tile: non-matching If-None-Match -> 200"

# ---------------------------------------------------------------- HEAD
req HEAD "$P$TILE?indice=h"
check_status 200 "HEAD tile 200"
assert_match "$(header Content-Type)" '^image/png' "HEAD tile Content-Type image/png"
check_header X-Index h "HEAD tile X-Index"
assert_match "$(header Content-Length)" '^[1-9][0-9]*$' "HEAD tile Content-Length is the tile's size"

# ---------------------------------------------------------------- short form
before=$(upstream_requests)
req GET "$P/mc/4/5/6/png?indice=short"
check_status 200 "short form /here-proxy/mc/z/x/y/png 200"
assert_match "$(header Content-Type)" '^image/png' "short form Content-Type image/png"
check_header X-Index short "short form X-Index"
assert_eq "$(upstream_requests)" $((before + 1)) "short form fetched from upstream once"
req GET "$P/base/mc/4/5/6/png"
check_header X-Cache HIT "short form and /base/ share the cache entry"

# ---------------------------------------------------------------- upstream saw
upstream_record_check 'r["query"].get("apiKey") == ["'"$SERVER_KEY"'"]' \
    "upstream: every request carried apiKey = the server key (not the client's)"
upstream_record_check '"indice" not in r["query"]' "upstream: indice never forwarded"
upstream_record_check '"app_id" not in r["query"]' "upstream: app_id dropped"
upstream_record_check '"cookie" not in r["headers"] and "authorization" not in r["headers"]' \
    "upstream: no Cookie or Authorization header forwarded"
upstream_record_check 'not r["path"].startswith("/v3/base/mc/4/") or r["path"] == "/v3/base/mc/4/5/6/png"' \
    "upstream: short form became /v3/base/mc/4/5/6/png"
upstream_record_check '"/mc/" not in r["path"] or (r["query"].get("style") == ["explore.day"] and r["query"].get("size") == ["256"] and r["query"].get("ppi") == ["100"] and r["query"].get("scale") == ["1"])' \
    "upstream: tile requests carry HERE defaults style/size/ppi/scale"

# ---------------------------------------------------------------- metadata
before=$(upstream_requests)
req GET "$P/copyright?indice=meta"
check_status 200 "copyright 200"
assert_match "$(header Content-Type)" '^application/json' "copyright Content-Type application/json"
assert_eq "$(json_field 'type(d).__name__')" dict "copyright body is a JSON object"
assert_eq "$(upstream_requests)" $((before + 1)) "copyright fetched from upstream once"
req GET "$P/copyright?indice=meta2"
check_status 200 "copyright again 200"
assert_eq "$(upstream_requests)" $((before + 1)) "copyright second request served from cache"

# ---------------------------------------------------------------- health, CORS
req GET "$NGINX_URL/healthz"
check_status 200 "/healthz 200"
assert_eq "$(json_field 'd.get("status")')" ok '/healthz body {"status":"ok"}'

req OPTIONS "$P$TILE" -H 'Origin: http://example.com' -H 'Access-Control-Request-Method: GET'
check_status 204 "OPTIONS preflight 204"
assert_match "$(header Access-Control-Allow-Origin)" '.' "OPTIONS has Access-Control-Allow-Origin"

# ---------------------------------------------------------------- 404 / 405
req GET "$P/unknown"
check_json_error 404 "unknown path /here-proxy/unknown -> 404 JSON"
req GET "$P/base/tiles/1/0/0/png"
check_json_error 404 "unknown path /here-proxy/base/tiles/1/0/0/png -> 404 JSON"
req POST "$P$TILE"
check_json_error 405 "POST tile -> 405 JSON"

# ---------------------------------------------------------------- 400s
before=$(upstream_requests)
bad() { # NAME PATH_AND_QUERY [NEEDLE that the error message must name]
    req GET "$P$2"
    check_json_error 400 "400 JSON: $1 ($2)"
    if [ -n "${3:-}" ]; then
        assert_contains "$(json_field 'd.get("error")')" "$3" "400 error message names $3"
    fi
}
bad "z=21 above HEREPROXY_ZMAX" /base/mc/21/0/0/png
bad "x out of range for z" /base/mc/2/4/0/png
bad "y out of range for z" /base/mc/2/0/4/png
bad "leading zero" /base/mc/05/1/1/png
bad "negative x" /base/mc/3/-1/1/png
bad "%2e%2e in a tile path" /base/mc/3/%2e%2e/1/png
bad ".. in a tile path" /base/mc/3/../1/png
bad "unknown parameter" "/base/mc/1/0/0/png?foo=1" foo
bad "bad style" "/base/mc/1/0/0/png?style=fancy.day" style
bad "logistics style without HERE_ALLOW_LOGISTICS" "/base/mc/1/0/0/png?style=logistics.day" style
bad "size=300" "/base/mc/1/0/0/png?size=300" size
bad "ppi=300" "/base/mc/1/0/0/png?ppi=300" ppi
bad "repeated style" "/base/mc/1/0/0/png?style=explore.day&style=explore.night" style
bad "indice with a space" "/base/mc/1/0/0/png?indice=a%20b" indice
bad "indice of 65 chars" "/base/mc/1/0/0/png?indice=$(printf 'a%.0s' $(seq 65))" indice
bad "empty indice" "/base/mc/1/0/0/png?indice=" indice
bad "bad lang" "/base/mc/1/0/0/png?lang=english" lang
bad "bad pview" "/base/mc/1/0/0/png?pview=x" pview
bad "format gif" /base/mc/1/0/0/gif
bad "resource nope" /nope/mc/1/0/0/png
assert_eq "$(upstream_requests)" "$before" "400s never reached the upstream"
req GET "$P/base/mc/1/0/0/png?indice=$(printf 'a%.0s' $(seq 64))&lang=en&pview=IND&features=pois:disabled"
check_status 200 "64-char indice, lang, pview, features accepted"

# ---------------------------------------------------------------- upstream 4xx/5xx
upstream_control fail 'status=404&times=1'
req GET "$P/base/mc/5/1/1/png"
check_json_error 404 "upstream 404 -> 404 JSON"
check_last_response_clean "upstream 404: no key in the response"
upstream_control fail 'status=401&times=1'
req GET "$P/base/mc/5/1/2/png"
check_json_error 401 "upstream 401 -> 401 JSON"
check_last_response_clean "upstream 401: no key in the response"
upstream_control fail 'status=500&times=10'
req GET "$P/base/mc/5/1/3/png"
check_json_error 502 "upstream 500 -> 502 JSON"
check_last_response_clean "upstream 500: no key in the response"
upstream_control reset
req GET "$P/base/mc/5/1/3/png"
check_status 200 "after the upstream recovers the tile is 200 (errors not cached)"

# ---------------------------------------------------------------- timeout, size, unreachable
start_proxy limits HERE_TIMEOUT_MS=700 UPSTREAM_MAX_BYTES=2048
LOG_L=$PROXY_LOG
start_nginx limits "$PROXY_ADDR"
L=$NGINX_URL/here-proxy
upstream_control delay 'ms=3000&path=/v3/base/mc/7/'
req GET "$L/base/mc/7/1/1/png"
check_json_error 504 "upstream slower than HERE_TIMEOUT_MS -> 504 JSON"
upstream_control reset
req GET "$L/base/mc/7/1/2/png"
check_json_error 502 "upstream response above UPSTREAM_MAX_BYTES -> 502 JSON"
req GET "$L/base/mc/7/1/2/png"
check_json_error 502 "an oversized response is not cached (502 again)"
start_proxy unreachable "HERE_BASE_URL=http://127.0.0.1:$(free_port)/v3"
LOG_X=$PROXY_LOG
start_nginx unreachable "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/7/1/3/png"
check_json_error 502 "unreachable upstream -> 502 JSON"
check_no_key_leak "limits: no key in responses or logs" "$LOG_L" "$LOG_X"
check_log_json "$LOG_L" "limits proxy: JSON log lines" 3
check_log_json "$LOG_X" "unreachable proxy: JSON log lines" 1

# ---------------------------------------------------------------- logs, leaks
check_no_key_leak "the server key appears in no response and not in the proxy log" "$PLOG"
check_log_json "$PLOG" "every proxy stderr line is JSON; access lines have ts/method/path/indice/cache_status/status/latency_ms/bytes" 20
# the access line of the first request names its indice and MISS
if python3 - "$PLOG" <<'EOF'; then ok "access log has the MISS line with indice myIdx_1"; else not_ok "access log has the MISS line with indice myIdx_1" "$(grep -m3 myIdx_1 "$PLOG")"; fi
import json, sys
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("indice") == "myIdx_1" and o.get("cache_status") == "MISS" and o.get("status") == 200:
        sys.exit(0)
sys.exit(1)
EOF

finish
