#!/bin/bash
# HERE through a corporate proxy: libcurl takes HTTPS_PROXY (or
# https_proxy) and NO_PROXY from the environment that spawn-fcgi passes
# on, and the proxy sets nothing that would override them. A CONNECT
# proxy (tests/integration/connect_proxy.py, with Basic credentials)
# counts the tunnels to the HTTPS upstream (NGINX with TLS and HTTP/2 in
# front of the local HERE imitation): with HTTPS_PROXY the tiles go
# through one tunnel, with NO_PROXY naming the host they do not, with
# wrong credentials they fail (502). The credentials appear in no log.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi openssl curl python3
require_bin

# lib.sh keeps every test's traffic off proxies (NO_PROXY=*): here the
# proxy under test gets its own HTTPS_PROXY and NO_PROXY, and the test's
# own curl talks plain HTTP to NGINX (http_proxy is unset).
unset NO_PROXY no_proxy

start_upstream
start_tls_upstream

PROXY_USER=hpuser
PROXY_PW="pw-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')-Zq"
CONNECT_RECORD=$RUN_DIR/connect.jsonl
: >"$CONNECT_RECORD"
python3 "$abs_top_srcdir/tests/integration/connect_proxy.py" \
    --port-file "$RUN_DIR/connect.port" --record "$CONNECT_RECORD" \
    --auth "$PROXY_USER:$PROXY_PW" --allow "127.0.0.1:$TLS_PORT" \
    --lifetime "$TEST_TIMEOUT" >>"$RUN_DIR/connect.log" 2>&1 &
_register connect-proxy $!
for _ in $(seq 1 50); do [ -s "$RUN_DIR/connect.port" ] && break; sleep 0.1; done
CONNECT_PORT=$(tr -dc 0-9 <"$RUN_DIR/connect.port")
[ -n "$CONNECT_PORT" ] || die "connect_proxy.py wrote no port"
CONNECT_URL="http://$PROXY_USER:$PROXY_PW@127.0.0.1:$CONNECT_PORT"
diag "CONNECT proxy on 127.0.0.1:$CONNECT_PORT"

# tunnels: CONNECTs the proxy answered 200 so far.
tunnels() {
    python3 -c 'import json, sys
print(sum(1 for l in open(sys.argv[1]) if l.strip() and json.loads(l)["status"] == 200))' "$CONNECT_RECORD"
}
# start_field LOG FIELD: FIELD of the start event, as JSON.
start_field() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        l = json.loads(line)
    except ValueError:
        continue
    if l.get("event") == "start":
        print(json.dumps(l.get(sys.argv[2])))
        break
EOF
}
TLS_ENV=("HERE_BASE_URL=$TLS_URL/v3" "HERE_CA_FILE=$TLS_CA")

# ------------------------------------------------ HTTPS_PROXY: one tunnel
start_proxy via "${TLS_ENV[@]}" "HTTPS_PROXY=$CONNECT_URL"
LOG_VIA=$PROXY_LOG
start_nginx via "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/3/2/1/png?indice=proxied"
check_status 200 "HTTPS_PROXY: a tile 200"
check_header X-Cache MISS "HTTPS_PROXY: ... fetched from HERE"
assert_eq "$(tunnels)" 1 "HTTPS_PROXY: it went through one CONNECT tunnel"
assert_eq "$(python3 -c 'import json, sys; r = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][0]
print(r["target"], r["auth_ok"])' "$CONNECT_RECORD")" "127.0.0.1:$TLS_PORT True" \
    "HTTPS_PROXY: CONNECT 127.0.0.1:$TLS_PORT with the credentials of the URL"
req GET "$NGINX_URL/here-proxy/base/mc/3/2/2/png?indice=proxied"
check_status 200 "HTTPS_PROXY: a second tile 200"
assert_eq "$(tunnels)" 1 "HTTPS_PROXY: ... over the same tunnel (HTTP/2, kept alive)"
assert_eq "$(upstream_requests)" 2 "HTTPS_PROXY: both reached HERE"
assert_match "$(grep -c '/v3/base/mc/3/2/' "$TLS_ACCESS_LOG")" '^2$' "HTTPS_PROXY: through the TLS front"
assert_eq "$(start_field "$LOG_VIA" proxy)" "\"http://<redacted>@127.0.0.1:$CONNECT_PORT\"" \
    "HTTPS_PROXY: the start event names the proxy, credentials redacted"
