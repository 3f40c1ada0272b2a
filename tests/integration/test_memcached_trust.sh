#!/bin/bash
# memcached holds data, not authority: whoever can write to it (a co-tenant,
# any container on its network) cannot make the proxy serve a forged or
# misplaced tile, empty the instances' caches, or stall misses. Each attack
# writes to memcached as such a writer would (mc_raw: the text protocol,
# no secret) and checks that it is refused, counted, and that the right
# tile is served.
#
# Proxy A keeps an in-process tier (so that "no cache is emptied" can be
# seen); proxy B has none (CACHE_MAXSIZE=0), so each of its hits reads
# memcached.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin

SECRET="fleet-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
TOKEN="admin-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

start_upstream
# -I 2m: memcached itself would take a value larger than any the proxy writes.
start_memcached "" -I 2m
MC=$MEMCACHED_PORT
COMMON=("MEMCACHED_SERVERS=127.0.0.1:$MC" "CACHE_SECRET=$SECRET"
    "CACHE_COALESCE_WAIT_MS=5000" "HEREPROXY_ADMIN_TOKEN=$TOKEN"
    "QUOTA_UPSTREAM_INDEX=1000/day" "QUOTA_UPSTREAM_INDEX_OVERRIDES=shared:2/day")
start_proxy a "${COMMON[@]}"
LOG_A=$PROXY_LOG
start_nginx a "$PROXY_ADDR"
A=$NGINX_URL
start_proxy b "${COMMON[@]}" CACHE_MAXSIZE=0
LOG_B=$PROXY_LOG
start_nginx b "$PROXY_ADDR"
B=$NGINX_URL

T=/here-proxy/base/mc/8
# The memcached key of a tile path ("8/12/34"), as the proxy wrote it.
mc_key_of() {
    mc_raw "$MC" keys "/base/mc/$1/png" | grep -v '^hp1:L:' | head -n 1
}
# rejected REASON: values refused for REASON, by A and B together (a miss
# reads memcached twice: before and after taking the coalescing lock).
rejected() {
    local n=0 u v
    for u in "$A" "$B"; do
        req GET "$u/metrics/prometheus"
        v=$(prom_value "hereproxy_cache_rejected_total{reason=\"$1\"}")
        n=$((n + ${v:-0}))
    done
    echo "$n"
}
# refused_more REASON BEFORE NAME: the count for REASON grew (waiting up
# to 10 s for the instances' purge sync, which runs every second).
refused_more() {
    local now i
    for i in $(seq 50); do
        now=$(rejected "$1")
        [ "$now" -gt "$2" ] && break
        sleep 0.2
    done
    assert_eq "$((now > $2))" 1 "$3 (reason $1: $2 -> $now)"
}

# ------------------------------------------------------------ the tiles
for xy in 12/34 12/35 12/36 12/37; do
    req GET "$A$T/$xy/png?indice=fill"
    check_status 200 "A fills tile $xy"
    cp "$HTTP_BODY_FILE" "$RUN_DIR/tile-${xy/\//-}.png"
done
assert_eq "$(upstream_requests)" 4 "four tiles, four fetches"
K1=$(mc_key_of 8/12/34)
K2=$(mc_key_of 8/12/35)
K3=$(mc_key_of 8/12/36)
assert_match "$K1" '^hp1:[0-9a-f]+v3/base/mc/8/12/34/png' "memcached holds tile 12/34 under a v3 key ($K1)"
mc_raw "$MC" get "$K1" "$RUN_DIR/v1" || die "no value for $K1"
mc_raw "$MC" get "$K2" "$RUN_DIR/v2" || die "no value for $K2"
req GET "$B$T/12/35/png"
check_header X-Cache HIT "B reads an untouched entry from memcached: HIT"

# ------------------------------------- an entry copied under another key
R_MAC=$(rejected mac)
mc_raw "$MC" set "$K2" "$RUN_DIR/v1"
req GET "$B$T/12/35/png?indice=victim"
check_status 200 "copied entry: 200"
check_header X-Cache MISS "copied entry: refused, fetched again (MISS)"
if cmp -s "$HTTP_BODY_FILE" "$RUN_DIR/tile-12-35.png"; then
    ok "copied entry: the right tile is served, not the one copied there"
else
    not_ok "copied entry: the right tile is served, not the one copied there"
fi
refused_more mac "$R_MAC" "copied entry: counted as reason mac"
assert_eq "$(upstream_requests)" 5 "copied entry: one fetch to replace it"

# ------------------------------------------------------ a byte flipped
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 1; open(sys.argv[2], "wb").write(b)' \
    "$RUN_DIR/v1" "$RUN_DIR/v1-flipped"
R_MAC=$(rejected mac)
mc_raw "$MC" set "$K1" "$RUN_DIR/v1-flipped"
req GET "$B$T/12/34/png"
check_header X-Cache MISS "flipped byte: refused (MISS)"
if cmp -s "$HTTP_BODY_FILE" "$RUN_DIR/tile-12-34.png"; then
    ok "flipped byte: the right bytes are served"
