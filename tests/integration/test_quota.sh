#!/bin/bash
# HERE's bill: the per-índice upstream quota, the daily budget, and HERE
# refusing (401 again and again; 403s for one style: only that style) each
# put their scope in cache-only mode:
# cached and stale tiles are still served, misses get 503 with Retry-After
# and a JSON reason, HERE is not asked, and the log says so (entering and
# leaving).
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream

# ------------------------------------------------ per-índice quota
start_proxy quota QUOTA_UPSTREAM_INDEX=1000/day \
    QUOTA_UPSTREAM_INDEX_OVERRIDES=small:3/day,free:off
LOG_Q=$PROXY_LOG
start_nginx quota "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

for i in 1 2 3; do
    req GET "$P/base/mc/7/$i/5/png?indice=small"
    check_status 200 "small (3/day): fetch $i of 3 is 200"
done
before=$(upstream_requests)
req GET "$P/base/mc/7/4/5/png?indice=small"
check_json_error 503 "small: the 4th fetch is refused with 503 JSON"
assert_contains "$(json_field 'd["error"]')" "quota of indice small" "small: the 503 says the índice's quota is spent"
ra=$(header Retry-After)
now=$(date -u +%s)
assert_eq "$([ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le $((86400 - now % 86400 + 1)) ] && echo sane)" sane \
    "small: Retry-After ($ra) runs to the end of the UTC day at most"
assert_eq "$(upstream_requests)" "$before" "small: HERE was not asked"
req GET "$P/base/mc/7/2/5/png?indice=small"
check_status 200 "small: a cached tile is still served"
check_header X-Cache HIT "small: ... as a HIT"
req GET "$P/copyright?indice=small"
check_json_error 503 "small: uncached metadata is refused too"

req GET "$P/base/mc/7/4/5/png?indice=other"
check_status 200 "other índice: the tile small could not get is fetched"
check_header X-Cache MISS "other índice: a MISS from HERE"
req GET "$P/base/mc/7/4/5/png?indice=small"
check_status 200 "small: once another índice cached it, small gets it from the cache"
for i in 1 2 3 4 5; do
    req GET "$P/base/mc/7/$i/6/png?indice=free"
    [ "$HTTP_STATUS" = 200 ] || break
done
check_status 200 "override free:off: 5 fetches, all 200"
assert_eq "$(log_events "$LOG_Q" cache_only_start 'o.get("scope") == "indice" and o.get("indice") == "small" and o.get("cause") == "quota" and o.get("retry_after_s", 0) > 0')" 1 \
    "log: one cache_only_start event for índice small, cause quota"
req GET "$NGINX_URL/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_cache_only{scope="indice",indice="small"} 1' \
    "metrics: hereproxy_cache_only 1 for índice small"
assert_not_contains "$HTTP_BODY" 'indice="other"} 1' "metrics: no cache-only series for índice other"
assert_contains "$HTTP_BODY" 'hereproxy_cache_only{scope="all"} 0' "metrics: the proxy as a whole is not cache-only"
assert_contains "$HTTP_BODY" 'hereproxy_upstream_requests_total{indice="small",outcome="cache_only"} 2' \
    "metrics: small's two refused misses counted as outcome cache_only"
assert_contains "$HTTP_BODY" 'hereproxy_errors_total{indice="small",kind="cache_only"} 2' \
    "metrics: ... and as error kind cache_only"

# ------------------------------------------------ fleet-wide daily budget
start_proxy budget HERE_DAILY_BUDGET=4
LOG_B=$PROXY_LOG
start_nginx budget "$PROXY_ADDR"
B=$NGINX_URL/here-proxy
for i in 1 2 3 4; do
    req GET "$B/base/mc/10/$i/9/png?indice=i$((i % 2))"
    check_status 200 "budget 4: fetch $i of 4 is 200"
done
before=$(upstream_requests)
for ind in i0 i1 fresh; do
    req GET "$B/base/mc/10/5/9/png?indice=$ind"
    check_json_error 503 "budget spent: a miss for índice $ind is 503"
done
assert_contains "$(json_field 'd["error"]')" "HERE_DAILY_BUDGET" "budget spent: the 503 names HERE_DAILY_BUDGET"
assert_match "$(header Retry-After)" '^[1-9][0-9]*$' "budget spent: Retry-After set"
assert_eq "$(upstream_requests)" "$before" "budget spent: HERE was not asked"
req GET "$B/base/mc/10/3/9/png?indice=fresh"
check_status 200 "budget spent: cached tiles are still served to every índice"
assert_eq "$(log_events "$LOG_B" cache_only_start 'o.get("scope") == "all" and o.get("cause") == "budget"')" 1 \
    "log: one cache_only_start event, scope all, cause budget"

# ------------------------------------------------ HERE answers 401 again and again
# 8 s of cache-only: room for the checks below on a loaded machine.
start_proxy deny HERE_DENY_THRESHOLD=3 HERE_CACHE_ONLY_S=8 HERE_BREAKER_THRESHOLD=0
LOG_D=$PROXY_LOG
start_nginx deny "$PROXY_ADDR"
D=$NGINX_URL/here-proxy
req GET "$D/base/mc/11/1/1/png"
check_status 200 "deny: a tile cached while HERE is fine"
upstream_control maxage s=1
req GET "$D/base/mc/11/2/1/png"
check_status 200 "deny: a tile cached with max-age 1 (stale soon)"
upstream_control maxage s=3600
upstream_control fail "status=401&times=3"
for i in 1 2 3; do
    req GET "$D/base/mc/11/$((i + 2))/1/png"
    check_status 401 "deny: HERE answers 401 ($i of 3)"
