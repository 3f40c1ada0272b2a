#!/bin/bash
# POST /admin/purge through NGINX, two instances on one memcached: the
# Bearer token guards it (off when HEREPROXY_ADMIN_TOKEN is unset); one
# tile is purged from memcached and from every instance's in-process tier
# (the purge log); everything is purged through a new cache generation
# that instances started later use too; each purge is logged and counted;
# the token appears in no log or response; with memcached gone a purge
# says it reached this instance only.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin

start_upstream
start_memcached
MC=127.0.0.1:$MEMCACHED_PORT
TOKEN="adm-$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n')"

for n in a b; do
    start_proxy "$n" "MEMCACHED_SERVERS=$MC" "HEREPROXY_ADMIN_TOKEN=$TOKEN"
    eval "LOG_$n=\$PROXY_LOG"
    start_nginx "$n" "$PROXY_ADDR"
    eval "URL_$n=\$NGINX_URL"
done
start_proxy off "MEMCACHED_SERVERS=$MC"
start_nginx off "$PROXY_ADDR"
URL_off=$NGINX_URL
AUTH=(-H "Authorization: Bearer $TOKEN")

# ------------------------------------------------------------------ guards
req POST "$URL_off/admin/purge?all=1" "${AUTH[@]}"
check_json_error 404 "no HEREPROXY_ADMIN_TOKEN: the admin endpoint is off (404)"
assert_contains "$HTTP_BODY" "HEREPROXY_ADMIN_TOKEN" "the 404 says which setting turns it on"
req POST "$URL_a/admin/purge?all=1"
check_json_error 401 "no Authorization: 401"
assert_contains "$(header WWW-Authenticate)" "Bearer" "401 carries WWW-Authenticate: Bearer"
req POST "$URL_a/admin/purge?all=1" -H "Authorization: Bearer ${TOKEN}x"
check_json_error 401 "a wrong token: 401"
req POST "$URL_a/admin/purge?all=1" -H "Authorization: Bearer ${TOKEN%?}"
check_json_error 401 "the token's prefix: 401"
req POST "$URL_a/admin/purge?all=1" -H "Authorization: Basic $(printf 'admin:%s' "$TOKEN" | base64 -w0)"
check_json_error 401 "the token as Basic credentials: 401"
req GET "$URL_a/admin/purge?all=1" "${AUTH[@]}"
check_json_error 405 "GET /admin/purge: 405"
check_header Allow POST "405 names POST in Allow"
req POST "$URL_a/admin/purge" "${AUTH[@]}"
check_json_error 400 "POST /admin/purge without a tile or all=1: 400"
req POST "$URL_a/admin/purge/here-proxy/base/mc/99/0/0/png" "${AUTH[@]}"
check_json_error 400 "purge of an invalid tile (z=99): 400"
req POST "$URL_a/admin/purge/metrics" "${AUTH[@]}"
check_json_error 400 "purge of something that is not a tile: 400"
assert_eq "$(log_events "$LOG_a" purge)" 0 "refused purges purge nothing (no purge event)"

# --------------------------------------------------------------- one tile
T=/base/mc/12/100/200/png
T2=/base/mc/12/100/201/png
for t in "$T" "$T2?style=explore.day&ppi=100"; do
    req GET "$URL_a/here-proxy$t"
    check_header X-Cache MISS "a: $t MISS"
    req GET "$URL_b/here-proxy$t"
    check_header X-Cache HIT "b: $t HIT (memcached)"
    req GET "$URL_b/here-proxy$t"
    check_header X-Cache HIT "b: $t HIT (in process)"
done
assert_eq "$(upstream_path_requests "/v3$T")" 1 "one upstream request for $T so far"

req POST "$URL_a/admin/purge/here-proxy$T?indice=ops" "${AUTH[@]}"
check_status 200 "purge one tile: 200"
assert_eq "$(json_field 'd["status"], d["scope"], d["in_memory"], d["in_memcached"]')" \
    '["purged", "tile", true, true]' "purge one tile: it was in a's memory and in memcached"
assert_match "$(json_field 'd["key"]')" '^base/mc/12/100/200/png' "the purge answers the canonical key"
# The same tile as another índice asks it, with its query in another order.
req POST "$URL_b/admin/purge/here-proxy$T2?ppi=100&indice=other&style=explore.day" "${AUTH[@]}"
assert_eq "$(json_field 'd["in_memory"], d["in_memcached"]')" '[true, true]' \
    "purge with the query reordered and another indice: the same entry"

