#!/bin/bash
# RATE_LIMIT_SHARED=memcached: two proxy instances (each behind its own
# NGINX) sharing one memcached serve only the limit together; the
# per-índice upstream quota is shared the same way.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin

start_upstream
start_memcached
MC=127.0.0.1:$MEMCACHED_PORT
COMMON=(MEMCACHED_SERVERS=$MC RATE_LIMIT_SHARED=memcached
    RATE_LIMIT_INDEX=10/minute QUOTA_UPSTREAM_INDEX_OVERRIDES=q:3/day)

start_proxy a "${COMMON[@]}"
LOG_A=$PROXY_LOG
start_nginx a "$PROXY_ADDR"
A=$NGINX_URL/here-proxy
start_proxy b "${COMMON[@]}"
LOG_B=$PROXY_LOG
start_nginx b "$PROXY_ADDR"
B=$NGINX_URL/here-proxy

# The windows are aligned to the clock's minutes: do not straddle one.
while [ "$(date -u +%S | sed 's/^0//')" -ge 45 ]; do sleep 1; done

urls=()
for i in $(seq 0 12); do
    urls+=("$A/base/mc/8/$i/4/png?indice=shared" "$B/base/mc/8/$((i + 13))/4/png?indice=shared")
done
fetch_parallel "$RUN_DIR/both" "${urls[@]}"
assert_eq "$(results_eval "$RUN_DIR/both" 'Counter(r["status"] for r in rs)')" \
    '{"200": 10, "429": 16}' "26 concurrent requests, 13 to each instance, 10/minute shared: exactly 10 tiles in all"
assert_eq "$(upstream_requests)" 10 "HERE saw only the 10"
assert_eq "$(results_eval "$RUN_DIR/both" 'sorted(int(r["headers"]["ratelimit-remaining"]) for r in rs if r["status"] == 200)')" \
    '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]' "the 10 tiles counted one shared window down: RateLimit-Remaining 9 .. 0"
assert_eq "$(results_eval "$RUN_DIR/both" 'all(1 <= int(r["headers"]["ratelimit-reset"]) <= 60 and r["headers"]["ratelimit-limit"] == "10" for r in rs)')" \
    true "RateLimit-Limit 10 and RateLimit-Reset 1..60 on all 26"
assert_eq "$(results_eval "$RUN_DIR/both" 'all(1 <= int(r["headers"]["retry-after"]) <= 60 for r in rs if r["status"] == 429)')" \
    true "each 429 has Retry-After 1..60 (the end of the window)"

req GET "$A/base/mc/8/0/4/png?indice=shared"
check_json_error 429 "instance A: the shared índice stays limited"
req GET "$B/base/mc/8/0/4/png?indice=shared"
check_json_error 429 "instance B: the shared índice stays limited"
req GET "$B/base/mc/8/0/4/png?indice=another"
check_status 200 "instance B: another índice is untouched"
check_header RateLimit-Remaining 9 "instance B: another índice has its own window"

# ------------------------------------------------ the quota is shared too
req GET "$A/base/mc/12/1/1/png?indice=q"
check_status 200 "quota q:3/day: fetch 1 via A"
req GET "$B/base/mc/12/2/1/png?indice=q"
check_status 200 "quota q:3/day: fetch 2 via B"
req GET "$A/base/mc/12/3/1/png?indice=q"
check_status 200 "quota q:3/day: fetch 3 via A"
before=$(upstream_requests)
req GET "$B/base/mc/12/4/1/png?indice=q"
check_json_error 503 "quota q:3/day: fetch 4 via B is refused: both instances count in memcached"
req GET "$A/base/mc/12/4/1/png?indice=q"
check_json_error 503 "quota q:3/day: ... and via A"
assert_eq "$(upstream_requests)" "$before" "quota spent: HERE was not asked"
req GET "$B/base/mc/12/1/1/png?indice=q"
check_status 200 "quota spent: B still serves the tile A cached (memcached tier)"

check_log_json "$LOG_A" "proxy A log is JSON lines with complete access lines" 5
check_log_json "$LOG_B" "proxy B log is JSON lines with complete access lines" 5
check_no_key_leak "no key in responses or logs" "$LOG_A" "$LOG_B"
finish