done
sleep 1.2
before=$(upstream_requests)
req GET "$D/base/mc/11/9/1/png"
check_json_error 503 "deny: after 3 401s in a row a miss is 503"
assert_contains "$(json_field 'd["error"]')" "401" "deny: the reason says HERE answered 401"
assert_match "$(header Retry-After)" '^[1-8]$' "deny: Retry-After is HERE_CACHE_ONLY_S (8) at most"
req GET "$D/base/mc/11/1/1/png"
check_status 200 "deny: a cached tile is still served"
check_header X-Cache HIT "deny: ... as a HIT"
req GET "$D/base/mc/11/2/1/png"
check_status 200 "deny: a stale tile is still served"
check_header X-Cache STALE "deny: ... as STALE"
sleep 0.5
assert_eq "$(upstream_requests)" "$before" "deny: HERE was not asked (no miss, no revalidation)"
assert_eq "$(log_events "$LOG_D" cache_only_start 'o.get("scope") == "all" and o.get("cause") == "here_denied"')" 1 \
    "log: cache_only_start, scope all, cause here_denied"
req GET "$NGINX_URL/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_cache_only{scope="all"} 1' "metrics: hereproxy_cache_only{scope=all} 1 while HERE refuses"

sleep 8.5
req GET "$D/base/mc/11/9/1/png"
check_status 200 "deny: after HERE_CACHE_ONLY_S the proxy asks HERE again"
req GET "$NGINX_URL/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_cache_only{scope="all"} 0' "metrics: hereproxy_cache_only{scope=all} back to 0"
assert_eq "$(log_events "$LOG_D" cache_only_end 'o.get("scope") == "all"')" 1 \
    "log: cache_only_end, scope all"

# ------------------------------------------------ HERE refuses one índice's style
# Índice sat asks six times for a style the plan lacks (HERE 403s it: the
# fail rule matches zoom 13, where only satellite tiles are asked for):
# only satellite requests become cache-only, for every índice; another
# índice's miss with the default style is still fetched. Before, three 403s
# made the whole fleet cache-only.
start_proxy scoped HERE_CACHE_ONLY_S=30
LOG_S=$PROXY_LOG
start_nginx scoped "$PROXY_ADDR"
S=$NGINX_URL/here-proxy
upstream_control reset
upstream_control fail "status=403&times=6&path=/mc/13/"
statuses=""
for i in 1 2 3 4 5 6; do
    req GET "$S/base/mc/13/$i/1/png?indice=sat&style=satellite.day"
    statuses="$statuses $HTTP_STATUS"
done
assert_eq "$statuses" " 403 403 403 503 503 503" \
    "scoped: HERE's 403 three times, then satellite is cache-only (503)"
assert_contains "$(json_field 'd["error"]')" "style=satellite.day" \
    "scoped: the 503 names the parameters HERE refused"
assert_match "$(header Retry-After)" '^([1-9]|[12][0-9]|30)$' \
    "scoped: Retry-After is HERE_CACHE_ONLY_S (30) at most"
before=$(upstream_requests)
req GET "$S/base/mc/12/1/1/png?indice=other"
check_status 200 "scoped: another índice's miss with the default style is fetched"
check_header X-Cache MISS "scoped: ... as a MISS"
assert_eq "$(upstream_requests)" "$((before + 1))" "scoped: ... from HERE (counted upstream)"
req GET "$S/base/mc/12/2/1/png?indice=sat"
check_status 200 "scoped: índice sat's own default-style miss is fetched too"
before=$(upstream_requests)
req GET "$S/base/mc/12/3/1/png?indice=other&style=satellite.day"
check_json_error 503 "scoped: satellite is refused for every índice while scoped"
assert_contains "$(json_field 'd["error"]')" "cache-only" "scoped: ... as cache-only"
assert_eq "$(upstream_requests)" "$before" "scoped: ... without asking HERE"
req GET "$NGINX_URL/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_cache_only{scope="params",params="style=satellite.day"} 1' \
    "metrics: hereproxy_cache_only 1 for the parameter set"
assert_contains "$HTTP_BODY" 'hereproxy_cache_only{scope="all"} 0' \
    "metrics: the proxy as a whole is not cache-only"
assert_eq "$(log_events "$LOG_S" cache_only_start 'o.get("scope") == "params" and o.get("params") == "style=satellite.day" and o.get("cause") == "here_denied" and o.get("status") == 403')" 1 \
    "log: one cache_only_start, scope params, for style=satellite.day"
assert_eq "$(log_events "$LOG_S" cache_only_start 'o.get("scope") == "all"')" 0 \
    "log: no cache_only_start for scope all"

# 403s for HERE's default parameters are about the plan itself: everything.
upstream_control reset
upstream_control fail "status=403&times=3&path=/mc/14/"
for i in 1 2 3; do
    req GET "$S/base/mc/14/$i/1/png?indice=other"
    check_status 403 "scoped: HERE answers 403 for the default style ($i of 3)"
done
before=$(upstream_requests)
req GET "$S/base/mc/12/9/1/png?indice=third"
check_json_error 503 "scoped: after 3 default-style 403s every miss is 503"
assert_eq "$(upstream_requests)" "$before" "scoped: ... and HERE is not asked"
req GET "$S/base/mc/12/1/1/png?indice=third"
check_status 200 "scoped: a cached tile is still served"
assert_eq "$(log_events "$LOG_S" cache_only_start 'o.get("scope") == "all" and o.get("status") == 403')" 1 \
    "log: cache_only_start, scope all, for the default parameters' 403s"

for f in "$LOG_Q" "$LOG_B" "$LOG_D" "$LOG_S"; do
    check_log_json "$f" "$(basename "$f") is JSON lines with complete access lines" 5
done
check_no_key_leak "no key in responses or logs" "$LOG_Q" "$LOG_B" "$LOG_D" "$LOG_S"
finish
