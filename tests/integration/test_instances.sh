#!/bin/bash
# Three hereproxy.fcgi processes behind one NGINX upstream block (FastCGI
# keep-alive) on a memcached cluster of two: a tile one fetched is a HIT on
# the others; 3 x 32 concurrent cold requests cost one upstream request;
# SIGTERM under load finishes what is in flight, exits 0 within the
# grace, and NGINX's retry on the others loses no request.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin

load() {
    python3 "$abs_top_srcdir/tests/integration/load.py" "$@"
}
load_field() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

start_upstream
start_memcached
M1=$MEMCACHED_PORT
start_memcached
M2=$MEMCACHED_PORT
SERVERS=127.0.0.1:$M1,127.0.0.1:$M2

addrs=()
for n in a b c; do
    start_proxy "$n" "MEMCACHED_SERVERS=$SERVERS" "SHUTDOWN_GRACE_MS=8000"
    eval "LOG_$n=\$PROXY_LOG PID_$n=\$PROXY_PID"
    addrs+=("$PROXY_ADDR")
    # Each instance also behind an NGINX of its own, to aim at one.
    start_nginx "$n" "$PROXY_ADDR"
    eval "URL_$n=\$NGINX_URL/here-proxy"
done
# One upstream block with all three (keepalive 32, fastcgi_keep_conn on).
start_nginx all "${addrs[0]}; server ${addrs[1]}; server ${addrs[2]}"
ALL=$NGINX_URL/here-proxy
assert_eq "$(grep -c "server 127.0.0.1:" "$NGINX_DIR/nginx.conf")" 3 "nginx all: one upstream block with three servers"
assert_contains "$(cat "$NGINX_DIR/nginx.conf")" "keepalive" "nginx all: keepalive to FastCGI"

# ------------------------------------------------ fetched by one, HIT on the others
TILE=/base/mc/10/500/300/png
req GET "$URL_a$TILE"
check_header X-Cache MISS "instance a: first fetch MISS"
for n in b c; do
    eval "url=\$URL_$n"
    req GET "$url$TILE"
    check_status 200 "instance $n: tile 200"
    check_header X-Cache HIT "instance $n: the tile a fetched is a HIT"
done
assert_eq "$(upstream_path_requests "/v3$TILE")" 1 "three instances: one upstream request for that tile"

# ------------------------------------------------ 3 x 32 concurrent cold
TILE=/base/mc/10/500/301/png
upstream_control delay "ms=1500&times=-1&path=/v3$TILE"
urls=()
for i in $(seq 32); do urls+=("$URL_a$TILE?indice=a$i" "$URL_b$TILE?indice=b$i" "$URL_c$TILE?indice=c$i"); done
fetch_parallel "$RUN_DIR/burst" "${urls[@]}"
assert_eq "$(results_eval "$RUN_DIR/burst" 'dict(Counter(x["status"] for x in rs))')" '{"200": 96}' "3x32 concurrent cold: all 200"
assert_eq "$(results_eval "$RUN_DIR/burst" 'len(set(x["sha1"] for x in rs))')" 1 "3x32 concurrent cold: identical bodies"
assert_eq "$(results_eval "$RUN_DIR/burst" '[x["error"] for x in rs if x["error"]][:3]')" "[]" "3x32 concurrent cold: every body whole"
assert_eq "$(upstream_path_requests "/v3$TILE")" 1 "3x32 concurrent cold: exactly 1 upstream request"
assert_eq "$(results_eval "$RUN_DIR/burst" 'sum(1 for x in rs if x["headers"].get("x-cache") == "MISS")')" 1 \
    "3x32 concurrent cold: exactly one X-Cache MISS"
upstream_control delay "ms=0&times=-1&path=/v3$TILE"

# ------------------------------------------------ through the shared upstream block
load 3 4 "$RUN_DIR/warm.json" "$ALL"
assert_eq "$(load_field "$RUN_DIR/warm.json" failed)" 0 "shared NGINX: warm-up load, zero failed requests"
for n in a b c; do
    eval "log=\$LOG_$n"
    assert_match "$(grep -c '"indice":"load"' "$log")" '^[1-9][0-9]*$' "shared NGINX: instance $n served some of the load"
done

