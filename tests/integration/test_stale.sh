#!/bin/bash
# Stale serving: a tile past its freshness is served at once (X-Cache: STALE)
# for up to CACHE_STALE_TTL and revalidated in the background with
# If-None-Match; a failing HERE keeps the stale bytes coming.  Negative
# caching: a HERE 404 is remembered for CACHE_NEGATIVE_TTL seconds.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream
# One attempt per fetch: each background revalidation is one upstream request.
start_proxy main HERE_RETRIES=1 CACHE_NEGATIVE_TTL=2
PLOG=$PROXY_LOG
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# wait_path_requests PATH N: until the upstream has had N requests for PATH
# (a background revalidation happens after the response); 0 when it did.
wait_path_requests() {
    local deadline=$((SECONDS + 8))
    while [ "$(upstream_path_requests "$1")" -lt "$2" ]; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
    sleep 0.3   # the proxy stores what it got after the upstream answered
    return 0
}

# req_settled URL: GET URL until the answer is no longer STALE (the
# revalidation has been stored), for at most 5 s.
req_settled() {
    local deadline=$((SECONDS + 5))
    while :; do
        req GET "$1"
        [ "$(header X-Cache)" != STALE ] || [ "$SECONDS" -ge "$deadline" ] && return 0
        sleep 0.2
    done
}

# last_upstream PATH PYEXPR: PYEXPR on the last request r for PATH and the
# upstream's answer to it, a (its status).
last_upstream() {
    python3 - "$UPSTREAM_RECORD" "$1" "$2" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
reqs = [x for x in rows if "method" in x and x["path"] == sys.argv[2]]
resps = [x for x in rows if x.get("event") == "response" and x["path"] == sys.argv[2]]
r = reqs[-1] if reqs else {}
a = resps[-1]["status"] if resps else None
print(eval(sys.argv[3]))
EOF
}

# ------------------------------------------------ fresh, then stale
T=/base/mc/7/3/3/png
U=/v3$T
upstream_control maxage s=1
req GET "$P$T?indice=first"
check_status 200 "first request 200"
check_header X-Cache MISS "first request MISS"
check_header Cache-Control "public, max-age=1" "first request: HERE's max-age=1 passed on"
ETAG=$(header ETag)
SHA=$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)
sleep 2.1   # past max-age

# ------------------------------------------------ stale while HERE fails
upstream_control fail "status=500&times=-1&path=$U"
req GET "$P$T?indice=stale1"
check_status 200 "expired, HERE failing: still 200"
check_header X-Cache STALE "expired, HERE failing: X-Cache STALE"
assert_eq "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" "$SHA" "expired, HERE failing: the same bytes"
check_header ETag "$ETAG" "expired, HERE failing: the same ETag"
check_header Cache-Control "public, max-age=0" "expired, HERE failing: Cache-Control max-age=0"
if wait_path_requests "$U" 2; then
    ok "expired: the stale serve triggered a background revalidation"
else
    not_ok "expired: the stale serve triggered a background revalidation" "upstream saw $(upstream_path_requests "$U") requests for $U"
fi
assert_eq "$(last_upstream "$U" 'r["headers"].get("if-none-match")')" "$ETAG" \
    "expired: the revalidation carried If-None-Match with the cached ETag"
assert_eq "$(last_upstream "$U" 'a')" 500 "expired: and HERE answered it 500"
req GET "$P$T?indice=stale2"
check_status 200 "expired, revalidation failed: 200 again"
check_header X-Cache STALE "expired, revalidation failed: still STALE (the failure replaced nothing)"
assert_eq "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" "$SHA" "expired, revalidation failed: the same bytes"
wait_path_requests "$U" 3 || true

# ------------------------------------------------ HERE healthy: 304 refreshes
upstream_control reset   # healthy, max-age 3600, counters from 0
req GET "$P$T?indice=stale3"
check_status 200 "HERE healthy again: the expired tile is served at once"
check_header X-Cache STALE "HERE healthy again: X-Cache STALE"
assert_eq "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" "$SHA" "HERE healthy again: the same bytes"
if wait_path_requests "$U" 1; then
    ok "HERE healthy again: a background revalidation went upstream"
else
    not_ok "HERE healthy again: a background revalidation went upstream"
fi
assert_eq "$(last_upstream "$U" 'r["headers"].get("if-none-match")')" "$ETAG" \
    "HERE healthy again: the revalidation carried If-None-Match: $ETAG"
assert_eq "$(last_upstream "$U" 'a')" 304 "HERE healthy again: HERE answered 304 Not Modified"
req_settled "$P$T?indice=fresh"
check_status 200 "after the 304: 200"
check_header X-Cache HIT "after the 304: a HIT (fresh again)"
assert_eq "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" "$SHA" "after the 304: the same bytes"
check_header ETag "$ETAG" "after the 304: the same ETag"
assert_match "$(header Cache-Control)" '^public, max-age=3[0-9]{3}$' "after the 304: fresh for HERE's new max-age (3600)"
assert_eq "$(upstream_path_requests "$U")" 1 "after the 304: the HIT did not go upstream"

