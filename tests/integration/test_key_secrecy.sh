#!/bin/bash
# The HERE key stays secret.  A unique random key (lib.sh makes one per run)
# is given once through HERE_API_KEY and once through HERE_API_KEY_FILE, and
# HERE platform credentials whose secret holds it through
# HERE_CREDENTIALS_FILE (tiles then go with bearer tokens); a broad workload
# runs through NGINX (hits, misses, every error class, HERE
# answering 401/403/500 or too slowly, health, preflight, metrics if any,
# --check-config, --help); then every byte the proxy, spawn-fcgi, NGINX and
# the clients saw is searched for the key, and for every token the
# upstream issued: zero hits, while the upstream received the key or a
# token on every request.  The process is not dumpable.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

KEYFILE=$RUN_DIR/here-api-key
printf '%s\n' "$SERVER_KEY" >"$KEYFILE"
chmod 644 "$KEYFILE"
key_exempt "$KEYFILE"

CREDS=$RUN_DIR/credentials.properties
start_upstream --credentials-file "$CREDS"
write_credentials "$CREDS" hpKeyId-secrecy "sec-$SERVER_KEY"
start_proxy env HERE_TIMEOUT_MS=800 HERE_RETRIES=1
LOG_ENV=$PROXY_LOG PID_ENV=$PROXY_PID
start_nginx env "$PROXY_ADDR"
URL_ENV=$NGINX_URL NGINX_ENV_DIR=$NGINX_DIR
start_proxy file HERE_API_KEY= "HERE_API_KEY_FILE=$KEYFILE" HERE_TIMEOUT_MS=800 HERE_RETRIES=1
LOG_FILE=$PROXY_LOG
start_nginx file "$PROXY_ADDR"
URL_FILE=$NGINX_URL
start_proxy creds HERE_API_KEY= "HERE_CREDENTIALS_FILE=$CREDS" HERE_TIMEOUT_MS=800 HERE_RETRIES=1
LOG_CREDS=$PROXY_LOG
start_nginx creds "$PROXY_ADDR"
URL_CREDS=$NGINX_URL

# workload BASE_URL TAG: every kind of answer the proxy gives.
workload() {
    local u=$1 t=$2 p=$1/here-proxy z
    req GET "$p/base/mc/3/1/1/png?indice=$t"           # miss
    check_status 200 "$t: miss 200"
    req GET "$p/base/mc/3/1/1/png?indice=$t"           # hit
    check_header X-Cache HIT "$t: hit"
    req HEAD "$p/base/mc/3/1/1/png"
    req GET "$p/base/mc/3/1/1/png" -H "If-None-Match: $(header ETag)"
    req GET "$p/copyright?indice=$t"
    req GET "$p/info"
    req GET "$p/base/mc/3/1/1/png?apiKey=clientKEY&app_id=x&app_code=y"
    check_status 200 "$t: a client's own apiKey is ignored"
    req GET "$p/base/mc/99/0/0/png"                    # 400
    req GET "$p/nope"                                  # 404
    req POST "$p/base/mc/3/1/1/png"                    # 405
    req GET "$p/base/mc/3/1/1/png?indice=$(head -c 5000 /dev/zero | tr '\0' a)"   # 414
    req OPTIONS "$p/base/mc/3/1/1/png" -H 'Origin: http://example.com' \
        -H 'Access-Control-Request-Method: GET'
    req GET "$u/healthz"
    req GET "$u/readyz"
    req GET "$u/metrics"
    req GET "$u/metrics/prometheus"
    req GET "$u/here-proxy/metrics"
    for z in 401 403 404 429 500 503; do
        upstream_control fail "status=$z&times=5&path=/v3/base/mc/10/$z/"
        req GET "$p/base/mc/10/$z/1/png?indice=$t"
        assert_match "$HTTP_STATUS" '^[45][0-9][0-9]$' "$t: HERE answering $z -> an error status ($HTTP_STATUS)"
        assert_match "$(upstream_path_requests "/v3/base/mc/10/$z/1/png")" '^[1-9]' "$t: the $z came from the upstream"
    done
    upstream_control delay 'ms=2000&times=1&path=/v3/base/mc/5/'
    req GET "$p/base/mc/5/1/1/png?indice=$t"
    check_json_error 504 "$t: HERE too slow -> 504"
    upstream_control reset
}
workload "$URL_ENV" env
workload "$URL_FILE" file
workload "$URL_CREDS" creds

# ------------------------------------------------------------ command line
CLI_OUT=$RUN_DIR/cli.out
for args in --check-config --help --version --bogus; do
    env "HERE_API_KEY=$SERVER_KEY" "$HEREPROXY_BIN" $args >>"$CLI_OUT" 2>&1
    env "HERE_API_KEY_FILE=$KEYFILE" "$HEREPROXY_BIN" $args >>"$CLI_OUT" 2>&1
    env "HERE_CREDENTIALS_FILE=$CREDS" "$HEREPROXY_BIN" $args >>"$CLI_OUT" 2>&1
