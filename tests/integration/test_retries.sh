#!/bin/bash
# Retries (what can succeed later: 5xx, 429 with Retry-After; not 404),
# HERE_RETRIES attempts at most, and the circuit breaker: after
# HERE_BREAKER_THRESHOLD failed fetches misses are answered 503 without
# asking HERE, until a probe after HERE_BREAKER_COOLDOWN_MS succeeds.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream
# Short backoff: the test is about how many attempts, not how long.
start_proxy main HERE_RETRY_BASE_MS=20 HERE_RETRY_MAX_MS=2000
PLOG=$PROXY_LOG
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# attempts_logged INDICE: upstream_attempts of the access line with INDICE.
attempts_logged() {
    python3 - "$PLOG" "$1" <<'EOF'
import json, sys
v = "none"
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "access" and o.get("indice") == sys.argv[2]:
        v = o.get("upstream_attempts", "absent")
print(v)
EOF
}

# ------------------------------------------------ 500, 500, then 200
T=/base/mc/6/1/1/png
upstream_control fail "status=500&times=2&path=/v3$T"
req GET "$P$T?indice=twice500"
check_status 200 "500 twice then 200: the client gets 200"
check_header X-Cache MISS "500 twice then 200: X-Cache MISS"
assert_eq "$(head -c 8 "$HTTP_BODY_FILE" | od -An -tx1 | tr -d ' \n')" 89504e470d0a1a0a "500 twice then 200: a PNG"
assert_eq "$(upstream_path_requests "/v3$T")" 3 "500 twice then 200: 3 upstream attempts"
assert_eq "$(attempts_logged twice500)" 3 "500 twice then 200: access line says upstream_attempts 3"
req GET "$P$T"
check_header X-Cache HIT "500 twice then 200: the tile was cached"

# ------------------------------------------------ always 500
T=/base/mc/6/1/2/png
upstream_control fail "status=500&times=100&path=/v3$T"
req GET "$P$T?indice=always500"
check_json_error 502 "always 500: 502 JSON"
assert_eq "$(upstream_path_requests "/v3$T")" 3 "always 500: exactly 3 attempts (HERE_RETRIES default)"
assert_eq "$(attempts_logged always500)" 3 "always 500: access line says upstream_attempts 3"
check_last_response_clean "always 500: no key in the response"

# ------------------------------------------------ 503 once
T=/base/mc/6/1/3/png
upstream_control fail "status=503&times=1&path=/v3$T"
req GET "$P$T"
check_status 200 "503 once: retried, 200"
assert_eq "$(upstream_path_requests "/v3$T")" 2 "503 once: 2 attempts"

# ------------------------------------------------ 404 is not retried
T=/base/mc/6/1/4/png
upstream_control fail "status=404&times=1&path=/v3$T"
req GET "$P$T?indice=notfound"
check_json_error 404 "404: passed on as 404 JSON"
assert_eq "$(upstream_path_requests "/v3$T")" 1 "404: 1 attempt, not retried"
assert_eq "$(attempts_logged notfound)" 1 "404: access line says upstream_attempts 1"

# ------------------------------------------------ 401 is not retried
T=/base/mc/6/1/5/png
upstream_control fail "status=401&times=1&path=/v3$T"
req GET "$P$T"
check_json_error 401 "401: passed on as 401 JSON"
assert_eq "$(upstream_path_requests "/v3$T")" 1 "401: 1 attempt, not retried"

# ------------------------------------------------ 429 with Retry-After
# The imitation's 429 carries Retry-After: 1.
T=/base/mc/6/1/6/png
upstream_control fail "status=429&times=1&path=/v3$T"
req GET "$P$T?indice=ratelimited"
check_status 200 "429 with Retry-After: retried, 200"
assert_eq "$(upstream_path_requests "/v3$T")" 2 "429 with Retry-After: 2 attempts"
gap=$(python3 - "$UPSTREAM_RECORD" "/v3$T" <<'EOF'
import json, sys
ts = [r["ts"] for r in map(json.loads, open(sys.argv[1]))
      if r.get("path") == sys.argv[2] and "method" in r]
print("%.3f" % (ts[1] - ts[0]) if len(ts) == 2 else "attempts: %d" % len(ts))
EOF
)
assert_match "$gap" '^([1-9]|0\.9)' "429 with Retry-After: 1: the retry waited about a second (${gap} s)"