# ------------------------------------------------ a changed tile: 200 replaces
T=/base/mc/7/3/4/png
U=/v3$T
upstream_control maxage s=1
req GET "$P$T"
check_header X-Cache MISS "changed tile: MISS"
OLD_ETAG=$(header ETag)
OLD_SHA=$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)
sleep 2.1
upstream_control maxage s=3600
upstream_control revision n=1   # HERE has new bytes for it now
req GET "$P$T"
check_header X-Cache STALE "changed tile: expired, STALE"
assert_eq "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" "$OLD_SHA" "changed tile: the stale serve has the old bytes"
if wait_path_requests "$U" 2; then ok "changed tile: revalidated in the background"; else not_ok "changed tile: revalidated in the background"; fi
assert_eq "$(last_upstream "$U" 'r["headers"].get("if-none-match")')" "$OLD_ETAG" "changed tile: the revalidation carried the old ETag"
assert_eq "$(last_upstream "$U" 'a')" 200 "changed tile: HERE answered 200 with the new bytes"
req_settled "$P$T"
check_header X-Cache HIT "changed tile: then a HIT"
assert_eq "$(test "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" != "$OLD_SHA" && echo new || echo old)" new     "changed tile: the HIT has the new bytes"
assert_match "$(header ETag)" '.' "changed tile: the HIT has an ETag"
assert_eq "$(test "$(header ETag)" != "$OLD_ETAG" && echo new || echo old)" new "changed tile: the HIT has the new ETag"
assert_eq "$(wc -c <"$HTTP_BODY_FILE" | tr -d ' ')" "$(header Content-Length)" "changed tile: the new body is whole"
upstream_control revision n=0

# ------------------------------------------------ a slow revalidation holds up no one
# With fastcgi_keep_conn the worker's FastCGI connection is back in NGINX's
# keep-alive pool once the stale tile is out, and NGINX sends the next
# request on it: that request must not wait for HERE's answer.
T=/base/mc/7/3/8/png
U=/v3$T
T2=/base/mc/7/3/9/png
upstream_control maxage s=1
req GET "$P$T"
check_header X-Cache MISS "slow revalidation: the tile is fetched (max-age 1)"
upstream_control maxage s=3600
req GET "$P$T2"
check_header X-Cache MISS "slow revalidation: a second tile is fetched (max-age 3600)"
sleep 2.1
upstream_control delay "ms=3000&times=1&path=$U"
req GET "$P$T?indice=slowreval"
check_header X-Cache STALE "slow revalidation: the expired tile is served STALE"
t=$(curl -sS -o /dev/null -D "$RUN_DIR/next.headers" --max-time 20 -w '%{time_total}' "$P$T2?indice=next")
assert_eq "$(grep -i '^X-Cache:' "$RUN_DIR/next.headers" | tr -d '\r' | cut -d' ' -f2)" HIT \
    "slow revalidation: the next request (on the same FastCGI connection) is a HIT"
assert_eq "$(python3 -c "print($t < 1.5)")" True \
    "slow revalidation: and is not held up by HERE's 3 s answer (took ${t}s)"
assert_eq "$(upstream_path_requests "$U")" 2 "slow revalidation: the revalidation is under way"
req_settled "$P$T"
req_settled "$P$T"
check_header X-Cache HIT "slow revalidation: once HERE answered, the tile is fresh again (stored by the revalidation thread)"
upstream_control reset

# ------------------------------------------------ beyond CACHE_STALE_TTL
start_proxy shortstale HERE_RETRIES=1 CACHE_STALE_TTL=1
SLOG=$PROXY_LOG
start_nginx shortstale "$PROXY_ADDR"
S=$NGINX_URL/here-proxy
T=/base/mc/7/3/5/png
U=/v3$T
upstream_control maxage s=1
req GET "$S$T"
check_header X-Cache MISS "CACHE_STALE_TTL=1: MISS"
sleep 3.1   # past max-age + CACHE_STALE_TTL
upstream_control fail "status=500&times=-1&path=$U"
req GET "$S$T"
check_json_error 502 "past max-age + CACHE_STALE_TTL, HERE failing: 502 (nothing stale left to serve)"
upstream_control reset

# ------------------------------------------------ negative caching
T=/base/mc/7/3/6/png
U=/v3$T
upstream_control fail "status=404&times=1&path=$U"
req GET "$P$T?indice=neg1"
check_json_error 404 "HERE 404: 404 JSON"
req GET "$P$T?indice=neg2"
check_json_error 404 "HERE 404, asked again: 404 JSON (from the cache)"
check_header X-Cache HIT "HERE 404, asked again: X-Cache HIT"
assert_eq "$(upstream_path_requests "$U")" 1 "HERE 404, asked twice within CACHE_NEGATIVE_TTL: 1 upstream request"
sleep 2.1   # CACHE_NEGATIVE_TTL=2; negative entries are not served stale
req GET "$P$T?indice=neg3"
check_status 200 "after CACHE_NEGATIVE_TTL: asked HERE again, which has it now: 200"
check_header X-Cache MISS "after CACHE_NEGATIVE_TTL: a MISS, not a stale 404"
assert_eq "$(upstream_path_requests "$U")" 2 "after CACHE_NEGATIVE_TTL: 2 upstream requests"

# 401 and 5xx are never cached.
T=/base/mc/7/3/7/png
U=/v3$T
upstream_control fail "status=401&times=1&path=$U"
req GET "$P$T"
check_json_error 401 "HERE 401: 401 JSON"
req GET "$P$T"
check_status 200 "HERE 401 was not cached: next request 200"
assert_eq "$(upstream_path_requests "$U")" 2 "HERE 401 was not cached: 2 upstream requests"

n=$(python3 - "$PLOG" <<'EOF'
import json, sys
seen = {}
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "access" and o.get("indice", "-") != "-":
        seen[o["indice"]] = o.get("cache_status")
print(" ".join("%s=%s" % (k, seen.get(k)) for k in ("first", "stale1", "stale3", "fresh", "neg2")))
EOF
)
assert_eq "$n" "first=MISS stale1=STALE stale3=STALE fresh=HIT neg2=HIT" "access lines carry cache_status MISS/STALE/HIT"
check_log_json "$PLOG" "proxy log is JSON lines with complete access lines" 10
check_log_json "$SLOG" "shortstale proxy log is JSON lines" 2
check_no_key_leak "no key in responses or logs" "$PLOG" "$SLOG"
finish
