#!/bin/bash
# Access lines are written in batches (LOG_FLUSH_MS): a line waits in the
# proxy, then appears by itself without more traffic; under concurrent load
# and a SIGTERM, every request has exactly one whole line, and the "stop"
# event comes after all of them. Other lines (the reload event) are not held
# back, and take the waiting access lines with them, in order.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream

access_lines() { # LOG PATH-SUBSTRING
    python3 - "$1" "$2" <<'PYEOF'
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "access" and sys.argv[2] in o.get("path", ""):
        n += 1
print(n)
PYEOF
}

# --- a line waits, then comes by itself ----------------------------------
# 3 s: long enough that the check right after the response runs before it.
start_proxy slow LOG_FLUSH_MS=3000
start_nginx slow "$PROXY_ADDR"
T=/here-proxy/base/mc/6/33/21/png
req GET "$NGINX_URL$T?indice=wait"
check_status 200 "tile 200"
assert_eq "$(access_lines "$PROXY_LOG" /6/33/21/)" 0 \
    "right after the response its access line still waits in the buffer"
deadline=$((SECONDS + 10))
while [ "$(access_lines "$PROXY_LOG" /6/33/21/)" = 0 ] && [ $SECONDS -lt $deadline ]; do
    sleep 0.2
done
assert_eq "$(access_lines "$PROXY_LOG" /6/33/21/)" 1 \
    "written by the flusher without more traffic (LOG_FLUSH_MS=3000)"
# A warning is written at once, and the waiting access line before it.
req GET "$NGINX_URL$T?indice=wait"
kill -HUP "$PROXY_PID"      # a reload logs its event at once
deadline=$((SECONDS + 5))
while [ "$(log_events "$PROXY_LOG" reload)" = 0 ] && [ $SECONDS -lt $deadline ]; do
    sleep 0.1
done
assert_eq "$(log_events "$PROXY_LOG" reload)" 1 "the reload event is written"
assert_eq "$(access_lines "$PROXY_LOG" /6/33/21/)" 2 \
    "the access line waiting went out with it, before it"
assert_eq "$(python3 - "$PROXY_LOG" <<'PYEOF'
import json, sys
ev = []
for line in open(sys.argv[1]):
    o = json.loads(line)
    ev.append(o.get("event"))
i = max(i for i, e in enumerate(ev) if e == "reload")
print(ev[i - 1])
PYEOF
)" access "order kept: the access line is just before the reload event"
stop_pid "$PROXY_PID"

# --- load, then SIGTERM: one whole line per request -----------------------
start_proxy load LOG_FLUSH_MS=100
start_nginx load "$PROXY_ADDR"
urls=()
for i in $(seq 1 64); do urls+=("$NGINX_URL/here-proxy/base/mc/7/$((i % 8))/5/png?indice=load"); done
for round in 1 2 3 4 5; do
    fetch_parallel "$RUN_DIR/load$round" "${urls[@]}"
    assert_eq "$(results_eval "$RUN_DIR/load$round" 'sum(1 for r in rs if r["status"] == 200)')" 64 \
        "round $round: 64 tiles"
done
stop_pid "$PROXY_PID"
assert_eq "$STOP_RC" 0 "stopped cleanly"
assert_eq "$(access_lines "$PROXY_LOG" /7/)" 320 \
    "320 requests, 320 access lines after SIGTERM"
check_log_json "$PROXY_LOG" "every line whole JSON" 320
assert_eq "$(python3 - "$PROXY_LOG" <<'PYEOF'
import json, sys
ev = [json.loads(l).get("event") for l in open(sys.argv[1]) if l.strip()]
print(ev[-1])
PYEOF
)" stop "the stop event is the last line, after every access line"

finish