assert_eq "$(start_field "$LOG_VIA" proxy_from)" '"HTTPS_PROXY"' "HTTPS_PROXY: ... and the variable"

# ------------------------------------------------ https_proxy (lower case)
start_proxy lower "${TLS_ENV[@]}" "https_proxy=$CONNECT_URL"
LOG_LOWER=$PROXY_LOG
start_nginx lower "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/3/2/3/png?indice=lower"
check_status 200 "https_proxy: a tile 200"
assert_eq "$(tunnels)" 2 "https_proxy: through a tunnel of its own"

# ------------------------------------------------ NO_PROXY: no tunnel
start_proxy direct "${TLS_ENV[@]}" "HTTPS_PROXY=$CONNECT_URL" NO_PROXY=localhost,127.0.0.1
LOG_DIRECT=$PROXY_LOG
start_nginx direct "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/3/2/4/png?indice=direct"
check_status 200 "NO_PROXY=localhost,127.0.0.1: a tile 200"
assert_eq "$(tunnels)" 2 "NO_PROXY naming HERE's host: no tunnel"
assert_eq "$(upstream_requests)" 4 "NO_PROXY: it reached HERE directly"
assert_eq "$(start_field "$LOG_DIRECT" no_proxy)" '"localhost,127.0.0.1"' \
    "NO_PROXY: the start event shows it"

# ------------------------------------------------ wrong credentials: 502
BAD_PW="badpw-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
start_proxy badauth "${TLS_ENV[@]}" "HTTPS_PROXY=http://$PROXY_USER:$BAD_PW@127.0.0.1:$CONNECT_PORT" \
    HERE_RETRIES=1
LOG_BAD=$PROXY_LOG
start_nginx badauth "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/3/2/5/png?indice=badauth"
check_json_error 502 "HTTPS_PROXY with wrong credentials: 502 JSON"
assert_match "$(tail -n 1 "$CONNECT_RECORD")" '"status": 407' "... the proxy answered 407"
assert_eq "$(upstream_requests)" 4 "... and nothing reached HERE"

# ------------------------------------------------ no proxy at all
start_proxy none "${TLS_ENV[@]}"
LOG_NONE=$PROXY_LOG
assert_eq "$(start_field "$LOG_NONE" proxy)" null "no proxy variable: the start event says proxy null"

# ------------------------------------------------ not in HEREPROXY_CONFIG
# libcurl reads the environment only: in the file the proxy would be lost,
# so the file is refused, saying where it goes (and not what it holds).
printf 'HERE_API_KEY=someKey123\nHTTPS_PROXY=%s\n' "$CONNECT_URL" >"$RUN_DIR/proxy.conf"
OUT=$(env "HEREPROXY_CONFIG=$RUN_DIR/proxy.conf" timeout 10 "$HEREPROXY_BIN" --check-config 2>&1 </dev/null)
assert_eq "$?" 1 "HTTPS_PROXY in HEREPROXY_CONFIG: --check-config exits 1"
assert_contains "$OUT" "HTTPS_PROXY is read by libcurl from the environment only" \
    "... saying it belongs in the environment"
assert_not_contains "$OUT" "$PROXY_PW" "... without printing the password"

LOGS=("$LOG_VIA" "$LOG_LOWER" "$LOG_DIRECT" "$LOG_BAD" "$LOG_NONE")
for f in "${LOGS[@]}"; do
    assert_not_contains "$(cat "$f")" "$PROXY_PW" "$(basename "$f"): the proxy password is not in it"
    assert_not_contains "$(cat "$f")" "$BAD_PW" "$(basename "$f"): nor the wrong one"
done
check_no_key_leak "no key in responses or logs" "${LOGS[@]}"
finish