else
    not_ok "flipped byte: the right bytes are served"
fi
refused_more mac "$R_MAC" "flipped byte: counted as reason mac"

# -------------------------- a value written without the secret: a script
# page in the entry layout, Content-Type text/html, fresh for centuries.
python3 - "$RUN_DIR/forged" <<'PYEOF'
import struct, sys
body = b"<html><script>alert(document.cookie)</script></html>"
ctype, etag = b"text/html", b""
head = (b"HPXE" + struct.pack("<BBHqqIHH", 3, 0, 200, 32503680000,
        32503680000, len(body), len(ctype), len(etag)) + bytes(28))
open(sys.argv[1], "wb").write(head + ctype + etag + body)
PYEOF
R_MAC=$(rejected mac)
mc_raw "$MC" set "$K3" "$RUN_DIR/forged"
mc_raw "$MC" set "hp1:junk" "$RUN_DIR/forged"
req GET "$B$T/12/36/png"
check_status 200 "forged script page: 200"
assert_eq "$(header Content-Type)" image/png "forged script page: served as the PNG it is, not text/html"
assert_not_contains "$HTTP_BODY" "<script>" "forged script page: never served"
refused_more mac "$R_MAC" "forged script page: counted as reason mac"
printf 'not an entry at all' >"$RUN_DIR/garbage"
R_FORMAT=$(rejected format)
mc_raw "$MC" set "$K3" "$RUN_DIR/garbage"
req GET "$B$T/12/36/png"
check_header X-Cache MISS "garbage: refused (MISS)"
refused_more format "$R_FORMAT" "garbage: counted as reason format"

# ---------------------------- larger than any value the proxy ever writes
head -c 1500000 /dev/zero >"$RUN_DIR/huge"
R_TOO_LARGE=$(rejected too_large)
mc_raw "$MC" set "$K1" "$RUN_DIR/huge"
req GET "$B$T/12/34/png"
check_status 200 "oversized value: 200"
check_header X-Cache MISS "oversized value: refused (MISS)"
refused_more too_large "$R_TOO_LARGE" "oversized value: counted as reason too_large"
assert_eq "$(grep -c '"memcached_lost"' "$LOG_B")" 0 "oversized value: the server is not taken for down"

# ----------------------------------------------- a forged generation
req GET "$A$T/12/37/png"
check_header X-Cache HIT "A serves 12/37 from its own memory"
req GET "$A/metrics/prometheus"
ENTRIES_BEFORE=$(prom_value hereproxy_cache_entries)
R_GEN=$(rejected generation)
printf '999 deadbeef' >"$RUN_DIR/gen"
mc_raw "$MC" set hp1:gen "$RUN_DIR/gen"
refused_more generation "$R_GEN" "forged generation: counted"
sleep 1.5   # another round of each instance's purge sync
req GET "$A$T/12/37/png"
check_header X-Cache HIT "forged generation: A still serves from memory"
req GET "$A/metrics/prometheus"
assert_eq "$(prom_value hereproxy_cache_entries)" "$ENTRIES_BEFORE" "forged generation: A's in-process tier keeps its entries"
assert_eq "$(grep -c '"cache_generation"' "$LOG_A")" 0 "forged generation: no instance adopted it"
mc_raw "$MC" get hp1:gen "$RUN_DIR/gen-now"
assert_eq "$(($(stat -c %s "$RUN_DIR/gen-now") > 28))" 1 "forged generation: a sealed one written back over it"
req GET "$B$T/12/35/png"
check_header X-Cache HIT "forged generation: B still finds entries of the real generation"

# ------------------------------ an old generation written back (a replay)
req POST "$A/admin/purge?all=1" -H "Authorization: Bearer $TOKEN"
check_status 200 "purge all #1"
sleep 1.5
mc_raw "$MC" get hp1:gen "$RUN_DIR/gen1"
req POST "$A/admin/purge?all=1" -H "Authorization: Bearer $TOKEN"
check_status 200 "purge all #2"
sleep 1.5
req GET "$A$T/12/37/png"
check_header X-Cache MISS "after purge #2: fetched again"
req GET "$A$T/12/37/png"
check_header X-Cache HIT "after purge #2: then a hit from memory"
GENS_A=$(grep -c '"cache_generation"' "$LOG_A")
R_GEN=$(rejected generation)
mc_raw "$MC" set hp1:gen "$RUN_DIR/gen1"
refused_more generation "$R_GEN" "replayed generation: counted"
sleep 1.5
req GET "$A$T/12/37/png"
check_header X-Cache HIT "replayed generation: A still serves from memory"
assert_eq "$(grep -c '"cache_generation"' "$LOG_A")" "$GENS_A" "replayed generation: not adopted"

