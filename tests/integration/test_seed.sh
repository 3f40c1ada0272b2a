#!/bin/bash
# hereproxy-seed through the real stack (NGINX, hereproxy with memcached,
# the local HERE): a dry run counts and asks nothing; a seed fetches every
# tile of an area once, as a map client would ask for it; a second run
# fetches nothing from HERE; the proxy's 429 pauses the run for its
# Retry-After; a refused token and a spent quota stop the run with the
# proxy's words and exit 3; SIGINT stops it at once with the summary;
# progress goes to stderr, a line at a time, or as a bar on a terminal.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3 script
require_bin
: "${HEREPROXY_SEED_BIN:=$abs_top_builddir/src/hereproxy-seed}"
[ -x "$HEREPROXY_SEED_BIN" ] ||
    die "HEREPROXY_SEED_BIN=$HEREPROXY_SEED_BIN is not an executable (build it first: make)"
SEED=$HEREPROXY_SEED_BIN
BERLIN=13.0,52.3,13.8,52.7
TOKEN="seedTOK-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

start_upstream
start_memcached
# índice slow: 2 requests a second, so that a seed at 4 at once meets 429s.
start_proxy main "MEMCACHED_SERVERS=127.0.0.1:$MEMCACHED_PORT" \
    RATE_LIMIT_INDEX_OVERRIDES=slow:2/second,burst=2
LOG_MAIN=$PROXY_LOG
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# seed NAME ARGS...: run the seeder; stdout in $RUN_DIR/NAME.out, stderr in
# NAME.err, exit status in SEED_RC, the last stdout line in SUMMARY.
seed() {
    local name=$1
    shift
    "$SEED" "$@" >"$RUN_DIR/$name.out" 2>"$RUN_DIR/$name.err" </dev/null
    SEED_RC=$?
    SUMMARY=$(tail -n 1 "$RUN_DIR/$name.out")
}

# summary_field EXPR: a Python expression on the summary's object d.
summary_field() {
    python3 -c 'import json, sys
try:
    d = json.loads(sys.argv[2])
except ValueError:
    print("<not JSON>"); sys.exit(0)
print(json.dumps(eval(sys.argv[1])))' "$1" "$SUMMARY"
}

# access_lines PYEXPR: access lines o of the main proxy's log where it holds.
access_lines() {
    python3 - "$LOG_MAIN" "$1" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "access" and eval(sys.argv[2]):
        n += 1
print(n)
EOF
}

# ------------------------------------------------ usage
seed usage-bbox --url "$P" --bbox 13,52.7,13.8,52.3 --zoom 10
assert_eq "$SEED_RC" 2 "usage: south above north exits 2"
assert_contains "$(cat "$RUN_DIR/usage-bbox.err")" "south (52.7) must be below north (52.3)" \
    "usage: ... and says why"
seed usage-zoom --url "$P" --bbox "$BERLIN" --zoom 10-23
assert_eq "$SEED_RC" 2 "usage: zoom 23 exits 2"
seed usage-url --bbox "$BERLIN" --zoom 10
assert_eq "$SEED_RC" 2 "usage: no --url exits 2"
seed usage-tiles --url "$P" --tiles /dev/null --bbox "$BERLIN"
assert_eq "$SEED_RC" 2 "usage: --tiles with --bbox exits 2"
assert_eq "$(upstream_requests)" 0 "usage errors ask nothing"

# ------------------------------------------------ dry run
seed dry --dry-run --url "$P" --bbox "$BERLIN" --zoom 10-12
assert_eq "$SEED_RC" 0 "dry run: exit 0"
# 12 + 30 + 99 tiles (the slippy-map formulas, computed independently).
assert_eq "$(summary_field '[d["tiles"], d["here_requests_max"], d["zooms"]]')" \
    '[141, 141, {"10": 12, "11": 30, "12": 99}]' \
    "dry run: 141 tiles (12, 30, 99 at zooms 10 to 12), at most 141 requests to HERE"
assert_contains "$(cat "$RUN_DIR/dry.out")" "zoom 12: 99 tiles" "dry run: the count per zoom, for people"
assert_eq "$(upstream_requests)" 0 "dry run: HERE not asked"
assert_eq "$(access_lines 'True')" 0 "dry run: the proxy not asked"

# ------------------------------------------------ seed an area
# HERE slowed down so that the run lasts past a progress interval.
upstream_control delay 'ms=80&times=-1'
seed first --url "$P/" --bbox "$BERLIN" --zoom 10-11 --indice seeder \
    --concurrency 2 --progress-interval 1