# ------------------------------------------------ SIGTERM: in flight finishes
SLOW=/base/mc/10/500/302/png
upstream_control delay "ms=2000&times=-1&path=/v3$SLOW"
curl -sS --max-time 20 -o "$RUN_DIR/slow.png" -w '%{http_code}' "$URL_c$SLOW" >"$RUN_DIR/slow.status" 2>&1 &
SLOW_PID=$!
_register slow-curl "$SLOW_PID"
# Load through the shared block while c stops: NGINX retries on a and b.
load 8 4 "$RUN_DIR/term.json" "$ALL" &
LOAD_PID=$!
_register load "$LOAD_PID"
sleep 1
t0=$(date +%s%N)
stop_pid "$PID_c" TERM 15
t1=$(date +%s%N)
assert_eq "$STOP_RC" 0 "SIGTERM: instance c exits 0"
ms=$(( (t1 - t0) / 1000000 ))
assert_match "$ms" '^[0-9]{1,4}$' "SIGTERM: instance c gone within SHUTDOWN_GRACE_MS + 2 s ($ms ms)"
[ "$ms" -ge 500 ] && ok "SIGTERM: c waited for its in-flight request ($ms ms)" || not_ok "SIGTERM: c waited for its in-flight request ($ms ms)"
wait "$SLOW_PID"
_unregister "$SLOW_PID"
assert_eq "$(cat "$RUN_DIR/slow.status")" 200 "SIGTERM: the request in flight at the signal completes 200"
assert_eq "$(head -c 4 "$RUN_DIR/slow.png" | od -An -c | tr -d ' ')" '211PNG' "SIGTERM: ... with the whole PNG"
wait "$LOAD_PID"
_unregister "$LOAD_PID"
diag "load during SIGTERM: $(cat "$RUN_DIR/term.json")"
assert_eq "$(load_field "$RUN_DIR/term.json" failed)" 0 "SIGTERM of one of three under load: zero failed requests"
assert_match "$(load_field "$RUN_DIR/term.json" ok)" '^[1-9][0-9]{2,}$' "SIGTERM under load: at least 100 requests answered"
assert_eq "$(log_events "$LOG_c" stopping)" 1 "SIGTERM: c logs stopping"
assert_eq "$(log_events "$LOG_c" stop)" 1 "SIGTERM: c logs stop (a clean exit)"
# The others keep serving: the listening sockets are theirs alone anyway,
# but a and b must be untouched by c's exit.
for n in a b; do
    eval "url=\$URL_$n"
    req GET "$url/base/mc/10/500/303/png"
    check_status 200 "after c stopped: instance $n still serves"
done

# ------------------------------------------------ a shared listening socket
# spawn-fcgi -F 2: two processes accept on one inherited socket (as with
# systemd socket activation, or a new instance started beside the old).
# Stopping one must leave the socket working for the other.
SHARED_PORT=$(free_port)
env "HERE_API_KEY=$SERVER_KEY" "HERE_BASE_URL=$UPSTREAM_URL/v3" \
    spawn-fcgi -a 127.0.0.1 -p "$SHARED_PORT" -F 2 -P "$RUN_DIR/shared.pids" -- \
    "$HEREPROXY_BIN" >>"$RUN_DIR/shared-spawn.log" 2>&1 </dev/null
mapfile -t SHARED < <(tr -s ' \n' '\n\n' <"$RUN_DIR/shared.pids" | grep -E '^[0-9]+$')
for p in "${SHARED[@]}"; do _register shared-proxy "$p"; done
assert_eq "${#SHARED[@]}" 2 "shared socket: spawn-fcgi -F 2 started two processes"
wait_for_port "$SHARED_PORT" 10 || die "shared socket: nothing listens on $SHARED_PORT"
start_nginx shared "127.0.0.1:$SHARED_PORT"
SH=$NGINX_URL/here-proxy
req GET "$SH/base/mc/10/500/304/png"
check_status 200 "shared socket: served before the stop"
kill -TERM "${SHARED[0]}"
deadline=$((SECONDS + 15))
while kill -0 "${SHARED[0]}" 2>/dev/null &&
    ! ps -o stat= -p "${SHARED[0]}" 2>/dev/null | grep -q Z; do
    [ "$SECONDS" -ge "$deadline" ] && break
    sleep 0.1
done
if kill -0 "${SHARED[0]}" 2>/dev/null && ! ps -o stat= -p "${SHARED[0]}" 2>/dev/null | grep -q Z; then
    not_ok "shared socket: the first process exits on SIGTERM"
else
    ok "shared socket: the first process exits on SIGTERM"
fi
_unregister "${SHARED[0]}"
kill -0 "${SHARED[1]}" 2>/dev/null && ok "shared socket: the second process still runs" ||
    not_ok "shared socket: the second process still runs"
fails=0
for y in $(seq 0 19); do
    # New connections each time: every one must reach the second process.
    st=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$SH/base/mc/10/501/$y/png" 2>/dev/null)
    [ "$st" = 200 ] || fails=$((fails + 1))
done
assert_eq "$fails" 0 "shared socket: 20 requests after the other process stopped, all 200"
kill -TERM "${SHARED[1]}"

check_log_json "$LOG_a" "proxy a: JSON log lines" 5
check_no_key_leak "no key in responses or logs" "$LOG_a" "$LOG_b" "$LOG_c"
finish