# ------------------------------------ a forged purge log: nothing emptied
req GET "$A/metrics/prometheus"
ENTRIES_BEFORE=$(prom_value hereproxy_cache_entries)
R_PURGE=$(rejected purge_log)
printf '5000' >"$RUN_DIR/seq"
mc_raw "$MC" set hp1:purge-seq "$RUN_DIR/seq"
# The sequence first, as a purge does: the items may come after a sync
# round has seen it, and are still read (and refused) the round after.
for i in 4999 5000; do
    printf 'base/mc/8/12/37/png?ppi=100&scale=1&size=256&style=explore.day' >"$RUN_DIR/p"
    mc_raw "$MC" set "hp1:purge:$i" "$RUN_DIR/p"
done
refused_more purge_log "$R_PURGE" "forged purge log: counted"
sleep 1.5
req GET "$A$T/12/37/png"
check_header X-Cache HIT "forged purge log: A keeps the tile it names"
req GET "$A/metrics/prometheus"
assert_eq "$(prom_value hereproxy_cache_entries)" "$ENTRIES_BEFORE" "forged purge log: A's in-process tier keeps every entry"
# A real purge after it still reaches every instance.
req POST "$B/admin/purge$T/12/37/png" -H "Authorization: Bearer $TOKEN"
check_status 200 "a real purge after the forged ones"
sleep 2
req GET "$A$T/12/37/png"
check_header X-Cache MISS "the real purge reached A's memory"

# ------------------------------------------------- a forged lock
LOCK="hp1:L:base/mc/8/12/38/png?ppi=100&scale=1&size=256&style=explore.day"
printf '1' >"$RUN_DIR/lock"
R_LOCK=$(rejected lock)
mc_raw "$MC" set "$LOCK" "$RUN_DIR/lock" 60
req GET "$B$T/12/38/png?indice=locked"
check_status 200 "forged lock: 200"
check_header X-Cache MISS "forged lock: fetched at once (MISS)"
LAT=$(grep '"path":"/here-proxy/base/mc/8/12/38/png"' "$LOG_B" | tail -n 1 | python3 -c 'import json,sys; print(int(json.loads(sys.stdin.read())["latency_ms"]))')
assert_eq "$((LAT < 2500))" 1 "forged lock: no wait for it (latency $LAT ms, CACHE_COALESCE_WAIT_MS 5000)"
refused_more lock "$R_LOCK" "forged lock: counted as reason lock"

# ------------------------------------- quota counts only the fleet can set
# The shared count of a quota is sealed: A and B count into one...
req GET "$A$T/13/1/png?indice=shared"
check_status 200 "quota: A's first fetch for indice shared"
req GET "$B$T/13/2/png?indice=shared"
check_status 200 "quota: B's fetch for indice shared (2 of 2)"
req GET "$A$T/13/3/png?indice=shared"
check_status 503 "quota: the third fetch across A and B is refused (cache-only)"
DAY=$(( $(date +%s) / 86400 * 86400 ))
mc_raw "$MC" get "hp1:lim:$DAY:qi:shared" "$RUN_DIR/count" || die "no count for indice shared"
assert_eq "$(($(stat -c %s "$RUN_DIR/count") > 28))" 1 "quota: the count is sealed"
# ... and a count pushed over the limit by a writer without the secret is
# refused: the índice is not made cache-only by it.
R_COUNTER=$(rejected counter)
printf '999999' >"$RUN_DIR/count-forged"
mc_raw "$MC" set "hp1:lim:$DAY:qi:victim2" "$RUN_DIR/count-forged" 3600
req GET "$B$T/13/4/png?indice=victim2"
check_status 200 "forged quota count: the índice still fetches"
check_header X-Cache MISS "forged quota count: a real fetch"
refused_more counter "$R_COUNTER" "forged quota count: counted as reason counter"

# ------------------------ out of bounds: an instance with a longer TTL cap
R_BOUNDS=$(rejected bounds)
start_proxy c "${COMMON[@]}" CACHE_TTL_CAP=31536000 CACHE_TTL_DEFAULT=31536000
start_nginx c "$PROXY_ADDR"
C=$NGINX_URL
upstream_control "maxage?s=0"
req GET "$C$T/12/39/png"
check_header X-Cache MISS "C (a year's TTL cap) fetches 12/39"
req GET "$B$T/12/39/png"
check_header X-Cache MISS "B (a day's cap) refuses C's year-long entry"
refused_more bounds "$R_BOUNDS" "a year-long entry: counted as reason bounds"

# The rejections were logged, and rate-limited: one line per reason here.
assert_eq "$(grep -c '"event":"cache_rejected".*"reason":"mac"' "$LOG_B")" 1 "rejections logged once per interval per reason"
check_log_json "$LOG_A" "proxy a log"
check_log_json "$LOG_B" "proxy b log"
check_no_key_leak "no HERE key in responses or logs" "$LOG_A" "$LOG_B"
assert_eq "$(grep -cF -- "$SECRET" "$LOG_A" "$LOG_B" "$RUN_DIR/all-responses.txt" | awk -F: '{s += $2} END {print s}')" 0 \
    "CACHE_SECRET in no log line or response"
finish