# ------------------------------------------------ 429 every time
T=/base/mc/6/1/7/png
upstream_control fail "status=429&times=100&path=/v3$T"
req GET "$P$T"
check_json_error 503 "429 every time: 503 JSON"
assert_match "$(header Retry-After)" '^[1-9][0-9]*$' "429 every time: the 503 has a Retry-After"
upstream_control reset

# Every exchange above is over, retried or not: none is left counted as
# waiting for a slot (retries once took one off the gauge each).
req GET "${P%/here-proxy}/metrics/prometheus"
assert_eq "$(prom_value hereproxy_upstream_queued)" 0 "after the retries: hereproxy_upstream_queued is 0"
assert_eq "$(prom_value hereproxy_upstream_inflight)" 0 "after the retries: hereproxy_upstream_inflight is 0"

# ------------------------------------------------ circuit breaker
# A cooldown long enough that a loaded machine cannot outrun it between
# the checks made while the breaker is open (2 s once did).
start_proxy breaker HERE_RETRIES=1 HERE_BREAKER_THRESHOLD=3 HERE_BREAKER_COOLDOWN_MS=6000
BLOG=$PROXY_LOG
start_nginx breaker "$PROXY_ADDR"
B=$NGINX_URL/here-proxy
req GET "$NGINX_URL/readyz"
assert_eq "$(json_field 'd.get("breaker")')" closed "breaker: /readyz says closed at first"
upstream_control fail "status=500&times=-1"
for i in 1 2 3; do
    req GET "$B/base/mc/9/1/$i/png"
    check_json_error 502 "breaker: failure $i of 3 -> 502"
done
assert_eq "$(upstream_requests)" 3 "breaker: 3 failures reached the upstream"
assert_eq "$(log_events "$BLOG" breaker_open)" 1 "breaker: the log has one breaker_open event"
req GET "$NGINX_URL/readyz"
assert_eq "$(json_field 'd.get("breaker")')" open "breaker: /readyz says open"
req GET "$B/base/mc/9/1/4/png?indice=shed"
check_json_error 503 "breaker open: the next miss is 503 JSON"
assert_match "$(header Retry-After)" '^[1-6]$' "breaker open: 503 with Retry-After of at most the cooldown (6 s)"
assert_eq "$(upstream_requests)" 3 "breaker open: the miss did not reach the upstream"
req GET "$B/base/mc/9/1/5/png"
check_json_error 503 "breaker open: another miss, 503 again"
assert_eq "$(upstream_requests)" 3 "breaker open: still nothing reached the upstream"

upstream_control reset   # HERE is healthy again
sleep 6.2                # the cooldown
req GET "$B/base/mc/9/1/6/png?indice=probe"
check_status 200 "breaker after the cooldown: the probe goes through, 200"
assert_eq "$(upstream_requests)" 1 "breaker after the cooldown: the probe reached the upstream"
assert_eq "$(log_events "$BLOG" breaker_closed)" 1 "breaker: the log has one breaker_closed event"
req GET "$NGINX_URL/readyz"
assert_eq "$(json_field 'd.get("breaker")')" closed "breaker: /readyz says closed again"
req GET "$B/base/mc/9/1/4/png"
check_status 200 "breaker closed: the miss that was shed is 200 now"
assert_eq "$(upstream_requests)" 2 "breaker closed: misses reach the upstream again"
assert_eq "$(python3 - "$BLOG" <<'EOF'
import json, sys
ev = []
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") in ("breaker_open", "breaker_closed"):
        ev.append("%s/%s" % (o["event"], o.get("level")))
print(" ".join(ev))
EOF
)" "breaker_open/warn breaker_closed/info" "breaker: open logged as warn, then closed as info"

check_log_json "$PLOG" "proxy log is JSON lines with complete access lines" 8
check_log_json "$BLOG" "breaker proxy log is JSON lines with complete access lines" 7
check_no_key_leak "no key in responses or logs" "$PLOG" "$BLOG"
finish
