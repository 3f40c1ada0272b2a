#!/bin/bash
# Two proxy instances sharing one memcached (each behind its own NGINX);
# memcached outage and recovery; two more sharing one on a Unix socket.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin

start_upstream
start_memcached
MC_PORT=$MEMCACHED_PORT

start_proxy a "MEMCACHED_SERVERS=127.0.0.1:$MC_PORT"
LOG_A=$PROXY_LOG
start_nginx a "$PROXY_ADDR"
A=$NGINX_URL
start_proxy b "MEMCACHED_SERVERS=127.0.0.1:$MC_PORT"
LOG_B=$PROXY_LOG
start_nginx b "$PROXY_ADDR"
B=$NGINX_URL

for n in A B; do
    eval "url=\$$n"
    req GET "$url/readyz"
    check_status 200 "instance $n: /readyz 200 with memcached up"
    assert_eq "$(json_field 'd.get("status")')" ready "instance $n: /readyz says ready"
done

# ------------------------------------------------------- shared tier
req GET "$A/here-proxy/base/mc/6/10/20/png?indice=viaA"
check_status 200 "A: tile 200"
check_header X-Cache MISS "A: tile MISS"
TILE_A=$(save_body tileA.png)
req GET "$B/here-proxy/base/mc/6/10/20/png?indice=viaB"
check_status 200 "B: same tile 200"
check_header X-Cache HIT "B: same tile is a HIT (from memcached)"
check_header X-Index viaB "B: X-Index viaB"
if cmp -s "$TILE_A" "$HTTP_BODY_FILE"; then ok "B: body identical to A's"; else not_ok "B: body identical to A's"; fi
assert_eq "$(upstream_requests)" 1 "upstream saw the tile once for both instances"

req GET "$B/here-proxy/copyright"
check_status 200 "B: copyright 200"
req GET "$A/here-proxy/copyright"
check_status 200 "A: copyright 200"
assert_eq "$(upstream_requests)" 2 "copyright fetched once for both instances"

# ------------------------------------------------------- memcached down
stop_memcached
req GET "$A/here-proxy/base/mc/6/10/20/png"
check_status 200 "memcached down: old tile via A 200"
req GET "$B/here-proxy/base/mc/6/10/20/png"
check_status 200 "memcached down: old tile via B 200"
t0=$(date +%s%N)
req GET "$A/here-proxy/base/mc/6/11/20/png"
t1=$(date +%s%N)
check_status 200 "memcached down: new tile via A 200"
assert_match "$(( (t1 - t0) / 1000000 ))" '^[0-9]{1,4}$' "memcached down: new tile answered in under 10 s"
req GET "$B/here-proxy/base/mc/6/12/20/png"
check_status 200 "memcached down: new tile via B 200"

for n in A B; do
    eval "url=\$$n"
    wait_status 503 10 "$url/readyz"
    check_json_error 503 "instance $n: /readyz 503 JSON while memcached is down"
    assert_eq "$(json_field 'd.get("error")')" "memcached unreachable" "instance $n: /readyz error is 'memcached unreachable'"
done

# ------------------------------------------------------- memcached back
start_memcached "$MC_PORT"
for n in A B; do
    eval "url=\$$n"
    wait_status 200 15 "$url/readyz"
    check_status 200 "instance $n: /readyz back to 200 within 15 s of memcached returning"
done
before=$(upstream_requests)
req GET "$A/here-proxy/base/mc/6/13/20/png"
check_status 200 "memcached back: new tile via A 200"
req GET "$B/here-proxy/base/mc/6/13/20/png"
check_header X-Cache HIT "memcached back: that tile is a HIT via B"
assert_eq "$(upstream_requests)" $((before + 1)) "memcached back: upstream saw it once"

# ------------------------------------------------------- Unix socket
# C and D share a cluster of two: one memcached on a Unix socket, the TCP
# one above.
start_memcached_socket
CLUSTER="$MEMCACHED_SOCKET,127.0.0.1:$MC_PORT"
start_proxy c "MEMCACHED_SERVERS=$CLUSTER"
LOG_C=$PROXY_LOG
start_nginx c "$PROXY_ADDR"
C=$NGINX_URL
start_proxy d "MEMCACHED_SERVERS=$CLUSTER"
LOG_D=$PROXY_LOG
start_nginx d "$PROXY_ADDR"
D=$NGINX_URL
req GET "$C/readyz"
check_status 200 "socket: /readyz 200 with memcached on $MEMCACHED_SOCKET"
assert_eq "$(json_field 'd.get("status")')" ready "socket: /readyz says ready"
before=$(upstream_requests)
hits=0
for x in 0 1 2 3 4 5 6 7; do
    req GET "$C/here-proxy/base/mc/7/$x/30/png"
    [ "$HTTP_STATUS" = 200 ] || not_ok "socket: tile 7/$x/30 via C: $HTTP_STATUS"
    cp "$HTTP_BODY_FILE" "$RUN_DIR/tileC.$x"
done
for x in 0 1 2 3 4 5 6 7; do
    req GET "$D/here-proxy/base/mc/7/$x/30/png"
    if [ "$(header X-Cache)" = HIT ] && cmp -s "$RUN_DIR/tileC.$x" "$HTTP_BODY_FILE"; then
        hits=$((hits + 1))
    fi
done
assert_eq "$hits" 8 "socket: 8 tiles fetched via C are identical HITs via D"
assert_eq "$(upstream_requests)" $((before + 8)) "socket: upstream saw each tile once"
items=$(memcached_stat "$MEMCACHED_SOCKET" curr_items)
assert_match "$items" '^[1-9][0-9]*$' "socket: the socket's memcached holds some of them ($items items)"
req GET "$D/metrics/prometheus"
check_status 200 "socket: /metrics/prometheus 200"
assert_contains "$HTTP_BODY" "hereproxy_memcached_servers 2" "socket: metrics count 2 memcached servers"
assert_contains "$HTTP_BODY" "hereproxy_memcached_servers_down 0" "socket: and none down"
stop_pid "$MEMCACHED_SOCKET_PID" TERM 10
deadline=$((SECONDS + 10))
while :; do
    req GET "$C/readyz"
    [ "$(json_field 'd.get("status")')" = degraded ] || [ "$SECONDS" -ge "$deadline" ] && break
    sleep 0.3
done
check_status 200 "socket: /readyz 200 with the socket's memcached gone"
assert_eq "$(json_field 'd.get("status")')" degraded "socket: /readyz says degraded"
assert_eq "$(json_field '",".join(d.get("memcached_down", []))')" "$MEMCACHED_SOCKET" "socket: memcached_down names the socket's path"

check_log_json "$LOG_A" "proxy A log is JSON lines with complete access lines" 5
check_log_json "$LOG_B" "proxy B log is JSON lines with complete access lines" 5
check_log_json "$LOG_C" "proxy C log is JSON lines with complete access lines" 2
check_no_key_leak "no key in responses or logs" "$LOG_A" "$LOG_B" "$LOG_C" "$LOG_D"
finish
