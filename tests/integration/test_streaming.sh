#!/bin/bash
# Misses larger than HERE_BUFFER_MAX_BYTES (64 KiB) stream through NGINX
# (the shipped fastcgi_pass location) as HERE sends them: the client has the
# first bytes before HERE has sent the last. A streaming transfer HERE cuts
# off is never cached, and the client can tell: its connection is cut, it
# never gets a short body that looks complete (through NGINX, which passes
# the Content-Length on, nor through Apache, which sends the body chunked).
# (Tile-sized bodies go out only whole, and a cut one is retried:
# test_stalls.sh.) HERE's bodies here are padded to BIG bytes.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3 apache2
require_bin

BIG=200000
start_upstream
start_proxy main
PLOG=$PROXY_LOG
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# body_done_ts PATH: when the upstream sent the last byte of a slow body.
body_done_ts() {
    python3 - "$UPSTREAM_RECORD" "$1" <<'EOF'
import json, sys
ts = [r["ts"] for r in map(json.loads, open(sys.argv[1]))
      if r.get("event") == "body_done" and r.get("path") == sys.argv[2]]
print(ts[-1] if ts else "none")
EOF
}

# check_cut NAME CURL_EXIT HEADERS BODY: the client saw a broken transfer,
# promptly: curl 18 (connection closed before the Content-Length or the last
# chunk) with fewer bytes than announced, or 52 (closed before anything, when
# the web server read the whole truncated response at once).  Not 0 (a short
# body passed off as whole), not 28 (left waiting).
check_cut() {
    local name=$1 rc=$2 clen got
    clen=$(grep -i '^content-length:' "$3" 2>/dev/null | tr -dc 0-9)
    got=$(cat "$4" 2>/dev/null | wc -c | tr -d ' ')   # no file: no body
    case $rc in
    18)
        if [ -z "$clen" ] || [ "$got" -lt "$clen" ]; then
            ok "$name: connection cut after $got bytes${clen:+ of $clen} (curl 18)"
        else
            not_ok "$name: connection cut" "curl 18 but $got bytes of $clen"
        fi
        ;;
    52)
        if [ "$got" -eq 0 ]; then
            ok "$name: connection cut before the head (curl 52)"
        else
            not_ok "$name: connection cut" "curl 52 with $got bytes"
        fi
        ;;
    *) not_ok "$name: connection cut" "curl exit $rc, expected 18 or 52" "$(tr -d '\r' <"$3" 2>/dev/null)" ;;
    esac
}

# ------------------------------------------------ streaming a slow body
TILE=/base/mc/5/3/4/png
UPATH=/v3$TILE
upstream_control slowbody "first=1024&after_ms=2000&bytes=$BIG&times=1&path=$UPATH"
fetch_parallel "$RUN_DIR/lead" "$P$TILE?indice=lead" &
lead_pid=$!
sleep 0.5   # the first request is in flight, HERE is pausing
fetch_parallel "$RUN_DIR/follow" "$P$TILE?indice=follow"
wait "$lead_pid"
done_ts=$(body_done_ts "$UPATH")
assert_match "$done_ts" '^[0-9]+\.[0-9]+$' "slow body: the upstream recorded when it sent its last byte"

R=$RUN_DIR/lead
assert_eq "$(results_eval "$R" 'rs[0]["status"]')" 200 "slow body: 200"
assert_eq "$(results_eval "$R" 'rs[0]["headers"].get("x-cache")')" MISS "slow body: X-Cache MISS"
assert_eq "$(results_eval "$R" 'rs[0]["error"]')" null "slow body: the body arrived whole"
assert_eq "$(results_eval "$R" 'rs[0]["length"] == int(rs[0]["headers"].get("content-length", -1)) == '$BIG)" true \
    "slow body: as many bytes as Content-Length ($BIG, more than HERE_BUFFER_MAX_BYTES)"
