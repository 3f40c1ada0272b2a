#!/bin/bash
# Rotation without restart, under load: SIGHUP re-reads HERE_API_KEY_FILE
# and HERE_CREDENTIALS_FILE. The upstream accepts the old and the new
# credential until the reload, then only the new; every request of a
# bounded load through NGINX (every one a miss) is a 200; a transfer in
# flight at the reload finishes with the old credential; after the reload
# the upstream sees only the new one.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

load_field() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
# wait_event LOG EVENT COUNT: until LOG has COUNT lines of EVENT (10 s).
wait_event() {
    local deadline=$((SECONDS + 10))
    until [ "$(log_events "$1" "$2")" -ge "$3" ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.05; done
}
now() { python3 -c 'import time; print(time.time())'; }

CREDS_A=$RUN_DIR/credentials-a.properties
CREDS_B=$RUN_DIR/credentials-b.properties
start_upstream --credentials-file "$CREDS_A" --credentials-file "$CREDS_B"

# ------------------------------------------------------------ an API key
OLD=$SERVER_KEY
NEW=new-$SERVER_KEY
KEYFILE=$RUN_DIR/here-api-key
printf '%s\n' "$OLD" >"$KEYFILE"
key_exempt "$KEYFILE"
upstream_control apikeys "keys=$OLD,$NEW"
start_proxy key HERE_API_KEY= "HERE_API_KEY_FILE=$KEYFILE" CACHE_MAXSIZE=0
LOG=$PROXY_LOG
PID=$PROXY_PID
start_nginx key "$PROXY_ADDR"
N=$NGINX_URL

python3 "$abs_top_srcdir/tests/integration/load.py" 6 6 "$RUN_DIR/load-key.json" "$N/here-proxy" \
    "/base/mc/15/%d/%d/png?indice=rotation" &
LOAD=$!
_register load "$LOAD"
sleep 1.5
# A slow transfer in flight across the reload.
upstream_control delay 'ms=1500&times=1&path=/v3/base/mc/4/1/1/'
curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$N/here-proxy/base/mc/4/1/1/png" >"$RUN_DIR/slow.status" &
SLOW=$!
sleep 0.3
printf '%s\n' "$NEW" >"$KEYFILE.tmp"
mv "$KEYFILE.tmp" "$KEYFILE"
kill -HUP "$PID"
wait_event "$LOG" reload 1
T_RELOAD=$(now)
assert_contains "$(grep '"event":"reload"' "$LOG")" '"rotated":"here_api_key"' "SIGHUP: the reload says the API key rotated"
# From now on HERE takes the new key only.
upstream_control apikeys "keys=$NEW"
wait "$SLOW"
assert_eq "$(cat "$RUN_DIR/slow.status")" 200 "the transfer in flight at the reload: 200"
upstream_record_check 'r["path"] != "/v3/base/mc/4/1/1/png" or r["query"]["apiKey"] == ["'"$OLD"'"]' \
    "the transfer in flight finished with the old key"
wait "$LOAD"
_unregister "$LOAD"
diag "load across the key rotation: $(cat "$RUN_DIR/load-key.json")"
assert_eq "$(load_field "$RUN_DIR/load-key.json" failed)" 0 "key rotated under load: zero failed requests"
assert_match "$(load_field "$RUN_DIR/load-key.json" ok)" '^[1-9][0-9]{2,}$' "key rotated under load: at least 100 answered"
upstream_record_check '"method" not in r or r["ts"] < '"$T_RELOAD"' + 0.5 or r["query"].get("apiKey") == ["'"$NEW"'"]' \
    "after the reload, the upstream sees only the new key"
assert_match "$(python3 -c 'import json,sys
n = 0
for l in open(sys.argv[1]):
    r = json.loads(l)
    n += r.get("query", {}).get("apiKey") == [sys.argv[2]]
print(n)' "$UPSTREAM_RECORD" "$NEW")" '^[1-9][0-9]+$' "the upstream saw the new key (at least 10 requests)"
stop_pid "$PID" TERM 10

# ------------------------------------------------------------ credentials
ID_A=idA-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
ID_B=idB-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
write_credentials "$CREDS_A" "$ID_A" "secA-$SERVER_KEY"
write_credentials "$CREDS_B" "$ID_B" "secB-$SERVER_KEY"
CREDS=$RUN_DIR/credentials.properties
cp "$CREDS_A" "$CREDS"
key_exempt "$CREDS"
start_proxy creds HERE_API_KEY= "HERE_CREDENTIALS_FILE=$CREDS" CACHE_MAXSIZE=0
LOG=$PROXY_LOG
PID=$PROXY_PID
start_nginx creds "$PROXY_ADDR"
N=$NGINX_URL
req GET "$N/here-proxy/base/mc/4/2/2/png"
check_status 200 "credentials A: a tile"

python3 "$abs_top_srcdir/tests/integration/load.py" 6 6 "$RUN_DIR/load-creds.json" "$N/here-proxy" \
    "/base/mc/16/%d/%d/png?indice=rotation" &
LOAD=$!
_register load "$LOAD"
sleep 1.5
cp "$CREDS_B" "$CREDS.tmp"
mv "$CREDS.tmp" "$CREDS"
kill -HUP "$PID"
wait_event "$LOG" reload 1
assert_contains "$(grep '"event":"reload"' "$LOG")" '"rotated":"here_credentials"' \
    "SIGHUP: the reload says the credentials rotated"
assert_contains "$(grep '"event":"reload"' "$LOG")" "\"here_access_key_id\":\"$ID_B\"" \
    "the reload names the new access key id"
wait_event "$LOG" here_token 2
T_TOKEN_B=$(now)
line=$(grep '"event":"here_token"' "$LOG" | tail -n 1)
assert_contains "$line" '"reason":"new_credentials"' "the new credentials' token is logged"
assert_contains "$line" "\"here_access_key_id\":\"$ID_B\"" "... with the new access key id"
# HERE drops the old access key and its tokens.
rm -f "$CREDS_A"
upstream_control revoke "id=$ID_A"
wait "$LOAD"
_unregister "$LOAD"
diag "load across the credentials rotation: $(cat "$RUN_DIR/load-creds.json")"
assert_eq "$(load_field "$RUN_DIR/load-creds.json" failed)" 0 "credentials rotated under load: zero failed requests"
assert_match "$(load_field "$RUN_DIR/load-creds.json" ok)" '^[1-9][0-9]{2,}$' "credentials rotated under load: at least 100 answered"
curl -sS --max-time 5 "$UPSTREAM_URL/__control/tokens" >"$RUN_DIR/tokens.json"
key_exempt "$RUN_DIR/tokens.json"
assert_eq "$(python3 - "$UPSTREAM_RECORD" "$RUN_DIR/tokens.json" "$T_TOKEN_B" "$ID_A" "$ID_B" <<'EOF'
import json, sys
rec, toks, t_b, id_a, id_b = sys.argv[1], json.load(open(sys.argv[2]))["tokens"], float(sys.argv[3]), sys.argv[4], sys.argv[5]
seen = {id_a: 0, id_b: 0}
late_a = 0
for l in open(rec):
    r = json.loads(l)
    a = r.get("headers", {}).get("authorization", "")
    if not r.get("path", "").startswith("/v3/") or not a.startswith("Bearer "):
        continue
    k = toks.get(a[7:])
    seen[k] = seen.get(k, 0) + 1
    late_a += k == id_a and r["ts"] > t_b + 0.5
print("a=%s b=%s late_a=%d" % (seen[id_a] > 0, seen[id_b] >= 10, late_a))
EOF
)" "a=True b=True late_a=0" "tiles went with A's token before, B's after (at least 10), none with A's after"
stop_pid "$PID" TERM 10
check_no_token_leak "no token in any file the proxies, NGINX or the clients wrote"
check_log_json "$LOG" "proxy log lines are JSON" 5
finish