sleep 3    # every instance reads the purge log each second
req GET "$URL_b/here-proxy$T"
check_header X-Cache MISS "b: the tile a purged is a MISS (gone from b's memory too)"
req GET "$URL_a/here-proxy$T"
check_header X-Cache HIT "a: HIT again (b fetched it anew)"
assert_eq "$(upstream_path_requests "/v3$T")" 2 "one more upstream request after the purge, not more"
req GET "$URL_a/here-proxy$T2?style=explore.day&ppi=100"
check_header X-Cache MISS "a: the tile b purged is a MISS on a"

req POST "$URL_a/admin/purge/here-proxy/base/mc/12/100/202/png" "${AUTH[@]}"
assert_eq "$(json_field 'd["in_memory"], d["in_memcached"]')" '[false, false]' \
    "purge of a tile never cached: 200, found nowhere"

# ------------------------------------------------------------- everything
U1=/here-proxy/base/mc/12/300/1/png
U2=/here-proxy/base/mc/12/300/2/jpeg
for u in "$U1" "$U2"; do
    req GET "$URL_a$u"
    req GET "$URL_b$u"
    check_header X-Cache HIT "before purging everything: b HIT $u"
done
req POST "$URL_b/admin/purge?all=1" "${AUTH[@]}"
check_status 200 "purge everything: 200"
GEN=$(json_field 'd["generation"]')
assert_match "$GEN" '^[0-9a-f]{1,16}$' "purge everything: a new generation ($GEN)"
assert_eq "$(json_field 'd["scope"]')" all "purge everything: scope all"
req GET "$URL_b$U2"
check_header X-Cache MISS "b: MISS right after its purge of everything"
sleep 3
req GET "$URL_a$U1"
check_header X-Cache MISS "a: MISS after b purged everything"
req GET "$URL_a$U2"
check_header X-Cache HIT "a: HIT on what b fetched in the new generation"
assert_eq "$(upstream_path_requests "/v3/base/mc/12/300/1/png")" 2 "U1: fetched twice in all"
assert_eq "$(upstream_path_requests "/v3/base/mc/12/300/2/jpeg")" 2 "U2: fetched twice in all"

# An instance started now takes the generation from memcached.
start_proxy c "MEMCACHED_SERVERS=$MC" "HEREPROXY_ADMIN_TOKEN=$TOKEN"
LOG_c=$PROXY_LOG
start_nginx c "$PROXY_ADDR"
req GET "$NGINX_URL$U1"
check_header X-Cache HIT "an instance started after the purge: HIT in the new generation"

# ----------------------------------------------------------- logs, metrics
assert_eq "$(log_events "$LOG_a" purge)" 2 "a logged its two purges"
assert_eq "$(log_events "$LOG_b" purge)" 2 "b logged its two purges"
line=$(grep '"event":"purge"' "$LOG_b" | tail -n 1)
assert_contains "$line" '"scope":"all"' "the purge event names its scope"
assert_contains "$line" "\"generation\":\"$GEN\"" "the purge event names the new generation"
assert_contains "$line" '"remote_addr":"127.0.0.1"' "the purge event names who asked"
assert_eq "$(log_events "$LOG_a" cache_generation)" 1 "a logged the generation it took from b's purge"
req GET "$URL_a/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_cache_purges_total{scope="tile"} 2' "a: hereproxy_cache_purges_total tile 2"
req GET "$URL_b/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_cache_purges_total{scope="all"} 1' "b: hereproxy_cache_purges_total all 1"

# ---------------------------------------------------------- memcached gone
stop_memcached
req POST "$URL_a/admin/purge/here-proxy$T" "${AUTH[@]}"
check_json_error 503 "memcached down: a purge says it reached this instance only (503)"
assert_contains "$HTTP_BODY" "memcached" "the 503 names memcached"
[ -n "$(header Retry-After)" ] && ok "the 503 has Retry-After" || not_ok "the 503 has Retry-After"

leaks=$(grep -rlaF -- "$TOKEN" "$RUN_DIR" 2>/dev/null | tr '\n' ' ')
assert_eq "$leaks" "" "the admin token appears in no log, response or file written"
for n in a b c; do
    eval "f=\$LOG_$n"
    check_log_json "$f" "proxy $n: every log line is JSON"
done
finish
