#!/bin/bash
# HERE_MAX_INFLIGHT caps the transfers to HERE in progress; a miss that
# waits longer than HERE_QUEUE_TIMEOUT_MS for a slot is answered 503 with
# Retry-After and a JSON body, and never reaches HERE.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream
start_proxy capped HERE_MAX_INFLIGHT=2 HERE_QUEUE_TIMEOUT_MS=200
PLOG=$PROXY_LOG
start_nginx capped "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

upstream_control delay "ms=2000&times=-1"
urls=()
for i in $(seq 0 9); do urls+=("$P/base/mc/12/$i/5/png?indice=cap$i"); done
fetch_parallel "$RUN_DIR/cap" "${urls[@]}"
R=$RUN_DIR/cap
assert_eq "$(results_eval "$R" 'dict(Counter(x["status"] for x in rs))')" '{"200": 2, "503": 8}' \
    "10 concurrent misses, HERE_MAX_INFLIGHT=2: 2 answered 200, 8 shed with 503"
assert_eq "$(results_eval "$R" 'all(x["headers"].get("retry-after", "").isdigit() and int(x["headers"]["retry-after"]) >= 1 for x in rs if x["status"] == 503)')" true \
    "every 503 has a Retry-After of at least 1 s"
assert_eq "$(results_eval "$R" 'all(x["headers"].get("content-type", "").startswith("application/json") for x in rs if x["status"] == 503)')" true \
    "every 503 is application/json"
bad=$(python3 - "$R" <<'EOF'
import json, sys
d = sys.argv[1]
bad = []
for r in map(json.loads, open(d + "/results.jsonl")):
    if r["status"] != 503:
        continue
    try:
        doc = json.load(open("%s/%d.body" % (d, r["i"])))
        if not (isinstance(doc.get("error"), str) and doc["error"] and doc.get("status") == 503):
            bad.append(doc)
    except ValueError as e:
        bad.append(str(e))
print(json.dumps(bad[:2]))
EOF
)
assert_eq "$bad" "[]" 'every 503 body is {"error": "...", "status": 503}'
assert_eq "$(results_eval "$R" 'max(x["t_end"] - x["t_start"] for x in rs if x["status"] == 503) < 1.5')" true \
    "the 503s came before the 2 s upstream delay was over (shed from the queue, not waited out)"
assert_eq "$(upstream_requests)" 2 "the upstream got only the 2 requests in flight"
assert_eq "$(upstream_stat 's["max_inflight"]')" 2 "the upstream had 2 requests at once, never more"

# Once the slots are free, misses go through again.
upstream_control reset
req GET "$(results_eval "$R" '[x["url"] for x in rs if x["status"] == 503][0]')"
check_status 200 "after the burst: a shed tile is fetched, 200"
check_header X-Cache MISS "after the burst: X-Cache MISS (the 503 was not cached)"

n=$(python3 - "$PLOG" <<'EOF'
import json, sys
c = 0
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if str(o.get("indice", "")).startswith("cap") and o.get("status") == 503 \
            and o.get("upstream_status") is None and o.get("error"):
        c += 1
print(c)
EOF
)
assert_eq "$n" 8 "access log: 8 lines with status 503, an error, and no upstream status"
check_log_json "$PLOG" "proxy log is JSON lines with complete access lines" 11
check_no_key_leak "no key in responses or logs" "$PLOG"
finish