done
# Both a key and credentials: refused, neither quoted.
env "HERE_API_KEY_FILE=$KEYFILE" "HERE_CREDENTIALS_FILE=$CREDS" "$HEREPROXY_BIN" --check-config >>"$CLI_OUT" 2>&1
env "HERE_API_KEY=$SERVER_KEY" HEREPROXY_ZMAX=99 "$HEREPROXY_BIN" --check-config >>"$CLI_OUT" 2>&1
env "HERE_API_KEY_FILE=$KEYFILE" "HERE_BASE_URL=ftp://x" "$HEREPROXY_BIN" --check-config >>"$CLI_OUT" 2>&1
assert_contains "$(cat "$CLI_OUT")" "configuration OK" "--check-config ran (its output is searched too)"

# ------------------------------------------------------------ not dumpable
assert_eq "$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: d = json.loads(l)
    except ValueError: continue
    if d.get("event") == "start": print(d.get("dumpable")); break' "$LOG_ENV")" 0 \
    "the start event says the process is not dumpable (PR_GET_DUMPABLE = 0)"
# A non-dumpable process's /proc/PID files belong to root, not to its user:
# run one as nobody and look.
DPORT=$(free_port)
RUNAS=()
[ "$(id -u)" -eq 0 ] && RUNAS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
env "HERE_API_KEY_FILE=$KEYFILE" "HERE_BASE_URL=$UPSTREAM_URL/v3" \
    "${RUNAS[@]}" "$HEREPROXY_BIN" --listen "127.0.0.1:$DPORT" >>"$RUN_DIR/proxy-nobody.log" 2>&1 </dev/null &
DPID=$!
_register proxy-nobody "$DPID"
wait_for_port "$DPORT" 10 "$DPID" || die "proxy as another user did not start: $(tail -n 3 "$RUN_DIR/proxy-nobody.log")"
PUID=$(awk '/^Uid:/ {print $2}' "/proc/$DPID/status")
MEMOWNER=$(stat -c %u "/proc/$DPID/mem")
if [ "$PUID" != 0 ]; then
    assert_eq "$MEMOWNER" 0 "/proc/PID/mem of the proxy (uid $PUID) belongs to root: not dumpable"
else
    not_ok "the proxy could not be run as another user (uid $PUID)"
fi
if cat "/proc/$DPID/environ" >/dev/null 2>&1 && [ "$(id -u)" -ne 0 ]; then
    not_ok "another process of the same user cannot read /proc/PID/environ"
else
    ok "/proc/PID/environ is not readable by the proxy's own user"
fi
stop_pid "$DPID"

# ------------------------------------------------------------ the search
upstream_record_check 'r["path"] == "/oauth2/token" or r["query"].get("apiKey") == ["'"$SERVER_KEY"'"] or (r["headers"].get("authorization", "").startswith("Bearer hpTOKEN.") and "apiKey" not in r["query"])' \
    "the upstream received the key, or a token and no key, on every request"
assert_match "$(grep -c '"authorization": "Bearer ' "$UPSTREAM_RECORD")" '^[1-9][0-9]*$' \
    "the upstream received bearer tokens from the credentials' proxy"
check_no_token_leak "no token the upstream issued appears in a file the proxies, NGINX, the CLI or the clients wrote"
assert_match "$(grep -c '"method"' "$UPSTREAM_RECORD")" '^[1-9][0-9]+$' "the upstream recorded at least 10 requests"
SCANNED=$(find "$RUN_DIR" -type f ! -name upstream-requests.jsonl ! -name upstream.log ! -path "$KEYFILE" ! -path "$CREDS" | wc -l)
HITS=$(find "$RUN_DIR" -type f ! -name upstream-requests.jsonl ! -name upstream.log ! -path "$KEYFILE" ! -path "$CREDS" \
    -exec grep -laF -- "$SERVER_KEY" {} + 2>/dev/null)
assert_eq "$HITS" "" "the key appears in none of the $SCANNED files written by the proxies, spawn-fcgi, NGINX, the CLI and the clients"
for f in "$LOG_ENV" "$LOG_FILE" "$LOG_CREDS" "$NGINX_ENV_DIR/access.log" "$NGINX_ENV_DIR/error.log" "$RUN_DIR/all-responses.txt" "$CLI_OUT"; do
    assert_match "$(wc -c <"$f")" '^[1-9]' "searched a non-empty $(basename "$(dirname "$f")")/$(basename "$f")"
done
check_log_json "$LOG_ENV" "proxy log lines are JSON" 20
finish
