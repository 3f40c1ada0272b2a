#!/bin/bash
# Command line, configuration, --listen (TCP and Unix socket) and SIGTERM.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

# run_bin [VAR=value...] -- ARGS...: run the binary with a clean settings
# environment; sets OUT (stdout+stderr) and RC.
run_bin() {
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    OUT=$(env "${envs[@]}" timeout 10 "$HEREPROXY_BIN" "$@" 2>&1 </dev/null)
    RC=$?
}

# ------------------------------------------------------------ options
run_bin -- --help
assert_eq "$RC" 0 "--help exits 0"
assert_contains "$OUT" --listen "--help mentions --listen"
run_bin -- --version
assert_eq "$RC" 0 "--version exits 0"
assert_match "$OUT" '[0-9]+\.[0-9]+' "--version prints a version"
run_bin HERE_API_KEY=secretXYZ -- --no-such-option
assert_eq "$RC" 2 "an unknown option is a usage error (exit 2)"

# ------------------------------------------------------------ --check-config
run_bin HERE_API_KEY=secretXYZ -- --check-config
assert_eq "$RC" 0 "--check-config with HERE_API_KEY exits 0"
assert_not_contains "$OUT" secretXYZ "--check-config does not print the key"
assert_contains "$OUT" HERE_BASE_URL "--check-config prints the effective config"
run_bin -- --check-config
assert_eq "$RC" 1 "--check-config without HERE_API_KEY exits 1"
assert_contains "$OUT" HERE_API_KEY "the missing-key message names HERE_API_KEY"
run_bin HERE_API_KEY=secretXYZ CACHE_MAXSIZE=abc -- --check-config
assert_eq "$RC" 1 "CACHE_MAXSIZE=abc exits 1"
assert_contains "$OUT" CACHE_MAXSIZE "the message names CACHE_MAXSIZE"
assert_not_contains "$OUT" secretXYZ "the error output does not print the key"
run_bin HERE_API_KEY=secretXYZ CACHE_MAXSIZE=abc -- </dev/null
assert_eq "$RC" 1 "a bad setting stops startup too (exit 1)"

echo "fileKEY123" >"$RUN_DIR/keyfile"
run_bin "HERE_API_KEY_FILE=$RUN_DIR/keyfile" -- --check-config
assert_eq "$RC" 0 "HERE_API_KEY_FILE is accepted instead of HERE_API_KEY"
assert_not_contains "$OUT" fileKEY123 "--check-config does not print the key from HERE_API_KEY_FILE"

cat >"$RUN_DIR/hereproxy.conf" <<CONF
# a comment
HERE_API_KEY=fileSecret77
CACHE_MAXSIZE=1234
HEREPROXY_ZMAX=9
CONF
run_bin "HEREPROXY_CONFIG=$RUN_DIR/hereproxy.conf" HEREPROXY_ZMAX=7 -- --check-config
assert_eq "$RC" 0 "--check-config with a HEREPROXY_CONFIG file holding the key exits 0"
assert_match "$OUT" 'CACHE_MAXSIZE[^0-9A-Za-z]+1234([^0-9]|$)' "a setting from the file is used (CACHE_MAXSIZE=1234)"
assert_match "$OUT" 'HEREPROXY_ZMAX[^0-9A-Za-z]+7([^0-9]|$)' "the environment wins over the file (HEREPROXY_ZMAX=7)"
assert_not_contains "$OUT" fileSecret77 "--check-config does not print the key from the file"

# ------------------------------------------------------------ file, served
start_upstream
key_exempt "$RUN_DIR/served.conf"
cat >"$RUN_DIR/served.conf" <<CONF
HERE_API_KEY=$SERVER_KEY
HERE_BASE_URL=$UPSTREAM_URL/v3
HEREPROXY_ZMAX=5
CONF
PORT=$(free_port)
# Only HEREPROXY_CONFIG and one override in the environment.
PROXY_LOG=$RUN_DIR/proxy-file.log
env "HEREPROXY_CONFIG=$RUN_DIR/served.conf" HEREPROXY_ZMAX=7 \
    "$HEREPROXY_BIN" --listen "127.0.0.1:$PORT" >>"$PROXY_LOG" 2>&1 </dev/null &
PID_FILE=$!
_register proxy-file "$PID_FILE"
wait_for_port "$PORT" 10 "$PID_FILE" || die "hereproxy --listen 127.0.0.1:$PORT (config file) did not start: $(tail -n 5 "$PROXY_LOG")"
start_nginx file "127.0.0.1:$PORT"
req GET "$NGINX_URL/here-proxy/base/mc/6/1/1/png"
check_status 200 "config file: key and HERE_BASE_URL from the file serve a tile (z=6 < env ZMAX 7)"
req GET "$NGINX_URL/here-proxy/base/mc/8/1/1/png"
check_json_error 400 "config file: z=8 above the environment's HEREPROXY_ZMAX=7 -> 400"
upstream_record_check 'r["query"].get("apiKey") == ["'"$SERVER_KEY"'"]' "config file: the key from the file reached the upstream"

# ------------------------------------------------------------ --listen TCP
start_proxy_listen tcp "127.0.0.1:$(free_port)"
PID_TCP=$PROXY_PID
LOG_TCP=$PROXY_LOG
start_nginx tcp "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/2/2/2/png?indice=tcp"
check_status 200 "--listen 127.0.0.1:PORT behind nginx serves a tile"
check_header X-Index tcp "--listen TCP: X-Index"
req GET "$NGINX_URL/healthz"
check_status 200 "--listen TCP: /healthz 200"

# ------------------------------------------------------------ --listen unix
SOCK=$RUN_DIR/hp.sock
start_proxy_listen unix "$SOCK"
PID_UNIX=$PROXY_PID
LOG_UNIX=$PROXY_LOG
start_nginx unix "unix:$SOCK"
req GET "$NGINX_URL/here-proxy/base/mc/2/3/2/png?indice=unix"
check_status 200 "--listen SOCKET_PATH behind nginx (fastcgi_pass unix:) serves a tile"
check_header X-Index unix "--listen unix: X-Index"

# ------------------------------------------------------------ spawn-fcgi
start_proxy spawned
PID_SPAWNED=$PROXY_PID
LOG_SPAWNED=$PROXY_LOG
start_nginx spawned "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/2/3/3/png"
check_status 200 "under spawn-fcgi: tile 200"

# ------------------------------------------------------------ SIGTERM
for v in TCP UNIX SPAWNED FILE; do
    eval "pid=\$PID_$v"
    stop_pid "$pid" TERM 10
    assert_eq "$STOP_RC" 0 "SIGTERM: the $v proxy exits 0 (within 10 s)"
done
[ -e "$SOCK" ] && diag "note: $SOCK is left behind after exit"

for f in "$LOG_TCP" "$LOG_UNIX" "$LOG_SPAWNED" "$RUN_DIR/proxy-file.log"; do
    check_log_json "$f" "$(basename "$f"): JSON lines with complete access lines" 1
done
check_no_key_leak "no key in responses or logs" "$LOG_TCP" "$LOG_UNIX" "$LOG_SPAWNED" "$RUN_DIR/proxy-file.log"
finish