upstream_control delay 'ms=0&times=-1'
assert_eq "$SEED_RC" 0 "seed: exit 0"
assert_eq "$(summary_field '[d["tiles"], d["fetched"], d["cached"], d["failed"], d["stopped"]]')" \
    '[42, 42, 0, 0, null]' "seed: summary: 42 tiles, all 42 fetched, none failed"
assert_eq "$(summary_field 'isinstance(d["seconds"], float) and d["seconds"] > 0')" true \
    "seed: summary: seconds"
assert_eq "$(upstream_requests)" 42 "seed: HERE asked once per tile"
assert_eq "$(access_lines 'o["indice"] == "seeder" and o["status"] == 200 and o["cache_status"] == "MISS"')" 42 \
    "seed: 42 misses counted for índice seeder in the proxy's log"
assert_eq "$(access_lines 'o["path"] == "/here-proxy/base/mc/11/1098/671/png"')" 1 \
    "seed: the tile paths a map client asks for"
ERR=$(cat "$RUN_DIR/first.err")
assert_match "$ERR" 'hereproxy-seed: progress: [0-9]+/42 tiles \([0-9]+%\), [0-9.]+ tiles/s, ETA [0-9]+ s, fetched [0-9]+, cached 0, failed 0' \
    "seed: stderr not a terminal: plain progress lines"
assert_match "$ERR" 'hereproxy-seed: done: 42/42 tiles \(100%\).*fetched 42, cached 0, failed 0' \
    "seed: ... and a last line"
assert_eq "$(printf '%s' "$ERR" | tr -d '\n' | tr -d '[:print:]' | wc -c)" 0 \
    "seed: no bar, no escape sequence in a log"
assert_eq "$(wc -l <"$RUN_DIR/first.out")" 1 "seed: stdout is the summary alone"

# A map client's request for one of the tiles is a hit on the same entry.
req GET "$P/base/mc/11/1098/671/png?style=explore.day&indice=web"
check_status 200 "map client: 200"
check_header X-Cache HIT "map client: the seeded tile is a HIT"

# ------------------------------------------------ second run
seed second --url "$P" --bbox "$BERLIN" --zoom 10-11 --indice seeder
assert_eq "$SEED_RC" 0 "second run: exit 0"
assert_eq "$(summary_field '[d["tiles"], d["fetched"], d["cached"], d["failed"]]')" \
    '[42, 0, 42, 0]' "second run: fetched 0, cached 42"
assert_eq "$(upstream_requests)" 42 "second run: HERE not asked again"

# ------------------------------------------------ a terminal
script -qec "'$SEED' --url '$P' --bbox '$BERLIN' --zoom 10 --indice seeder" \
    "$RUN_DIR/tty.typescript" >/dev/null 2>&1 </dev/null
TTY_OUT=$(cat "$RUN_DIR/tty.typescript")
assert_contains "$TTY_OUT" $'\r[' "terminal: a bar redrawn in place"
assert_match "$TTY_OUT" '\] 100% 12/12 [0-9.]+ tiles/s ETA [-0-9:]+ fetched 0 cached 12\b' \
    "terminal: done/total, tiles/s, ETA, fetched and cached"
assert_contains "$TTY_OUT" '{"tiles":12,"fetched":0,"cached":12,"failed":0,' \
    "terminal: the summary still comes last"

# ------------------------------------------------ the proxy's 429
# 10 tiles from stdin at 4 at once; índice slow may have 2 a second.
for y in $(seq 2680 2689); do echo "13/4400/$y"; done >"$RUN_DIR/slow.tiles"
"$SEED" --url "$P" --tiles - --indice slow --concurrency 4 \
    <"$RUN_DIR/slow.tiles" >"$RUN_DIR/slow.out" 2>"$RUN_DIR/slow.err"
SEED_RC=$?
SUMMARY=$(tail -n 1 "$RUN_DIR/slow.out")
assert_eq "$SEED_RC" 0 "429: the run ends well: exit 0"
assert_eq "$(summary_field '[d["tiles"], d["fetched"] + d["cached"], d["failed"], d["stopped"]]')" \
    '[10, 10, 0, null]' "429: every tile served in the end, none failed"
n429=$(access_lines 'o["indice"] == "slow" and o["status"] == 429')
assert_eq "$([ "$n429" -ge 1 ] && echo yes)" yes "429: the proxy did refuse some ($n429)"
assert_match "$(cat "$RUN_DIR/slow.err")" 'answered 429 rate limit exceeded for indice slow; pausing [0-9.]+ s as its Retry-After asks' \
    "429: the seeder says it pauses as Retry-After asks"