assert_eq "$(results_eval "$R" 'rs[0]["t_first"] is not None and rs[0]["t_first"] < '"$done_ts")" true \
    "slow body: first byte at the client before the upstream sent its last byte"
diag "first byte $(results_eval "$R" "round($done_ts - rs[0]['t_first'], 3)") s before the upstream finished"
LEAD_SHA=$(results_eval "$R" 'rs[0]["sha1"]')

R=$RUN_DIR/follow
assert_eq "$(results_eval "$R" 'rs[0]["status"]')" 200 "slow body, second client: 200"
assert_eq "$(results_eval "$R" 'rs[0]["headers"].get("x-cache")')" COALESCED \
    "slow body, second client: X-Cache COALESCED (joined the transfer in flight)"
assert_eq "$(results_eval "$R" 'rs[0]["t_first"] is not None and rs[0]["t_first"] < '"$done_ts")" true \
    "slow body, second client: first bytes before the upstream finished too"
assert_eq "$(results_eval "$R" 'rs[0]["sha1"]')" "$LEAD_SHA" "slow body, second client: the same bytes"
assert_eq "$(upstream_path_requests "$UPATH")" 1 "slow body: one upstream request for both clients"

req GET "$P$TILE?indice=after"
check_status 200 "slow body: next request 200"
check_header X-Cache HIT "slow body: the streamed tile was cached (HIT)"
assert_eq "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" "$LEAD_SHA" "slow body: HIT has the streamed bytes"
assert_eq "$(upstream_path_requests "$UPATH")" 1 "slow body: the HIT did not reach the upstream"

# ------------------------------------------------ a truncated transfer
# truncate: HERE announces the full Content-Length, sends half and hangs up.
TILE=/base/mc/5/3/5/png
UPATH=/v3$TILE
upstream_control truncate "bytes=$BIG&times=1&path=$UPATH"
curl -sS --max-time 15 -o "$RUN_DIR/trunc.body" -D "$RUN_DIR/trunc.headers" \
    "$P$TILE?indice=trunc" 2>"$RUN_DIR/trunc.err"
check_cut "truncated" $? "$RUN_DIR/trunc.headers" "$RUN_DIR/trunc.body"
assert_eq "$(upstream_path_requests "$UPATH")" 1 "truncated: one upstream request so far"

req GET "$P$TILE?indice=retry"
check_status 200 "truncated: the next request is 200"
check_header X-Cache MISS "truncated: the next request is a MISS (the cut-off body was not cached)"
assert_eq "$(upstream_path_requests "$UPATH")" 2 "truncated: the next request went upstream again"
assert_eq "$(wc -c <"$HTTP_BODY_FILE" | tr -d ' ')" "$(header Content-Length)" "truncated: the refetched body is whole"
assert_eq "$(tail -c 8 "$HTTP_BODY_FILE" | od -An -tx1 | tr -d ' \n')" 49454e44ae426082 \
    "truncated: the refetched PNG ends with its IEND chunk"
FULL_SHA=$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)
req GET "$P$TILE"
check_header X-Cache HIT "truncated: then a HIT"
assert_eq "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" "$FULL_SHA" "truncated: the HIT has the whole body"

# --------------------------------- a truncated transfer with two readers
# The delay holds the transfer so that a second request joins it.
TILE=/base/mc/5/3/6/png
UPATH=/v3$TILE
upstream_control delay "ms=1000&times=1&path=$UPATH"
upstream_control truncate "bytes=$BIG&times=1&path=$UPATH"
curl -sS --max-time 15 -o "$RUN_DIR/t1.body" -D "$RUN_DIR/t1.headers" "$P$TILE?indice=t1" \
    2>"$RUN_DIR/t1.err" &
c1=$!
sleep 0.4
curl -sS --max-time 15 -o "$RUN_DIR/t2.body" -D "$RUN_DIR/t2.headers" "$P$TILE?indice=t2" \
    2>"$RUN_DIR/t2.err"
