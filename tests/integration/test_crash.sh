#!/bin/bash
# Nothing corrupt, ever: kill -9 the proxy in the middle of many streaming
# misses, restart it on the same memcached, and every tile it then serves
# matches the upstream's bytes.  A garbage entry planted in memcached reads
# as a miss and is replaced.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin

start_upstream
start_memcached
MC="MEMCACHED_SERVERS=127.0.0.1:$MEMCACHED_PORT"

start_proxy a "$MC"
start_nginx a "$PROXY_ADDR"
A=$NGINX_URL
PID_A=$PROXY_PID

tile() { echo "/here-proxy/base/mc/9/$1/77/png"; }

# Half the tiles are complete in the cache before the crash.
for x in $(seq 100 109); do
    req GET "$A$(tile "$x")"
    [ "$HTTP_STATUS" = 200 ] || not_ok "warm tile $x: status $HTTP_STATUS"
done

# The rest are in flight: headers and 1 KB at once, the rest after 1.5 s.
upstream_control slowbody 'first=1024&after_ms=1500&times=1000'
urls=()
for x in $(seq 100 129); do urls+=("$A$(tile "$x")"); done
fetch_parallel "$RUN_DIR/crash" "${urls[@]}" &
CLIENTS=$!
sleep 0.8
kill -9 "$PID_A"
wait "$CLIENTS" || true
assert_eq "$(results_eval "$RUN_DIR/crash" \
    'sum(1 for r in rs if r["status"] == 200 and r["error"] is None and int(r["headers"].get("content-length", r["length"])) != r["length"])')" \
    0 "no client took a short body for a whole one"
assert_eq "$(results_eval "$RUN_DIR/crash" \
    'sum(1 for r in rs if r["error"] is not None or r["status"] != 200)')" \
    20 "the 20 tiles in flight were cut off by the crash"
# Stop the proxy record of the dead instance: spawn-fcgi's child is gone.
_unregister "$PID_A"

upstream_control reset
start_proxy b "$MC"
start_nginx b "$PROXY_ADDR"
B=$NGINX_URL

# Plant garbage under one tile's memcached key (hp1:<generation>v3/<key>,
# src/cache.c): it must read as a miss, and be replaced.
python3 - "$MEMCACHED_PORT" 'base/mc/9/%d/77/png?ppi=100&scale=1&size=256&style=explore.day' <<'PYEOF'
import socket, sys
port, key = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
f = s.makefile("rb")

def get(k):
    s.sendall(b"get %s\r\n" % k)
    head = f.readline().split()
    if head[0] == b"END":
        return None
    val = f.read(int(head[3]) + 2)[:-2]
    assert f.readline() == b"END\r\n"
    return val

sealed = get(b"hp1:gen")
assert sealed is not None, "no cache generation in memcached"
# "<sequence> <generation>", then the MAC's nonce and tag (28 bytes).
gen = sealed[:-28].split()[1]
# Tile 100 was stored before the crash: the layout is right if it is there.
stored = b"hp1:" + gen + b"v3/" + (key % 100).encode()
assert get(stored) is not None, "tile 100 is not under %r: the key layout changed" % stored
full = b"hp1:" + gen + b"v3/" + (key % 128).encode()
junk = b"HPXE" + b"\x02" * 60
s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (full, len(junk), junk))
assert f.readline().startswith(b"STORED"), "memcached did not store"
PYEOF
[ $? = 0 ] || not_ok "planted garbage under the tile's memcached key"

bad=0
for x in $(seq 100 129); do
    path=$(tile "$x")
    curl -sS --max-time 10 -o "$RUN_DIR/direct.png" \
        "$UPSTREAM_URL/v3${path#/here-proxy}?ppi=100&scale=1&size=256&style=explore.day&apiKey=$SERVER_KEY" || die "direct fetch of $path failed"
    req GET "$B$path"
    if [ "$HTTP_STATUS" != 200 ] || ! cmp -s "$RUN_DIR/direct.png" "$HTTP_BODY_FILE"; then
        diag "tile $x: status $HTTP_STATUS, X-Cache $(header X-Cache), body differs from the upstream's"
        bad=$((bad + 1))
    fi
done
assert_eq "$bad" 0 "after the crash every tile served matches the upstream's bytes"

req GET "$B$(tile 128)"
check_header X-Cache HIT "the planted garbage was replaced by the real tile"
req GET "$B$(tile 100)"
check_header X-Cache HIT "a tile stored before the crash is still a HIT"

check_log_json "$PROXY_LOG" "restarted proxy log is JSON lines" 30
finish
