#!/bin/bash
# contrib/quickstart up/status/down on free ports with a private state
# directory (QUICKSTART_PORT, QUICKSTART_PROXY_PORT, QUICKSTART_MEMCACHED_PORT,
# QUICKSTART_STATE) and the binary under test (QUICKSTART_BIN: no package
# step, no build), so it never touches a running quickstart on 8080.  Only
# up/status/down: `quickstart test` runs this suite.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin
QS=$abs_top_srcdir/contrib/quickstart
[ -x "$QS" ] || die "missing $QS"
export QUICKSTART_STATE=$RUN_DIR/qs QUICKSTART_BIN=$HEREPROXY_BIN
QUICKSTART_PORT=$(free_port)
QUICKSTART_PROXY_PORT=$(free_port)
QUICKSTART_MEMCACHED_PORT=$(free_port)
export QUICKSTART_PORT QUICKSTART_PROXY_PORT QUICKSTART_MEMCACHED_PORT
U=http://127.0.0.1:$QUICKSTART_PORT
qs_down() { "$QS" down >>"$RUN_DIR/down.out" 2>&1; }
# whatever happens, stop what quickstart started, then the usual cleanup
trap '_qs_rc=$?; qs_down; (exit $_qs_rc); _cleanup' EXIT

# ------------------------------------------------------------------ up
OUT=$(timeout 120 "$QS" up 2>&1)
rc=$?
diag "$OUT"
assert_eq "$rc" 0 "quickstart up exits 0"
assert_contains "$OUT" "local demo tiles" "without HERE_API_KEY it says the tiles are local demo tiles"
assert_contains "$OUT" "No HERE_API_KEY or HERE_CREDENTIALS_FILE set" "... and that no key or credentials are set"
assert_contains "$OUT" "demo map:     $U/" "it prints the demo map URL"
assert_contains "$OUT" "$QUICKSTART_STATE/hereproxy.log" "it prints where the logs are"
for c in memcached upstream hereproxy nginx; do
    pid=$(cat "$QUICKSTART_STATE/$c.pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then ok "$c runs (pid $pid)"; else not_ok "$c runs"; fi
done
PIDS=$(cat "$QUICKSTART_STATE"/*.pid 2>/dev/null | tr '\n' ' ')

req GET "$U/"
check_status 200 "the demo page at /"
assert_contains "$(cat "$HTTP_BODY_FILE")" "hereproxy demo" "the page is the demo page"
req GET "$U/leaflet/leaflet.css"
check_status 200 "Leaflet from libjs-leaflet at /leaflet/"
check_header Content-Type text/css "leaflet.css as text/css"
req GET "$U/here-proxy/base/mc/3/4/2/png?indice=qs&style=explore.night"
check_status 200 "a tile through NGINX, hereproxy and the demo upstream"
check_header Content-Type image/png "the tile is a PNG"
assert_eq "$(head -c 8 "$HTTP_BODY_FILE" | od -An -tx1 | tr -d ' \n')" 89504e470d0a1a0a "PNG signature"
QS_UP=http://127.0.0.1:$(tr -dc 0-9 <"$QUICKSTART_STATE/upstream.port")
assert_match "$(curl -s "$QS_UP/__control/stats" | python3 -c 'import json,sys; d = json.load(sys.stdin); print(d["tokens_issued"], d["bearer_ok"] > 0, d["token_refused"])')" \
    '^[1-9][0-9]* True 0$' "the demo runs on OAuth: the proxy got a token from the demo upstream and sent it"
assert_contains "$(grep '"event":"start"' "$QUICKSTART_STATE/hereproxy.log")" '"here_auth":"oauth"' \
    "the demo proxy uses HERE_CREDENTIALS_FILE"
req GET "$U/maplibre/maplibre-gl.mjs"
check_status 200 "MapLibre for the demo's switch, from npm, at /maplibre/"
check_header Content-Type text/javascript "MapLibre's module as JavaScript"
req GET "$U/here-proxy/tilejson/base.json?indice=qs"
check_status 200 "TileJSON through the quickstart"
assert_contains "$(cat "$HTTP_BODY_FILE")" "\"$U/here-proxy/base/mc/{z}/{x}/{y}/png?" \
    "its tile template names the quickstart's NGINX (HEREPROXY_PUBLIC_URL)"
req GET "$U/metrics"
check_status 200 "/metrics through the quickstart NGINX"
assert_contains "$(cat "$HTTP_BODY_FILE")" '"qs"' "/metrics lists the índice qs"

# ------------------------------------------------------- up again, status
OUT=$(timeout 30 "$QS" up 2>&1)
rc=$?
assert_eq "$rc" 0 "a second up exits 0"
assert_contains "$OUT" "already up" "a second up reports what already runs"
assert_eq "$(cat "$QUICKSTART_STATE"/*.pid | tr '\n' ' ')" "$PIDS" "a second up starts nothing new"
OUT=$(timeout 30 "$QS" status 2>&1)
assert_contains "$OUT" "nginx: running" "status: nginx running"
assert_contains "$OUT" "hereproxy: running" "status: hereproxy running"

# ------------------------------------------------------------------ down
OUT=$(timeout 60 "$QS" down 2>&1)
assert_eq "$?" 0 "down exits 0"
for pid in $PIDS; do
    if kill -0 "$pid" 2>/dev/null; then not_ok "pid $pid stopped by down"; else ok "pid $pid stopped by down"; fi
done
assert_eq "$(ls "$QUICKSTART_STATE"/*.pid 2>/dev/null | wc -l)" 0 "down removes the pid files"
OUT=$(timeout 30 "$QS" down 2>&1)
assert_contains "$OUT" "nothing was running" "down again: nothing was running"

# ------------------------------------- against "HERE" with credentials
# A local upstream stands in for HERE: HERE_CREDENTIALS_FILE and
# HERE_BASE_URL as an operator sets them for HERE.
CREDS=$RUN_DIR/credentials.properties
start_upstream --credentials-file "$CREDS"
write_credentials "$CREDS" qs-key-id "qs-secret-$SERVER_KEY"
OUT=$(HERE_CREDENTIALS_FILE=$CREDS HERE_BASE_URL=$UPSTREAM_URL/v3 timeout 120 "$QS" up 2>&1)
rc=$?
diag "$OUT"
assert_eq "$rc" 0 "quickstart up with HERE_CREDENTIALS_FILE exits 0"
assert_contains "$OUT" "HERE_CREDENTIALS_FILE is set: tiles come from $UPSTREAM_URL/v3 with OAuth bearer tokens" \
    "it says tiles come from HERE_BASE_URL with OAuth bearer tokens"
assert_not_contains "$OUT" "demo upstream" "no demo upstream"
[ -f "$QUICKSTART_STATE/upstream.pid" ] && not_ok "no demo upstream started" || ok "no demo upstream started"
req GET "$U/here-proxy/base/mc/5/3/3/png?indice=qs"
check_status 200 "a tile through the quickstart with HERE_CREDENTIALS_FILE"
upstream_record_check 'r["path"] == "/oauth2/token" or (r["headers"].get("authorization", "").startswith("Bearer ") and "apiKey" not in r["query"])' \
    "the quickstart's proxy sent a bearer token, no apiKey"
OUT=$(timeout 60 "$QS" down 2>&1)
assert_eq "$?" 0 "down exits 0"
OUT=$(HERE_CREDENTIALS_FILE=$CREDS HERE_API_KEY=some-key timeout 30 "$QS" up 2>&1)
rc=$?
assert_eq "$rc" 1 "up with a key and credentials exits 1"
assert_contains "$OUT" "HERE_CREDENTIALS_FILE are both set: use one" "it says both are set"
assert_eq "$(ls "$QUICKSTART_STATE"/*.pid 2>/dev/null | wc -l)" 0 "nothing left running"
OUT=$(HERE_CREDENTIALS_FILE=$RUN_DIR/nonexistent timeout 30 "$QS" up 2>&1)
assert_eq "$?" 1 "up with a missing credentials file exits 1"
assert_contains "$OUT" "is not a readable file" "it says the file is not readable"

# ---------------------------------------------------------- port in use
python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(120)' "$QUICKSTART_PORT" &
HOLDER=$!
_register port-holder "$HOLDER"
wait_for_port "$QUICKSTART_PORT" 10 "$HOLDER" || die "the port holder did not listen"
OUT=$(timeout 30 "$QS" up 2>&1)
rc=$?
assert_eq "$rc" 1 "up with the NGINX port taken exits 1"
assert_match "$OUT" "port $QUICKSTART_PORT on 127.0.0.1 is already in use" "it names the port in use"
assert_not_contains "$OUT" "Traceback" "no stack trace"
assert_eq "$(ls "$QUICKSTART_STATE"/*.pid 2>/dev/null | wc -l)" 0 "nothing was started"
if kill -0 "$HOLDER" 2>/dev/null; then ok "the other process on the port still runs"; else not_ok "the other process on the port still runs"; fi
stop_pid "$HOLDER"

# ------------------------------------------------- state dir not writable
: >"$RUN_DIR/a-file"
OUT=$(QUICKSTART_STATE=$RUN_DIR/a-file/state timeout 30 "$QS" up 2>&1)
rc=$?
assert_eq "$rc" 1 "up with an unwritable state directory exits 1"
assert_eq "$(printf '%s\n' "$OUT" | grep -c .)" 1 "one line: $OUT"
assert_contains "$OUT" "cannot write the state directory" "it says what it cannot write"
finish