rc2=$?
wait "$c1"
rc1=$?
check_cut "truncated, first reader" "$rc1" "$RUN_DIR/t1.headers" "$RUN_DIR/t1.body"
check_cut "truncated, second reader" "$rc2" "$RUN_DIR/t2.headers" "$RUN_DIR/t2.body"
assert_eq "$(upstream_path_requests "$UPATH")" 1 "truncated, two readers: one upstream request"
req GET "$P$TILE"
check_status 200 "truncated, two readers: the next request is 200"
check_header X-Cache MISS "truncated, two readers: and a MISS"
assert_eq "$(upstream_path_requests "$UPATH")" 2 "truncated, two readers: the next request went upstream"

# ------------------------------------------------ truncated, through Apache
# mod_proxy_fcgi sends the body chunked: a normal end of the FastCGI
# request would give the client a terminating chunk after half a tile.
start_apache main "$PROXY_ADDR"
TILE=/base/mc/5/3/7/png
UPATH=/v3$TILE
upstream_control truncate "bytes=$BIG&times=1&path=$UPATH"
curl -sS --max-time 20 -o "$RUN_DIR/ta.body" -D "$RUN_DIR/ta.headers" \
    "$APACHE_URL/here-proxy$TILE?indice=apache" 2>"$RUN_DIR/ta.err"
check_cut "truncated via Apache" $? "$RUN_DIR/ta.headers" "$RUN_DIR/ta.body"
curl -sS --max-time 20 -o "$RUN_DIR/ta2.body" -D "$RUN_DIR/ta2.headers" "$APACHE_URL/here-proxy$TILE" 2>"$RUN_DIR/ta2.err"
assert_eq "$?/$(grep -i '^x-cache:' "$RUN_DIR/ta2.headers" | tr -d '\r' | cut -d' ' -f2)" 0/MISS \
    "truncated via Apache: the next request is whole, and a MISS"
assert_eq "$(tail -c 8 "$RUN_DIR/ta2.body" | od -An -tx1 | tr -d ' \n')" 49454e44ae426082 \
    "truncated via Apache: the refetched PNG ends with its IEND chunk"
# The proxy's deliberate abort (a bogus FastCGI record), as Apache logs it
# (man page, DIAGNOSTICS).
if grep -q 'AH01068: Got bogus version 0' "$RUN_DIR/apache-main/error.log"; then
    ok "truncated via Apache: Apache logs 'AH01068: Got bogus version 0' for the abort"
else
    not_ok "truncated via Apache: Apache logs 'AH01068: Got bogus version 0'" \
        "$(tail -n 5 "$RUN_DIR/apache-main/error.log")"
fi

# ------------------------------------------------ logs
n=$(python3 - "$PLOG" <<'EOF'
import json, sys
n = []
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("indice") in ("trunc", "t1", "t2", "apache") and "cut off" in (o.get("error") or ""):
        n.append("%s=%s" % (o["indice"], o.get("cache_status")))
print(" ".join(sorted(n)))
EOF
)
assert_eq "$n" "apache=MISS t1=MISS t2=COALESCED trunc=MISS" \
    "the access lines of the four cut-off requests say so in error (the second reader COALESCED)"
n=$(python3 - "$PLOG" <<'EOF'
import json, sys
n = []
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("indice") in ("trunc", "t1", "t2", "apache"):
        n.append("%s=%s" % (o["indice"], o.get("aborted")))
print(" ".join(sorted(n)))
EOF
)
assert_eq "$n" "apache=upstream_broken t1=upstream_broken t2=upstream_broken trunc=upstream_broken" \
    "the four cut-off requests' access lines say \"aborted\":\"upstream_broken\""
check_log_json "$PLOG" "proxy log is JSON lines with complete access lines" 8
check_no_key_leak "no key in responses or logs" "$PLOG"
finish