# After each 429 (Retry-After: 1) the whole run waits: no request of
# índice slow reaches the proxy between 0.2 s and 0.9 s later.
gaps=$(python3 - "$LOG_MAIN" <<'EOF'
import json, sys
from datetime import datetime
ts, bad = [], []
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "access" and o.get("indice") == "slow":
        t = datetime.strptime(o["ts"].replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        ts.append((t, o["status"]))
for t, s in ts:
    if s == 429:
        bad += [u - t for u, _ in ts if 0.2 < u - t < 0.9]
print("ok" if not bad else "%d requests, e.g. %s s after a 429" % (len(bad), ["%.2f" % b for b in bad[:5]]))
EOF
)
assert_eq "$gaps" ok "429: Retry-After honoured by the whole run"
assert_eq "$(upstream_requests)" 52 "429: HERE asked once per new tile"

# ------------------------------------------------ a token refused, a quota spent
start_proxy quota "HEREPROXY_CLIENT_TOKENS=$TOKEN:small" \
    QUOTA_UPSTREAM_INDEX_OVERRIDES=small:3/day
start_nginx quota "$PROXY_ADDR"
Q=$NGINX_URL/here-proxy
for x in $(seq 4400 4407); do echo "13/$x/2700"; done >"$RUN_DIR/quota.tiles"
seed notoken --url "$Q" --tiles "$RUN_DIR/quota.tiles"
assert_eq "$SEED_RC" 3 "no token: stopped, exit 3"
assert_eq "$(summary_field '[d["tiles"], d["fetched"], d["stopped"]]')" '[8, 0, "refused"]' \
    "no token: summary says refused, nothing fetched"
assert_contains "$(cat "$RUN_DIR/notoken.err")" "stopped: the proxy answered 401" \
    "no token: the seeder says the proxy's 401"
assert_eq "$(upstream_requests)" 52 "no token: HERE not asked"

printf '%s\n' "$TOKEN" >"$RUN_DIR/token"
key_exempt "$RUN_DIR/token"
seed quota --url "$Q" --tiles "$RUN_DIR/quota.tiles" --token-file "$RUN_DIR/token" \
    --concurrency 2
assert_eq "$SEED_RC" 3 "spent quota: stopped, exit 3"
assert_eq "$(summary_field '[d["tiles"], d["fetched"], d["failed"], d["stopped"]]')" \
    '[8, 3, 0, "cache_only"]' "spent quota: 3 fetched, then the summary says cache_only"
assert_contains "$(cat "$RUN_DIR/quota.err")" \
    "stopped: the proxy answered 503 cache-only: the upstream quota of indice small (3/day) is spent" \
    "spent quota: the seeder says so in the proxy's words"
assert_eq "$(upstream_requests)" 55 "spent quota: HERE asked for 3 tiles only"
assert_eq "$(cat "$RUN_DIR"/notoken.* "$RUN_DIR"/quota.* | grep -c -- "$TOKEN")" 0 \
    "the client token is in nothing the seeder wrote"
seed quota-again --url "$Q" --tiles "$RUN_DIR/quota.tiles" --token "$TOKEN" \
    --concurrency 1
assert_eq "$(summary_field '[d["fetched"], d["cached"], d["stopped"]]')" '[0, 3, "cache_only"]' \
    "spent quota: a second run gets the 3 cached tiles, then stops (--token)"

# ------------------------------------------------ SIGINT
upstream_control delay 'ms=300&times=-1'
"$SEED" --url "$P" --bbox "$BERLIN" --zoom 13-14 --concurrency 2 \
    --progress-interval 1 >"$RUN_DIR/int.out" 2>"$RUN_DIR/int.err" </dev/null &
SEED_PID=$!
deadline=$((SECONDS + 15))
until grep -qs 'progress:' "$RUN_DIR/int.err" || [ "$SECONDS" -ge "$deadline" ]; do
    sleep 0.1
done
t0=$(date +%s.%N)
kill -INT "$SEED_PID"
deadline=$((SECONDS + 10))
while kill -0 "$SEED_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.05
done
t1=$(date +%s.%N)
kill -KILL "$SEED_PID" 2>/dev/null
wait "$SEED_PID"
SEED_RC=$?
upstream_control delay 'ms=0&times=-1'
SUMMARY=$(tail -n 1 "$RUN_DIR/int.out")
assert_eq "$SEED_RC" 130 "SIGINT: exit 130"
assert_eq "$(python3 -c "print($t1 - $t0 < 1.5)")" True \
    "SIGINT: stops at once, in-flight transfers abandoned ($(python3 -c "print(round($t1 - $t0, 2))") s)"
assert_eq "$(summary_field 'd["stopped"] == "signal" and d["tiles"] > d["fetched"] + d["cached"] + d["failed"] > 0 and d["failed"] == 0')" \
    true "SIGINT: the summary is printed, with the tiles done so far"

finish
