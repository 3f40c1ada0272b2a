#!/bin/bash
# Command line, configuration, --listen and HEREPROXY_LISTEN (host:port,
# [IPv6]:port, a Unix socket path; what is refused) and SIGTERM.
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

# ------------------------------------------------------------ --listen forms
# Each form the man page gives, from --listen and from HEREPROXY_LISTEN, in
# a working directory of its own: [IPv6]:port is TCP and leaves no file
# named after it; a path with a '/' (relative too) is a Unix socket; a bare
# name, a port without a host and IPv6 without brackets are refused with a
# message saying what to write, before anything is created.
FCGI_GET=$abs_top_srcdir/tests/integration/fcgi_get.py
CWD=$RUN_DIR/cwd
mkdir -p "$CWD/sub"
# start_in_cwd NAME [VAR=value...] [-- ARGS...]: the binary started in $CWD.
start_in_cwd() {
    local name=$1 envs=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    PROXY_LOG=$RUN_DIR/proxy-$name.log
    _proxy_env "${envs[@]}"
    (cd "$CWD" && exec env "${_PENV[@]}" "$HEREPROXY_BIN" "$@") >>"$PROXY_LOG" 2>&1 </dev/null &
    PROXY_PID=$!
    _register "proxy-$name" "$PROXY_PID"
}
# fcgi_wait ADDR PID: until a FastCGI GET /healthz there answers 200.
fcgi_wait() {
    local deadline=$((SECONDS + 10))
    until [ "$(python3 "$FCGI_GET" --timeout 2 "$1" /healthz 2>/dev/null | cut -d' ' -f1)" = 200 ]; do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

V6_PORT=$(free_port)
start_in_cwd v6 -- --listen "[::1]:$V6_PORT"
PID_V6=$PROXY_PID
LOG_V6=$PROXY_LOG
fcgi_wait "[::1]:$V6_PORT" "$PID_V6" || die "--listen [::1]:$V6_PORT did not answer: $(tail -n 3 "$LOG_V6")"
start_nginx v6 "[::1]:$V6_PORT"
req GET "$NGINX_URL/here-proxy/base/mc/2/1/2/png?indice=v6"
check_status 200 "--listen [::1]:PORT behind nginx (server [::1]:PORT) serves a tile"
assert_match "$(ss -Hltn "sport = :$V6_PORT" 2>/dev/null)" '\[::1\]' "--listen [::1]:PORT listens on TCP ::1"
assert_eq "$(ls -A "$CWD" | grep -v '^sub$' | tr '\n' ' ')" "" \
    "--listen [::1]:PORT creates no file in the working directory"

ENV6_PORT=$(free_port)
start_in_cwd env6 "HEREPROXY_LISTEN=[::1]:$ENV6_PORT"
PID_ENV6=$PROXY_PID
LOG_ENV6=$PROXY_LOG
if fcgi_wait "[::1]:$ENV6_PORT" "$PID_ENV6"; then
    ok "HEREPROXY_LISTEN=[::1]:PORT answers FastCGI on ::1"
else
    not_ok "HEREPROXY_LISTEN=[::1]:PORT answers FastCGI on ::1" "$(tail -n 3 "$LOG_ENV6")"
fi
assert_match "$(grep '"event":"start"' "$LOG_ENV6")" "\"listen\":\"\\[::1\\]:$ENV6_PORT\"" \
    "HEREPROXY_LISTEN=[::1]:PORT: the start event names it"

start_in_cwd relunix "HEREPROXY_LISTEN=sub/rel.sock"
PID_REL=$PROXY_PID
LOG_REL=$PROXY_LOG
if fcgi_wait "$CWD/sub/rel.sock" "$PID_REL"; then
    ok "HEREPROXY_LISTEN=sub/rel.sock (a relative path) is a Unix socket in the working directory"
else
    not_ok "HEREPROXY_LISTEN=sub/rel.sock (a relative path) is a Unix socket in the working directory" \
        "$(tail -n 3 "$LOG_REL")"
fi
assert_eq "$(stat -c %F "$CWD/sub/rel.sock" 2>&1)" socket "sub/rel.sock is a socket"

# refused ADDR WHAT: --listen ADDR exits 1 at once with WHAT in its message,
# and so does HEREPROXY_LISTEN=ADDR, at --check-config too; no file made.
refused() {
    local addr=$1 what=$2
    OUT=$(cd "$CWD" && env "HERE_API_KEY=$SERVER_KEY" timeout 10 "$HEREPROXY_BIN" --listen "$addr" 2>&1 </dev/null)
    RC=$?
    assert_eq "$RC" 1 "--listen '$addr' is refused (exit 1)"
    assert_contains "$OUT" "$what" "--listen '$addr': the message says: $what"
    OUT=$(cd "$CWD" && env "HERE_API_KEY=$SERVER_KEY" "HEREPROXY_LISTEN=$addr" timeout 10 \
        "$HEREPROXY_BIN" --check-config 2>&1 </dev/null)
    RC=$?
    assert_eq "$RC" 1 "HEREPROXY_LISTEN='$addr': --check-config exits 1"
    assert_contains "$OUT" "HEREPROXY_LISTEN" "HEREPROXY_LISTEN='$addr': the message names the setting"
    assert_contains "$OUT" "$what" "HEREPROXY_LISTEN='$addr': the message says: $what"
    assert_eq "$(ls -A "$CWD" | grep -v '^sub$' | tr '\n' ' ')" "" "'$addr': no file created"
}
refused hp.sock "Unix socket path (with a /, such as ./hp.sock)"
refused "::1:$V6_PORT" "an IPv6 address goes in brackets"
refused "[::1]" "expected [IPv6]:port"
refused "127.0.0.1:70000" "a port of 1 to 65535"
assert_not_contains "$OUT" "$SERVER_KEY" "refusals do not print the key"

# ------------------------------------------------------------ spawn-fcgi
start_proxy spawned
PID_SPAWNED=$PROXY_PID
LOG_SPAWNED=$PROXY_LOG
start_nginx spawned "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/2/3/3/png"
check_status 200 "under spawn-fcgi: tile 200"

# ------------------------------------------------------------ SIGTERM
for v in TCP UNIX SPAWNED FILE V6 ENV6 REL; do
    eval "pid=\$PID_$v"
    stop_pid "$pid" TERM 10
    assert_eq "$STOP_RC" 0 "SIGTERM: the $v proxy exits 0 (within 10 s)"
done
[ -e "$SOCK" ] && diag "note: $SOCK is left behind after exit"

for f in "$LOG_TCP" "$LOG_UNIX" "$LOG_SPAWNED" "$RUN_DIR/proxy-file.log" "$LOG_V6" "$LOG_ENV6" "$LOG_REL"; do
    check_log_json "$f" "$(basename "$f"): JSON lines with complete access lines" 1
done
check_no_key_leak "no key in responses or logs" "$LOG_TCP" "$LOG_UNIX" "$LOG_SPAWNED" "$RUN_DIR/proxy-file.log" \
    "$LOG_V6" "$LOG_ENV6" "$LOG_REL"
finish
