# shellcheck shell=bash
# Integration test library for hereproxy.  Source it from a test script:
#
#   . "$(dirname "$0")/lib.sh"
#   require_cmds nginx spawn-fcgi
#   start_upstream; start_proxy main; start_nginx main "$PROXY_ADDR"
#   req GET "$NGINX_URL/here-proxy/base/mc/1/0/0/png"; assert_status 200 "tile"
#   finish
#
# Environment (the Makefile exports these; defaults: the repo holding this file):
#   abs_top_srcdir    source tree (may be read-only: nothing is written there)
#   abs_top_builddir  build tree
#   HEREPROXY_BIN     the binary, default $abs_top_builddir/src/hereproxy.fcgi
#   TEST_TIMEOUT      seconds before the whole test is killed (default 300)
#   KEEP_RUN_DIR=1    keep the run directory even on success
#
# Every test gets a private run directory (RUN_DIR) under ${TMPDIR:-/tmp}; it
# is removed on success and kept (its path printed) on failure.  Everything
# started through this library is killed by pid when the script exits.
# Output: "ok N - name" / "not ok N - name" lines, "# ..." diagnostics, and a
# final count; the script exits 0 when everything passed, 1 otherwise (never
# 77: a missing tool is a failure).

set -u

_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${abs_top_srcdir:=$(cd "$_LIB_DIR/../.." && pwd)}"
: "${abs_top_builddir:=$abs_top_srcdir}"
: "${HEREPROXY_BIN:=$abs_top_builddir/src/hereproxy.fcgi}"
: "${TEST_TIMEOUT:=300}"
export abs_top_srcdir abs_top_builddir HEREPROXY_BIN

# Settings the caller's shell may carry (a real key, a config file, ...) must
# not leak into the processes under test.
unset HERE_API_KEY HERE_API_KEY_FILE HERE_BASE_URL HERE_CA_FILE \
    HERE_CONNECT_TIMEOUT_MS HERE_TIMEOUT_MS HERE_ATTEMPT_TIMEOUT_MS \
    HERE_BUFFER_MAX_BYTES HERE_ALLOW_LOGISTICS \
    HEREPROXY_CONFIG HEREPROXY_THREADS HEREPROXY_LISTEN HEREPROXY_CORS_ORIGINS \
    HEREPROXY_ZMAX HEREPROXY_PUBLIC_URL CACHE_MAXSIZE CACHE_MAXBYTES \
    CACHE_TTL_DEFAULT CACHE_TTL_CAP \
    CACHE_META_TTL MEMCACHED_SERVERS UPSTREAM_MAX_BYTES LOG_LEVEL \
    HERE_RETRIES HERE_RETRY_BASE_MS HERE_RETRY_MAX_MS HERE_MAX_INFLIGHT \
    HERE_QUEUE_TIMEOUT_MS HERE_MAX_CONNECTIONS HERE_BREAKER_THRESHOLD \
    HERE_BREAKER_COOLDOWN_MS CACHE_STALE_TTL CACHE_NEGATIVE_TTL \
    CACHE_COALESCE_WAIT_MS RATE_LIMIT_INDEX RATE_LIMIT_INDEX_OVERRIDES \
    RATE_LIMIT_IP RATE_TRUSTED_PROXIES RATE_LIMIT_SHARED QUOTA_UPSTREAM_INDEX \
    QUOTA_UPSTREAM_INDEX_OVERRIDES HERE_DAILY_BUDGET HERE_DENY_THRESHOLD \
    HERE_CACHE_ONLY_S \
    METRICS_MAX_INDICES METRICS_ALLOW \
    HEREPROXY_WRITE_TIMEOUT_MS HEREPROXY_CLIENT_TOKENS \
    HEREPROXY_CLIENT_TOKENS_FILE HEREPROXY_INDICES HEREPROXY_ADMIN_TOKEN \
    HEREPROXY_ADMIN_TOKEN_FILE NGINX_LOG_FILE NGINX_HITS_FILE \
    CACHE_SECRET CACHE_SECRET_FILE HERE_CREDENTIALS_FILE
unset HERE_STYLES
# Never send loopback test traffic through a proxy.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy='*' NO_PROXY='*'
export LC_ALL=C
# nginx, apache2 and memcached live in /usr/sbin, which Debian leaves out of
# an ordinary user's PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin ;; esac
case ":$PATH:" in *:/sbin:*) ;; *) PATH=$PATH:/sbin ;; esac
export PATH

TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hereproxy-$TEST_NAME.XXXXXX") || {
    echo "not ok - cannot create a run directory under ${TMPDIR:-/tmp}"
    exit 1
}
# nginx workers and apache children run as another user when we are root:
# they must be able to traverse the run directory.
chmod 755 "$RUN_DIR"

# The server-side HERE key used by the upstream and the proxies.  Distinctive
# so that a leak is easy to grep for.
SERVER_KEY="srvKEY-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')-zz"

_T_N=0
_T_FAIL=0
_PIDS=()        # everything we started, killed in reverse order on exit
_PID_NAMES=()
_FINISHED=0

# ------------------------------------------------------------------ reporting
ok() {
    _T_N=$((_T_N + 1))
    echo "ok $_T_N - $*"
}

# not_ok NAME [DETAIL...]
not_ok() {
    _T_N=$((_T_N + 1))
    _T_FAIL=$((_T_FAIL + 1))
    echo "not ok $_T_N - $1"
    shift
    local line
    for line in "$@"; do
        printf '%s\n' "$line" | sed 's/^/#   /'
    done
}

diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

# die MESSAGE: a setup failure; the test cannot go on.
die() {
    not_ok "$*"
    exit 1
}

finish() {
    _FINISHED=1
    echo "# $TEST_NAME: $((_T_N - _T_FAIL)) passed, $_T_FAIL failed"
    if [ "$_T_N" -eq 0 ]; then
        echo "# no checks ran"
        exit 1
    fi
    [ "$_T_FAIL" -eq 0 ] && exit 0
    exit 1
}

_cleanup() {
    local rc=$?
    trap - EXIT TERM INT
    if [ "$_FINISHED" -eq 0 ] && [ "$rc" -eq 0 ]; then
        rc=1
    fi
    [ "$rc" -ne 0 ] && rc=1   # never 77 (skip) or 99
    local i pid
    for ((i = ${#_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${_PIDS[$i]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = ${#_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${_PIDS[$i]}
        _wait_gone "$pid" 5 || {
            echo "# ${_PID_NAMES[$i]} (pid $pid) ignored SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        }
    done
    # Every line every proxy of this run wrote must be JSON, whatever the
    # test checked: run after the proxies stopped, so their stop events
    # are in too.
    if [ "$rc" -eq 0 ] && ! _check_proxy_logs; then
        rc=1
    fi
    # Every test: the key is in no byte the proxy, the web servers or the
    # clients wrote (logs, responses, bodies), now that all have stopped.
    if [ "$_FINISHED" -eq 1 ] && ! _key_leak_scan; then
        rc=1
    fi
    if [ "$rc" -ne 0 ]; then
        local f
        for f in "$RUN_DIR"/*.log; do
            [ -s "$f" ] || continue
            echo "# --- last lines of $f"
            tail -n 15 "$f" | cut -c1-400 | sed 's/^/#   /'
        done
        echo "# run directory kept: $RUN_DIR"
    elif [ "${KEEP_RUN_DIR:-0}" = 1 ]; then
        echo "# run directory kept: $RUN_DIR"
    else
        rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}
# _check_proxy_logs: every line of every $RUN_DIR/proxy-*.log is a JSON
# object with ts and level; access lines (event "access") carry request_id,
# method, path, indice, cache_status, status, latency_ms, bytes and
# upstream_attempts, and upstream_status and upstream_http (maybe null).
# Prints what is wrong; returns 1 then.
_check_proxy_logs() {
    local f out
    for f in "$RUN_DIR"/proxy-*.log; do
        [ -f "$f" ] || continue
        if ! out=$(python3 - "$f" <<'PYEOF'
import json, sys
need = ["request_id", "method", "path", "indice", "cache_status", "status",
        "latency_ms", "bytes", "upstream_attempts", "upstream_status",
        "upstream_http"]
bad = []
with open(sys.argv[1], encoding="utf-8", errors="replace") as fp:
    for n, line in enumerate(fp, 1):
        try:
            o = json.loads(line)
        except ValueError as e:
            bad.append("line %d is not JSON (%s): %s" % (n, e, line[:200].rstrip()))
            continue
        if not isinstance(o, dict) or not isinstance(o.get("ts"), str) or \
                not isinstance(o.get("level"), str):
            bad.append("line %d is not an object with ts and level: %s" % (n, line[:200].rstrip()))
        elif o.get("event") == "access":
            missing = [k for k in need if k not in o]
            if missing:
                bad.append("access line %d lacks %s" % (n, ",".join(missing)))
print("\n".join(bad[:5]))
sys.exit(1 if bad else 0)
PYEOF
        ); then
            echo "not ok - every line of $(basename "$f") is a JSON log line"
            printf '%s\n' "$out" | sed 's/^/#   /'
            return 1
        fi
    done
    return 0
}

# Files that hold $SERVER_KEY on purpose (the upstream's own record, configs
# and key files a test wrote): key_exempt FILE...
_KEY_EXEMPT=()
key_exempt() { _KEY_EXEMPT+=("$@"); }

# _key_leak_scan: 0 when no file of RUN_DIR but the exempt ones holds
# $SERVER_KEY; else prints a "not ok" line naming them.
_key_leak_scan() {
    local f e hits=() skip
    while IFS= read -r -d '' f; do
        skip=0
        case $f in
        # the HERE side: the upstream and its TLS front receive the key
        "$RUN_DIR/upstream-requests.jsonl" | "$RUN_DIR/upstream.log" | \
            "$RUN_DIR/nginx-tls/"*) skip=1 ;;
        esac
        for e in "${_KEY_EXEMPT[@]}"; do
            [ "$f" = "$e" ] && skip=1
        done
        [ "$skip" -eq 0 ] && grep -qaF -- "$SERVER_KEY" "$f" && hits+=("$f")
    done < <(find "$RUN_DIR" -type f -print0 2>/dev/null)
    if [ ${#hits[@]} -gt 0 ]; then
        echo "not ok - teardown: the HERE key ($SERVER_KEY) appears in: ${hits[*]}"
        return 1
    fi
    echo "# teardown: the HERE key appears in none of $(find "$RUN_DIR" -type f | wc -l) files written"
    return 0
}
trap _cleanup EXIT
trap 'echo "# interrupted"; exit 1' TERM INT HUP

# Watchdog: the whole test is bounded in time.
(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$TEST_TIMEOUT" &
    sp=$!
    wait "$sp"
    echo "not ok - $TEST_NAME timed out after ${TEST_TIMEOUT}s"
    kill -TERM $$ 2>/dev/null
    # bash runs the trap only once its foreground command returns: end that
    # command (a direct child of the test shell, by pid) if it hangs on.
    sleep 2
    for p in $(ps -o pid= --ppid $$ 2>/dev/null); do
        [ "$p" != "$BASHPID" ] && kill -TERM "$p" 2>/dev/null
    done
    exit 0
) &
_PIDS+=($!)
_PID_NAMES+=(watchdog)

# --------------------------------------------------------------- processes
# require_cmds CMD...: every tool must exist (a missing one is a failure).
require_cmds() {
    local c missing=()
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        die "missing required tools: ${missing[*]} (Debian: apt-get install ${missing[*]})"
    fi
}

require_bin() {
    [ -x "$HEREPROXY_BIN" ] || die "HEREPROXY_BIN=$HEREPROXY_BIN is not an executable (build it first: make)"
}

# _wait_gone PID SECONDS: 0 once the process is gone.
_wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        # reap it if it is our child
        if ! ps -o stat= -p "$pid" 2>/dev/null | grep -qv Z; then
            wait "$pid" 2>/dev/null
            return 0
        fi
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
    wait "$pid" 2>/dev/null
    return 0
}

_register() { # NAME PID
    _PIDS+=("$2")
    _PID_NAMES+=("$1")
}

_unregister() { # PID
    local i
    for i in "${!_PIDS[@]}"; do
        if [ "${_PIDS[$i]}" = "$1" ]; then
            unset '_PIDS[i]' '_PID_NAMES[i]'
        fi
    done
    _PIDS=("${_PIDS[@]}")
    _PID_NAMES=("${_PID_NAMES[@]}")
}

# stop_pid PID [SIGNAL] [SECONDS]: signal it and wait until it is gone.
# Sets STOP_RC to its exit status when it was our child.
stop_pid() {
    local pid=$1 sig=${2:-TERM} secs=${3:-10} deadline
    STOP_RC=
    kill -"$sig" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + secs))
    while kill -0 "$pid" 2>/dev/null; do
        if ps -o stat= -p "$pid" 2>/dev/null | grep -q Z; then
            break
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill -KILL "$pid" 2>/dev/null || true
            STOP_RC=killed
            break
        fi
        sleep 0.1
    done
    if [ -z "$STOP_RC" ]; then
        wait "$pid" 2>/dev/null
        STOP_RC=$?
    else
        wait "$pid" 2>/dev/null
    fi
    _unregister "$pid"
}

# free_port: print a currently unused loopback TCP port.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_open PORT: 0 when something accepts on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# wait_for_port PORT [SECONDS] [PID]: until the port accepts; fails early when
# PID has died.
wait_for_port() {
    local port=$1 deadline=$((SECONDS + ${2:-10})) pid=${3:-}
    while ! port_open "$port"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
    return 0
}

# wait_for_socket PATH [SECONDS] [PID]: until a Unix socket accepts.
wait_for_socket() {
    local path=$1 deadline=$((SECONDS + ${2:-10})) pid=${3:-}
    while ! python3 -c 'import socket,sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(1)
s.connect(sys.argv[1])' "$path" 2>/dev/null; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
    return 0
}

# wait_for_http URL [CODE] [SECONDS]: until URL answers with CODE (default
# 200); 0 when it did.
wait_for_http() {
    wait_status "${2:-200}" "${3:-10}" "$1"
    [ "$HTTP_STATUS" = "${2:-200}" ]
}

# ------------------------------------------------------------------ memcached
# start_memcached [PORT]: sets MEMCACHED_PORT, MEMCACHED_PID.
# start_memcached [PORT [extra memcached args...]]
start_memcached() {
    require_cmds memcached
    MEMCACHED_PORT=${1:-$(free_port)}
    shift $(($# > 0 ? 1 : 0))
    local user=()
    [ "$(id -u)" -eq 0 ] && user=(-u nobody)
    memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -c 256 "${user[@]}" "$@" \
        >>"$RUN_DIR/memcached.log" 2>&1 &
    MEMCACHED_PID=$!
    _register memcached "$MEMCACHED_PID"
    wait_for_port "$MEMCACHED_PORT" 10 "$MEMCACHED_PID" ||
        die "memcached did not start on 127.0.0.1:$MEMCACHED_PORT (see $RUN_DIR/memcached.log)"
    diag "memcached on 127.0.0.1:$MEMCACHED_PORT (pid $MEMCACHED_PID)"
}

# start_memcached_socket: memcached on a Unix socket (memcached -s) in the
# run directory.  Sets MEMCACHED_SOCKET, MEMCACHED_SOCKET_PID.
start_memcached_socket() {
    require_cmds memcached
    local dir="$RUN_DIR/memcached-socket" user=()
    mkdir -p "$dir"
    # As root memcached drops to nobody before it binds the socket.
    if [ "$(id -u)" -eq 0 ]; then
        user=(-u nobody)
        chown nobody "$dir"
    fi
    MEMCACHED_SOCKET="$dir/memcached.sock"
    memcached -s "$MEMCACHED_SOCKET" -a 0666 -m 64 -c 256 "${user[@]}" \
        >>"$RUN_DIR/memcached-socket.log" 2>&1 &
    MEMCACHED_SOCKET_PID=$!
    _register memcached-socket "$MEMCACHED_SOCKET_PID"
    wait_for_socket "$MEMCACHED_SOCKET" 10 "$MEMCACHED_SOCKET_PID" ||
        die "memcached did not start on $MEMCACHED_SOCKET (see $RUN_DIR/memcached-socket.log)"
    diag "memcached on $MEMCACHED_SOCKET (pid $MEMCACHED_SOCKET_PID)"
}

# memcached_stat PORT|SOCKET_PATH NAME: one field of memcached's "stats"
# (-1 when it has none).
memcached_stat() {
    python3 - "$1" "$2" <<'PYEOF'
import socket, sys
where = sys.argv[1]
if where.startswith("/"):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(where)
else:
    s = socket.create_connection(("127.0.0.1", int(where)), timeout=5)
s.sendall(b"stats\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
for line in buf.decode().splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] == sys.argv[2]:
        print(parts[2])
        break
else:
    print(-1)
PYEOF
}

# mc_raw PORT get KEY FILE | set KEY FILE [TTL] | keys PATTERN: memcached as
# anyone on its network sees it (the text protocol, no secret). get writes
# the value to FILE (exit 1 when absent); keys prints the keys matching the
# Python regular expression PATTERN (lru_crawler metadump).
mc_raw() {
    python3 - "$@" <<'PYEOF'
import re, socket, sys, urllib.parse
port, op = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
def until(end):
    buf = b""
    while not buf.endswith(end):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return buf
if op == "get":
    s.sendall(b"get " + sys.argv[3].encode() + b"\r\n")
    buf = until(b"END\r\n")
    if not buf.startswith(b"VALUE "):
        sys.exit(1)
    head, rest = buf.split(b"\r\n", 1)
    n = int(head.split()[3])
    open(sys.argv[4], "wb").write(rest[:n])
elif op == "set":
    data = open(sys.argv[4], "rb").read()
    ttl = sys.argv[5] if len(sys.argv) > 5 else "0"
    s.sendall(b"set %s 0 %s %d\r\n" % (sys.argv[3].encode(), ttl.encode(),
              len(data)) + data + b"\r\n")
    reply = until(b"\r\n")
    if reply != b"STORED\r\n":
        sys.exit("set: " + reply.decode(errors="replace"))
elif op == "keys":
    s.sendall(b"lru_crawler metadump all\r\n")
    for line in until(b"END\r\n").decode().splitlines():
        if line.startswith("key="):
            k = urllib.parse.unquote(line.split()[0][4:])
            if re.search(sys.argv[3], k):
                print(k)
PYEOF
}

# prom_value SERIES [FILE]: the value of one Prometheus series (its name and
# labels exactly as exposed) in the last body or FILE; empty when absent.
prom_value() {
    awk -v want="$1" '$1 == want { print $2; exit }' "${2:-$HTTP_BODY_FILE}"
}

stop_memcached() {
    [ -n "${MEMCACHED_PID:-}" ] || return 0
    stop_pid "$MEMCACHED_PID" TERM 10
    MEMCACHED_PID=
}

# ------------------------------------------------------------------- upstream
# start_upstream [extra here_upstream.py args]: the local HERE imitation.
# Sets UPSTREAM_PORT, UPSTREAM_URL (no /v3), UPSTREAM_PID, UPSTREAM_RECORD.
# It expects apiKey=$SERVER_KEY.  UPSTREAM_SCRIPT (optional) runs another
# script that takes here_upstream.py's options (contrib/bench/upstream.py).
start_upstream() {
    require_cmds python3
    local script=${UPSTREAM_SCRIPT:-$abs_top_srcdir/tests/upstream/here_upstream.py}
    [ -f "$script" ] || die "missing $script"
    UPSTREAM_RECORD=$RUN_DIR/upstream-requests.jsonl
    rm -f "$RUN_DIR/upstream.port"
    python3 "$script" --host 127.0.0.1 --port 0 --port-file "$RUN_DIR/upstream.port" \
        --api-key "$SERVER_KEY" --record "$UPSTREAM_RECORD" --quiet "$@" \
        >>"$RUN_DIR/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    _register upstream "$UPSTREAM_PID"
    local deadline=$((SECONDS + 15))
    while [ ! -s "$RUN_DIR/upstream.port" ]; do
        kill -0 "$UPSTREAM_PID" 2>/dev/null || die "here_upstream.py exited (see $RUN_DIR/upstream.log)"
        [ "$SECONDS" -ge "$deadline" ] && die "here_upstream.py wrote no port file within 15 s"
        sleep 0.1
    done
    UPSTREAM_PORT=$(tr -dc 0-9 <"$RUN_DIR/upstream.port")
    UPSTREAM_URL=http://127.0.0.1:$UPSTREAM_PORT
    wait_for_http "$UPSTREAM_URL/healthz" 200 10 || die "upstream $UPSTREAM_URL/healthz does not answer 200"
    diag "upstream on $UPSTREAM_URL (pid $UPSTREAM_PID)"
}

# write_credentials FILE KEYID SECRET: a credentials.properties as the HERE
# platform portal hands it out, its token endpoint the local upstream's
# (start_upstream first, with --credentials-file FILE for the upstream to
# accept it). The file holds the secret: exempt from the leak scan.
write_credentials() {
    printf '%s\n' "here.user.id = HERE-test-user" "here.client.id = test-app" \
        "here.access.key.id = $2" "here.access.key.secret = $3" \
        "here.token.endpoint.url = $UPSTREAM_URL/oauth2/token" >"$1.tmp"
    mv "$1.tmp" "$1"
    key_exempt "$1"
}

# upstream_tokens: every bearer token the upstream's token endpoint issued,
# one a line (for leak scans: none may appear in what the proxy wrote).
upstream_tokens() {
    curl -sS --max-time 5 "$UPSTREAM_URL/__control/tokens" |
        python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["tokens"]))'
}

# check_no_token_leak NAME: no token the upstream issued appears in a file
# of RUN_DIR but the upstream's own record and log (and key_exempt files).
check_no_token_leak() {
    local t hits=() f e tokens skip
    tokens=$(upstream_tokens)
    [ -n "$tokens" ] || { not_ok "$1" "the upstream issued no token"; return 1; }
    while IFS= read -r -d '' f; do
        case $f in "$RUN_DIR/upstream-requests.jsonl" | "$RUN_DIR/upstream.log") continue ;; esac
        skip=0
        for e in "${_KEY_EXEMPT[@]}"; do [ "$f" = "$e" ] && skip=1; done
        [ "$skip" -eq 1 ] && continue
        while IFS= read -r t; do
            [ -n "$t" ] && grep -qaF -- "$t" "$f" && hits+=("$f") && break
        done <<<"$tokens"
    done < <(find "$RUN_DIR" -type f -print0)
    if [ ${#hits[@]} -eq 0 ]; then
        ok "$1 ($(wc -l <<<"$tokens") tokens, $(find "$RUN_DIR" -type f | wc -l) files)"
    else
        not_ok "$1" "a HERE token appears in: ${hits[*]}"
        return 1
    fi
}

# upstream_control ACTION [QUERY]: e.g. upstream_control fail 'status=500&times=2'
upstream_control() {
    curl -sS --max-time 5 "$UPSTREAM_URL/__control/$1${2:+?$2}" >/dev/null
}

# upstream_requests: how many /v3 requests the upstream has served.
upstream_requests() {
    curl -sS --max-time 5 "$UPSTREAM_URL/__control/stats" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'
}

# upstream_stat PYEXPR: PYEXPR evaluated on the upstream's stats document s
# (requests, by_path, inflight, max_inflight; counters since the last reset).
upstream_stat() {
    curl -sS --max-time 5 "$UPSTREAM_URL/__control/stats" |
        python3 -c 'import json,sys
s = json.load(sys.stdin)
print(eval(sys.argv[1]))' "$1"
}

# upstream_path_requests PATH: requests for exactly PATH (/v3/...) since the
# last reset: the attempts the proxy made for one tile.
upstream_path_requests() {
    upstream_stat "s['by_path'].get('$1', 0)"
}

# ------------------------------------------------------------------------ TLS
# make_ca: a private CA and a server certificate for 127.0.0.1/localhost in
# $RUN_DIR/tls.  Sets TLS_CA (the CA certificate), TLS_CERT, TLS_KEY.
make_ca() {
    require_cmds openssl
    local d=$RUN_DIR/tls
    mkdir -p "$d"
    TLS_CA=$d/ca.pem TLS_CERT=$d/server.pem TLS_KEY=$d/server.key
    [ -s "$TLS_CERT" ] && return 0
    cat >"$d/server.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
EOF
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$d/ca.key" -out "$TLS_CA" -days 2 -subj "/CN=hereproxy test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$TLS_KEY" -out "$d/server.csr" -subj "/CN=127.0.0.1" &&
            openssl x509 -req -in "$d/server.csr" -CA "$TLS_CA" -CAkey "$d/ca.key" \
                -CAcreateserial -out "$TLS_CERT" -days 2 -extfile "$d/server.ext"
    } >>"$RUN_DIR/openssl.log" 2>&1 || die "openssl could not make the test CA (see $RUN_DIR/openssl.log)"
}

# _nginx_main_conf DIR: the top of a standalone nginx.conf whose paths all
# live in DIR.  The http block is left open.  NGINX_WORKERS (default 1):
# its worker_processes.
_nginx_main_conf() {
    local d=$1 userline=
    [ "$(id -u)" -eq 0 ] && userline="user root root;"   # workers may reach root's 0700 dirs/sockets
    cat <<EOF
# generated by tests/integration/lib.sh
daemon off;
master_process on;
worker_processes ${NGINX_WORKERS:-1};
$userline
pid $d/nginx.pid;
error_log $d/error.log info;
# A client connection and its FastCGI one both count: wrk -c 256 needs more than 256.
events { worker_connections 1024; }
http {
    access_log $d/access.log;
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    default_type application/octet-stream;
EOF
}

# _run_nginx NAME DIR PORT: start nginx with DIR/nginx.conf; wait for PORT.
_run_nginx() {
    local name=$1 d=$2 port=$3 pid
    nginx -t -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/nginx-t.out" 2>&1 ||
        die "nginx -t rejects $d/nginx.conf: $(tr '\n' ' ' <"$d/nginx-t.out")"
    nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >>"$RUN_DIR/$name.log" 2>&1 &
    pid=$!
    _register "$name" "$pid"
    wait_for_port "$port" 10 "$pid" ||
        die "$name (nginx) did not listen on 127.0.0.1:$port; error log: $(tail -n 5 "$d/error.log" 2>/dev/null | tr '\n' ' ')"
    NGINX_PID=$pid
}

# start_tls_upstream: NGINX with TLS and HTTP/2 on a free port in front of the
# plain upstream (start_upstream first).  Sets TLS_PORT, TLS_URL, TLS_PID,
# TLS_ACCESS_LOG (log_format: ... "$request" $server_protocol $status
# $body_bytes_sent ssl=$ssl_protocol conn=$connection).
# It also listens on 127.0.0.2:TLS_PORT, an address the certificate does not
# name.
start_tls_upstream() {
    require_cmds nginx openssl
    [ -n "${UPSTREAM_PORT:-}" ] || die "start_tls_upstream needs start_upstream first"
    make_ca
    local d=$RUN_DIR/nginx-tls
    mkdir -p "$d/tmp"
    TLS_PORT=$(free_port)
    TLS_ACCESS_LOG=$d/tls-access.log
    {
        _nginx_main_conf "$d"
        cat <<EOF
    log_format proto '\$remote_addr "\$request" \$server_protocol \$status \$body_bytes_sent ssl=\$ssl_protocol conn=\$connection';
    upstream here_plain {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:$TLS_PORT ssl http2;
        listen 127.0.0.2:$TLS_PORT ssl http2;   # loopback too; not named in the certificate
        server_name localhost;
        ssl_certificate $TLS_CERT;
        ssl_certificate_key $TLS_KEY;
        ssl_protocols TLSv1.2 TLSv1.3;
        access_log $TLS_ACCESS_LOG proto;
        location / {
            proxy_pass http://here_plain;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_read_timeout 30s;
        }
    }
}
EOF
    } >"$d/nginx.conf"
    _run_nginx nginx-tls "$d" "$TLS_PORT"
    TLS_PID=$NGINX_PID
    TLS_URL=https://127.0.0.1:$TLS_PORT
    diag "TLS upstream on $TLS_URL (pid $TLS_PID)"
}

# ---------------------------------------------------------------------- proxy
# start_proxy NAME [VAR=value...]: hereproxy under spawn-fcgi on a free port.
# Defaults (the caller's VAR=value win): HERE_API_KEY=$SERVER_KEY and, when an
# upstream runs, HERE_BASE_URL=$UPSTREAM_URL/v3.  stderr goes to
# $RUN_DIR/proxy-NAME.log.  Sets PROXY_PORT, PROXY_ADDR, PROXY_PID, PROXY_LOG.
start_proxy() {
    require_cmds spawn-fcgi
    require_bin
    local name=$1
    shift
    PROXY_PORT=$(free_port)
    PROXY_ADDR=127.0.0.1:$PROXY_PORT
    PROXY_LOG=$RUN_DIR/proxy-$name.log
    _proxy_env "$@"
    env "${_PENV[@]}" spawn-fcgi -a 127.0.0.1 -p "$PROXY_PORT" -n -- "$HEREPROXY_BIN" \
        >>"$PROXY_LOG" 2>&1 </dev/null &
    PROXY_PID=$!
    _register "proxy-$name" "$PROXY_PID"
    wait_for_port "$PROXY_PORT" 10 "$PROXY_PID" ||
        die "proxy $name did not listen on $PROXY_ADDR; log: $(tail -n 5 "$PROXY_LOG" | tr '\n' ' ')"
    _check_alive "$name"
    diag "proxy $name on $PROXY_ADDR (pid $PROXY_PID, log $PROXY_LOG)"
}

# spawn-fcgi binds the socket before exec: a proxy that rejects its
# configuration exits only afterwards.  Give it a moment.
_check_alive() {
    sleep 0.5
    kill -0 "$PROXY_PID" 2>/dev/null ||
        die "proxy $1 exited at startup; log: $(tail -n 5 "$PROXY_LOG" | tr '\n' ' ')"
}

# start_proxy_listen NAME ADDR [VAR=value...]: hereproxy --listen ADDR (no
# spawn-fcgi).  ADDR is HOST:PORT or a socket path.  Sets the same variables.
start_proxy_listen() {
    require_bin
    local name=$1 addr=$2
    shift 2
    PROXY_LOG=$RUN_DIR/proxy-$name.log
    PROXY_ADDR=$addr
    _proxy_env "$@"
    env "${_PENV[@]}" "$HEREPROXY_BIN" --listen "$addr" >>"$PROXY_LOG" 2>&1 </dev/null &
    PROXY_PID=$!
    _register "proxy-$name" "$PROXY_PID"
    case $addr in
    /*)
        PROXY_PORT=
        wait_for_socket "$addr" 10 "$PROXY_PID" ||
            die "proxy $name did not listen on $addr; log: $(tail -n 5 "$PROXY_LOG" | tr '\n' ' ')"
        ;;
    *)
        PROXY_PORT=${addr##*:}
        wait_for_port "$PROXY_PORT" 10 "$PROXY_PID" ||
            die "proxy $name did not listen on $addr; log: $(tail -n 5 "$PROXY_LOG" | tr '\n' ' ')"
        ;;
    esac
    _check_alive "$name"
    diag "proxy $name on $addr (pid $PROXY_PID, log $PROXY_LOG)"
}

# Tests count access lines right after a response: each is written at once
# (LOG_FLUSH_MS=0) unless the test passes LOG_FLUSH_MS itself (the last
# assignment wins); test_log_buffer checks the batched default.
_proxy_env() {
    _PENV=("HERE_API_KEY=$SERVER_KEY" "LOG_FLUSH_MS=0")
    [ -n "${UPSTREAM_URL:-}" ] && _PENV+=("HERE_BASE_URL=$UPSTREAM_URL/v3")
    _PENV+=("$@")
}

# ---------------------------------------------------------------------- nginx
# NGINX_EXTRA_LOCATIONS (optional): lines added to the server block.
# NGINX_PORT_NEXT (optional): the port to listen on instead of a free one
# (taken once), for a proxy that must know its public URL before NGINX runs.
# start_nginx NAME FASTCGI_ADDR: a standalone NGINX on a free port whose
# server block is the shipped conf/nginx/hereproxy.conf with its addresses
# replaced (FASTCGI_ADDR: HOST:PORT or unix:/path).  Sets NGINX_PORT,
# NGINX_URL, NGINX_PID, NGINX_DIR.
start_nginx() {
    require_cmds nginx
    local name=$1 addr=$2
    local d=$RUN_DIR/nginx-$name src=$abs_top_srcdir/conf/nginx/hereproxy.conf
    [ -f "$src" ] || die "missing $src"
    mkdir -p "$d/tmp"
    cp /etc/nginx/fastcgi_params "$d/fastcgi_params" 2>/dev/null ||
        die "no /etc/nginx/fastcgi_params (is the nginx package installed?)"
    NGINX_PORT=${NGINX_PORT_NEXT:-$(free_port)}
    NGINX_PORT_NEXT=
    {
        _nginx_main_conf "$d"
        sed -e "s|127\.0\.0\.1:9000|$addr|g" \
            -e "s|listen 127\.0\.0\.1:8080|listen 127.0.0.1:$NGINX_PORT|" "$src" |
            sed 's/^/    /' |
            if [ -n "${NGINX_EXTRA_LOCATIONS:-}" ]; then
                # extra server-level lines (e.g. the demo page's locations)
                awk -v extra="$NGINX_EXTRA_LOCATIONS" \
                    '{ print } /^ *listen 127\.0\.0\.1:/ && !done { print extra; done = 1 }'
            else
                cat
            fi
        echo "}"
    } >"$d/nginx.conf"
    grep -q "listen 127.0.0.1:$NGINX_PORT" "$d/nginx.conf" ||
        die "conf/nginx/hereproxy.conf has no 'listen 127.0.0.1:8080' to rewrite"
    _run_nginx "nginx-$name" "$d" "$NGINX_PORT"
    NGINX_URL=http://127.0.0.1:$NGINX_PORT
    NGINX_DIR=$d
    diag "nginx $name on $NGINX_URL -> $addr (pid $NGINX_PID)"
}

# start_nginx_cache NAME FASTCGI_ADDR [SED_ARGS...]: a standalone NGINX whose
# http block is the shipped conf/nginx/hereproxy-cache.conf (NGINX's cache
# layer), its addresses, cache directory and access log moved into the run
# directory (the log: $NGINX_CACHE_LOG, default $NGINX_DIR/hereproxy-cache.log);
# SED_ARGS edit the conf further.  Sets NGINX_PORT, NGINX_URL, NGINX_PID,
# NGINX_DIR.
start_nginx_cache() {
    require_cmds nginx
    local name=$1 addr=$2 d=$RUN_DIR/$1 log
    local src=$abs_top_srcdir/conf/nginx/hereproxy-cache.conf
    shift 2
    [ -f "$src" ] || die "missing $src"
    log=${NGINX_CACHE_LOG:-$d/hereproxy-cache.log}
    mkdir -p "$d/tmp" "$d/cache"
    cp /etc/nginx/fastcgi_params "$d/fastcgi_params" ||
        die "no /etc/nginx/fastcgi_params (is the nginx package installed?)"
    NGINX_PORT=${NGINX_PORT_NEXT:-$(free_port)}
    NGINX_PORT_NEXT=
    {
        _nginx_main_conf "$d"
        sed -e "s|127\.0\.0\.1:9000|$addr|g" \
            -e "s|listen 127\.0\.0\.1:8080|listen 127.0.0.1:$NGINX_PORT|" \
            -e "s|/var/cache/nginx/hereproxy|$d/cache|" \
            -e "s|/var/log/nginx/hereproxy-cache.log|$log|" "$@" "$src" |
            sed 's/^/    /'
        echo "}"
    } >"$d/nginx.conf"
    grep -q "listen 127.0.0.1:$NGINX_PORT" "$d/nginx.conf" ||
        die "conf/nginx/hereproxy-cache.conf has no 'listen 127.0.0.1:8080' to rewrite"
    _run_nginx "$name" "$d" "$NGINX_PORT"
    NGINX_URL=http://127.0.0.1:$NGINX_PORT
    NGINX_DIR=$d
    diag "nginx cache layer $name on $NGINX_URL -> $addr (pid $NGINX_PID)"
}

# --------------------------------------------------------------------- apache
# start_apache NAME FASTCGI_HOSTPORT: a standalone Apache 2.4 (mpm_event,
# mod_proxy_fcgi) on a free port including the shipped conf/apache/hereproxy.conf
# with 127.0.0.1:9000 replaced.  APACHE_EXTRA_CONF (optional): lines placed
# before it.  Sets APACHE_PORT, APACHE_URL, APACHE_PID.
start_apache() {
    local bin
    bin=$(command -v apache2 || echo /usr/sbin/apache2)
    [ -x "$bin" ] || die "missing apache2 (apt-get install apache2)"
    local name=$1 addr=$2
    local d=$RUN_DIR/apache-$name src=$abs_top_srcdir/conf/apache/hereproxy.conf
    local mods=/usr/lib/apache2/modules m
    [ -f "$src" ] || die "missing $src"
    # Debian builds some modules in (apache2 -l); load the others from $mods.
    local builtin loads=
    builtin=$("$bin" -l 2>/dev/null)
    for m in mpm_event authz_core authz_host unixd proxy proxy_fcgi log_config mime; do
        case $builtin in *"mod_$m.c"*) continue ;; esac
        [ -f "$mods/mod_$m.so" ] || die "missing $mods/mod_$m.so (apt-get install apache2)"
        loads+="LoadModule ${m}_module $mods/mod_$m.so"$'\n'
    done
    mkdir -p "$d/run" "$d/lock" "$d/htdocs"
    : >"$d/mime.types"
    APACHE_PORT=$(free_port)
    sed "s|127\.0\.0\.1:9000|$addr|g" "$src" >"$d/hereproxy.conf"
    local userconf=
    [ "$(id -u)" -eq 0 ] && userconf=$'User www-data\nGroup www-data'
    cat >"$d/apache2.conf" <<EOF
# generated by tests/integration/lib.sh
ServerRoot "$d"
$loads$userconf
ServerName 127.0.0.1
Listen 127.0.0.1:$APACHE_PORT
PidFile "$d/run/apache2.pid"
DefaultRuntimeDir "$d/run"
Mutex default
ErrorLog "$d/error.log"
LogLevel warn proxy:info proxy_fcgi:info
LogFormat "%h \"%r\" %>s %b %D" common
CustomLog "$d/access.log" common
DocumentRoot "$d/htdocs"
TypesConfig "$d/mime.types"
StartServers 1
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
Timeout 60
${APACHE_EXTRA_CONF:-}
Include "$d/hereproxy.conf"
EOF
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C \
        APACHE_RUN_USER=www-data APACHE_RUN_GROUP=www-data \
        APACHE_PID_FILE="$d/run/apache2.pid" APACHE_RUN_DIR="$d/run" \
        APACHE_LOCK_DIR="$d/lock" APACHE_LOG_DIR="$d" \
        "$bin" -t -f "$d/apache2.conf" >"$d/configtest.out" 2>&1 ||
        die "apache2 -t rejects $d/apache2.conf: $(tr '\n' ' ' <"$d/configtest.out")"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C \
        APACHE_RUN_USER=www-data APACHE_RUN_GROUP=www-data \
        APACHE_PID_FILE="$d/run/apache2.pid" APACHE_RUN_DIR="$d/run" \
        APACHE_LOCK_DIR="$d/lock" APACHE_LOG_DIR="$d" \
        "$bin" -f "$d/apache2.conf" -DFOREGROUND >>"$RUN_DIR/apache-$name.log" 2>&1 &
    APACHE_PID=$!
    _register "apache-$name" "$APACHE_PID"
    wait_for_port "$APACHE_PORT" 10 "$APACHE_PID" ||
        die "apache did not listen on 127.0.0.1:$APACHE_PORT; error log: $(tail -n 5 "$d/error.log" 2>/dev/null | tr '\n' ' ')"
    APACHE_URL=http://127.0.0.1:$APACHE_PORT
    diag "apache $name on $APACHE_URL -> $addr (pid $APACHE_PID)"
}

# -------------------------------------------------------------------- browser
# browser_node_install: the npm packages of tests/browser (playwright-core,
# MapLibre GL JS, OpenLayers: exact versions in package-lock.json) in the
# build tree (never the source tree, which may be read-only), installed
# once and reused while the lock is the same; one test at a time installs
# (flock), so that make -j check does not install twice into one place.
# Sets NODE_DIR.
browser_node_install() {
    require_cmds node npm flock
    NODE_DIR=$abs_top_builddir/tests/browser-node
    mkdir -p "$NODE_DIR" || die "cannot create $NODE_DIR"
    (
        flock -w 300 9 || exit 2
        if ! cmp -s "$abs_top_srcdir/tests/browser/package-lock.json" "$NODE_DIR/package-lock.json" ||
            [ ! -d "$NODE_DIR/node_modules/playwright-core" ] ||
            [ ! -f "$NODE_DIR/node_modules/maplibre-gl/dist/maplibre-gl.mjs" ] ||
            [ ! -f "$NODE_DIR/node_modules/ol/dist/ol.js" ]; then
            cp "$abs_top_srcdir/tests/browser/package.json" \
                "$abs_top_srcdir/tests/browser/package-lock.json" "$NODE_DIR/" || exit 3
            (cd "$NODE_DIR" && timeout 240 npm ci --no-audit --no-fund --loglevel=error) \
                >"$RUN_DIR/npm.log" 2>&1 || exit 4
        fi
    ) 9>"$NODE_DIR/.install.lock"
    case $? in
    0) ;;
    2) die "another test held $NODE_DIR/.install.lock for 300 s" ;;
    3) die "cannot copy tests/browser/package*.json into $NODE_DIR" ;;
    *) die "npm ci failed: $(tail -n 5 "$RUN_DIR/npm.log" | tr '\n' ' ')" ;;
    esac
}

# ----------------------------------------------------------------------- HTTP
# req METHOD URL [curl args...]: one request.  Sets HTTP_STATUS; the body is
# in $HTTP_BODY_FILE, the headers in $HTTP_HEADERS_FILE; HTTP_BODY holds the
# body as text (binary bodies: use the file).
HTTP_BODY_FILE=$RUN_DIR/last.body
HTTP_HEADERS_FILE=$RUN_DIR/last.headers
req() {
    local method=$1 url=$2
    shift 2
    local mflag=()
    case $method in
    GET) ;;
    HEAD) mflag=(-I) ;;
    POST) mflag=(-X POST --data-binary '') ;;
    *) mflag=(-X "$method") ;;
    esac
    : >"$HTTP_BODY_FILE"
    : >"$HTTP_HEADERS_FILE"
    HTTP_STATUS=$(curl -sS -g --path-as-is --max-time 20 "${mflag[@]}" \
        -o "$HTTP_BODY_FILE" -D "$HTTP_HEADERS_FILE" -w '%{http_code}' "$@" "$url" \
        2>"$RUN_DIR/curl.err") || HTTP_STATUS="curl-failed($(tr '\n' ' ' <"$RUN_DIR/curl.err"))"
    # curl -I writes the headers to the output file too: a HEAD has no body.
    [ "$method" = HEAD ] && : >"$HTTP_BODY_FILE"
    HTTP_BODY=$(tr -d '\0' <"$HTTP_BODY_FILE" | head -c 20000)
    # every response seen, for leak checks (check_no_key_leak)
    cat "$HTTP_HEADERS_FILE" "$HTTP_BODY_FILE" >>"$RUN_DIR/all-responses.txt"
    echo >>"$RUN_DIR/all-responses.txt"
    REQ_COUNT=$((${REQ_COUNT:-0} + 1))
}

# wait_status STATUS SECONDS URL [curl args...]: GET URL until it answers
# STATUS or SECONDS pass; the last response stays for the checks after.
wait_status() {
    local want=$1 deadline=$((SECONDS + $2)) url=$3
    shift 3
    while :; do
        req GET "$url" "$@"
        [ "$HTTP_STATUS" = "$want" ] || [ "$SECONDS" -ge "$deadline" ] && break
        sleep 0.3
    done
}

# check_no_key_leak NAME [FILE...]: $SERVER_KEY appears in no response seen so
# far (headers and bodies) nor in the given files (logs).
check_no_key_leak() {
    local name=$1 f hits=()
    shift
    for f in "$RUN_DIR/all-responses.txt" "$@"; do
        [ -f "$f" ] && grep -qF -- "$SERVER_KEY" "$f" && hits+=("$f")
    done
    if [ ${#hits[@]} -eq 0 ]; then
        ok "$name"
    else
        not_ok "$name" "the server's HERE key ($SERVER_KEY) appears in: ${hits[*]}" \
            "$(grep -hF -- "$SERVER_KEY" "${hits[@]}" | head -n 3 | cut -c1-300)"
        return 1
    fi
}

# header NAME: the value of a header of the last response (last one wins).
header() {
    grep -i "^$1:" "$HTTP_HEADERS_FILE" | tail -n 1 | sed 's/^[^:]*:[[:space:]]*//' | tr -d '\r'
}

# save_body NAME: copy the last body to $RUN_DIR/NAME, print the path.
save_body() {
    cp "$HTTP_BODY_FILE" "$RUN_DIR/$1"
    echo "$RUN_DIR/$1"
}

# json_field EXPR [FILE]: evaluate a python expression on the JSON document d
# (default: the last body); prints the value, or "<invalid JSON>".
json_field() {
    python3 -c 'import json,sys
try:
    d = json.load(open(sys.argv[2], encoding="utf-8"))
except Exception:
    print("<invalid JSON>"); sys.exit(0)
try:
    v = eval(sys.argv[1])
except Exception as e:
    print("<%s: %s>" % (type(e).__name__, e)); sys.exit(0)
print(json.dumps(v) if not isinstance(v, str) else v)' "$1" "${2:-$HTTP_BODY_FILE}"
}

_last_response() {
    printf 'status: %s\nheaders:\n%s\nbody: %s' "$HTTP_STATUS" \
        "$(tr -d '\r' <"$HTTP_HEADERS_FILE")" "$(printf '%s' "$HTTP_BODY" | head -c 400)"
}

# ---------------------------------------------------------------- assertions
# assert_eq ACTUAL EXPECTED NAME
assert_eq() {
    if [ "$1" = "$2" ]; then
        ok "$3"
    else
        not_ok "$3" "expected: $2" "got:      $1"
        return 1
    fi
}

# assert_contains HAYSTACK NEEDLE NAME
assert_contains() {
    case $1 in
    *"$2"*) ok "$3" ;;
    *)
        not_ok "$3" "expected to contain: $2" "in: $(printf '%s' "$1" | head -c 600)"
        return 1
        ;;
    esac
}

# assert_not_contains HAYSTACK NEEDLE NAME
assert_not_contains() {
    case $1 in
    *"$2"*)
        not_ok "$3" "must not contain: $2" "in: $(printf '%s' "$1" | head -c 600)"
        return 1
        ;;
    *) ok "$3" ;;
    esac
}

# assert_match STRING ERE NAME
assert_match() {
    if printf '%s' "$1" | grep -Eq -- "$2"; then
        ok "$3"
    else
        not_ok "$3" "expected to match: $2" "got: $(printf '%s' "$1" | head -c 600)"
        return 1
    fi
}

# check_status CODE NAME: the last response had status CODE.
check_status() {
    if [ "$HTTP_STATUS" = "$1" ]; then
        ok "$2"
    else
        not_ok "$2" "expected status $1" "$(_last_response)"
        return 1
    fi
}

# assert_status URL CODE [NAME] [curl args...]: GET URL answers CODE.
assert_status() {
    local url=$1 code=$2 name=${3:-"GET $1 -> $2"}
    shift 3 2>/dev/null || shift $#
    req GET "$url" "$@"
    check_status "$code" "$name"
}

# check_header NAME VALUE TEST: the last response's header equals VALUE.
check_header() {
    assert_eq "$(header "$1")" "$2" "$3"
}

# check_json_error CODE NAME: the last response is CODE with Content-Type
# application/json and a body {"error": "...", "status": CODE}.
check_json_error() {
    local code=$1 name=$2 ct err st problems=()
    ct=$(header Content-Type)
    [ "$HTTP_STATUS" = "$code" ] || problems+=("status $HTTP_STATUS, expected $code")
    case $ct in
    application/json*) ;;
    *) problems+=("Content-Type '$ct', expected application/json") ;;
    esac
    err=$(json_field 'd["error"] if isinstance(d.get("error"), str) and d["error"] else None')
    st=$(json_field 'd.get("status")')
    [ "$err" != "null" ] && [ "$err" != "<invalid JSON>" ] && [ "${err#<}" = "$err" ] ||
        problems+=("body has no non-empty \"error\" string")
    [ "$st" = "$code" ] || problems+=("body \"status\" is $st, expected $code")
    if [ ${#problems[@]} -eq 0 ]; then
        ok "$name"
    else
        not_ok "$name" "${problems[@]}" "$(_last_response)"
        return 1
    fi
}

# check_no_secret TEXT_OR_FILE... : $SERVER_KEY appears in none of them.
# (Use check_last_response_clean for the last response.)
check_last_response_clean() {
    if grep -qF -- "$SERVER_KEY" "$HTTP_BODY_FILE" "$HTTP_HEADERS_FILE"; then
        not_ok "$1" "the server's HERE key appears in the response" "$(_last_response)"
        return 1
    fi
    ok "$1"
}

# check_log_json LOGFILE NAME [MIN_ACCESS_LINES]: every line of the proxy's
# stderr is a JSON object; access lines (event=access, or carrying
# cache_status) have ts, method, path, indice, cache_status, status,
# latency_ms and bytes.
check_log_json() {
    local out
    if out=$(python3 - "$1" "${3:-1}" <<'EOF'
import json, sys
path, min_access = sys.argv[1], int(sys.argv[2])
bad, access = [], 0
need = ["ts", "method", "path", "indice", "cache_status", "status", "latency_ms", "bytes"]
with open(path, encoding="utf-8", errors="replace") as f:
    for n, line in enumerate(f, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            bad.append("line %d is not JSON (%s): %s" % (n, e, line[:200]))
            continue
        if not isinstance(obj, dict):
            bad.append("line %d is not a JSON object: %s" % (n, line[:200]))
            continue
        if obj.get("event") == "access" or "cache_status" in obj:
            access += 1
            missing = [k for k in need if k not in obj]
            if missing:
                bad.append("access line %d lacks %s: %s" % (n, ",".join(missing), line[:200]))
if access < min_access:
    bad.append("only %d access lines, expected at least %d" % (access, min_access))
print("\n".join(bad[:10]))
sys.exit(1 if bad else 0)
EOF
    ); then
        ok "$2"
    else
        not_ok "$2" "$out"
        return 1
    fi
}

# upstream_record_check PYEXPR NAME: PYEXPR is evaluated for every recorded
# upstream request r (dict: method, path, query {k: [v]}, headers {lower: v});
# it must be true for all of them (and there must be at least one).
upstream_record_check() {
    local out
    if out=$(python3 - "$UPSTREAM_RECORD" "$1" <<'EOF'
import json, sys
path, expr = sys.argv[1], sys.argv[2]
rows = []
with open(path, encoding="utf-8") as f:
    for line in f:
        if line.strip():
            r = json.loads(line)
            if "method" in r:
                rows.append(r)
if not rows:
    print("no upstream requests recorded"); sys.exit(1)
bad = [r for r in rows if not eval(expr, {}, {"r": r})]
for r in bad[:3]:
    print("violates %s: %s" % (expr, json.dumps(r)[:400]))
sys.exit(1 if bad else 0)
EOF
    ); then
        ok "$2"
    else
        not_ok "$2" "$out"
        return 1
    fi
}

# ------------------------------------------------------------- concurrency
# fetch_parallel OUTDIR URL...: GET every URL at once, one thread and one
# connection each, released together by a barrier.  Writes OUTDIR/I.body
# and one JSON line per request to OUTDIR/results.jsonl, in URL order:
#   {"i", "url", "status", "headers": {lower-case name: value}, "length",
#    "sha1", "error", "t_start", "t_first", "t_end"}
# Times are time.time() (the upstream's record uses the same clock):
# t_first when the first body byte arrived.  error is null, or what went
# wrong (a body shorter than its Content-Length is an error).
fetch_parallel() {
    local out=$1
    shift
    mkdir -p "$out"
    python3 - "$out" "$@" <<'PYEOF' || die "fetch_parallel: the client failed"
import hashlib, http.client, json, sys, threading, time
from urllib.parse import urlsplit
out, urls = sys.argv[1], sys.argv[2:]
barrier = threading.Barrier(len(urls))
rows = [None] * len(urls)

def fetch(i, url):
    u = urlsplit(url)
    row = {"i": i, "url": url, "status": None, "headers": {}, "length": 0,
           "sha1": None, "error": None, "t_start": None, "t_first": None, "t_end": None}
    body = b""
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.connect()
        barrier.wait(timeout=30)
        row["t_start"] = time.time()
        conn.request("GET", u.path + ("?" + u.query if u.query else ""))
        resp = conn.getresponse()
        row["status"] = resp.status
        for k, v in resp.getheaders():
            row["headers"][k.lower()] = v
        first = resp.read(1)
        row["t_first"] = time.time() if first else None
        body = first + resp.read()
        conn.close()
        # http.client's read(1) on a connection closed before any body byte
        # returns b"" without IncompleteRead: compare with Content-Length.
        cl = row["headers"].get("content-length")
        if cl is not None and resp.status != 304 and len(body) != int(cl):
            raise http.client.IncompleteRead(b"", int(cl) - len(body))
    except Exception as e:  # IncompleteRead, reset, timeout
        row["error"] = "%s: %s" % (type(e).__name__, e)
        if isinstance(e, http.client.IncompleteRead):
            body += e.partial
    row["t_end"] = time.time()
    row["length"] = len(body)
    row["sha1"] = hashlib.sha1(body).hexdigest()
    with open("%s/%d.body" % (out, i), "wb") as f:
        f.write(body)
    rows[i] = row

threads = [threading.Thread(target=fetch, args=(i, u)) for i, u in enumerate(urls)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(out + "/results.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
PYEOF
}

# results_eval OUTDIR PYEXPR: PYEXPR evaluated on rs, the rows of
# OUTDIR/results.jsonl (see fetch_parallel); prints the value.
results_eval() {
    python3 - "$1/results.jsonl" "$2" <<'PYEOF'
import collections, json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
Counter = collections.Counter
v = eval(sys.argv[2])
if isinstance(v, dict):
    v = {str(k): x for k, x in v.items()}   # None (no such header) sorts too
print(json.dumps(v, sort_keys=True) if not isinstance(v, str) else v)
PYEOF
}

# log_events LOGFILE EVENT [PYEXPR]: how many lines of a proxy log have
# "event": EVENT (and, given PYEXPR, for which it holds on the line as o).
log_events() {
    python3 - "$1" "$2" "${3:-True}" <<'PYEOF'
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == sys.argv[2] and eval(sys.argv[3]):
        n += 1
print(n)
PYEOF
}

# access_line LOG FIELD VALUE PYEXPR: PYEXPR on l, the first access line
# whose FIELD (request_id, indice) is VALUE, waiting up to 10 s for it
# (access lines are flushed every LOG_FLUSH_MS); "<none>" when it never came.
access_line() {
    python3 - "$1" "$2" "$3" "$4" <<'PYEOF'
import json, sys, time
log, field, value, expr = sys.argv[1:5]
deadline = time.time() + 10
while True:
    for line in open(log, encoding="utf-8", errors="replace"):
        try:
            l = json.loads(line)
        except ValueError:
            continue
        if isinstance(l, dict) and l.get("event") == "access" and l.get(field) == value:
            v = eval(expr)
            print(json.dumps(v) if not isinstance(v, str) else v)
            sys.exit(0)
    if time.time() > deadline:
        print("<none>")
        sys.exit(0)
    time.sleep(0.1)
PYEOF
}

# wait_requests EXPECTED INDICE...: poll $N/metrics until the indices'
# "requests" equal EXPECTED (a Python list), 10 s at most; sets got. For
# counts that reach hereproxy late (NGINX's cache layer).
wait_requests() {
    local want=$1 deadline=$((SECONDS + 10)) keys
    shift
    keys=$(printf '"%s",' "$@")
    while :; do
        req GET "$N/metrics"
        got=$(json_field "[d['indices'].get(k, {}).get('requests') for k in ($keys)]")
        [ "$got" = "$want" ] || [ "$SECONDS" -ge "$deadline" ] && break
        sleep 0.2
    done
}

# header_count NAME: how many NAME headers the last response carried.
header_count() { grep -ci "^$1:" "$HTTP_HEADERS_FILE"; }

# check_shared_entry NGINX_URL TILE_PATH PROXY_LOG: NGINX's cache layer
# (conf/nginx/hereproxy-cache.conf, with or without the NGINX module) keeps
# one entry per tile for every indice, and a hit carries the requester's
# X-Index and X-Request-ID, never the filler's. TILE_PATH must be new to
# the cache; P fills it, Q and R hit it (P 3, Q 1, R 2 requests in all).
check_shared_entry() {
    local n=$1 TS=$2 log=$3
    req GET "$n$TS?indice=P" -H "X-Request-ID: filler-id-1"
    check_header X-Cache-NGINX MISS "shared key: P fills the entry"
    check_header X-Index P "shared key: the filler's X-Index is its own"
    check_header X-Request-ID filler-id-1 "shared key: the filler's X-Request-ID is its own"
    req GET "$n$TS?indice=Q"
    check_status 200 "shared key: Q 200"
    check_header X-Cache-NGINX HIT "shared key: another indice is a HIT on the same entry"
    check_header X-Index Q "shared key: the hit says Q, not the filler's P"
    assert_eq "$(header_count X-Index)" 1 "shared key: one X-Index header"
    assert_eq "$(header_count X-Request-ID)" 0 "shared key: a hit asked without X-Request-ID has none (not the filler's)"
    req GET "$n$TS?indice=R" -H "X-Request-ID: mine.42"
    check_header X-Cache-NGINX HIT "shared key: R is a HIT"
    check_header X-Request-ID mine.42 "shared key: a hit echoes the requester's valid X-Request-ID"
    assert_eq "$(header_count X-Request-ID)" 1 "shared key: one X-Request-ID header"
    req GET "$n$TS?indice=R" -H "X-Request-ID: bad id!"
    assert_eq "$(header_count X-Request-ID)" 0 "shared key: an invalid X-Request-ID is not echoed"
    assert_eq "$(grep -c "\"event\":\"access\".*\"path\":\"$TS\"" "$log")" 1 "shared key: P, Q and R asked hereproxy once"
    assert_eq "$(upstream_path_requests "/v3${TS#/here-proxy}")" 1 "shared key: HERE asked once"
    # What hereproxy must judge reaches it and is never a cached tile.
    req GET "$n$TS?indice=bad!name"
    check_status 400 "shared key: an invalid indice: hereproxy's 400"
    check_header X-Cache-NGINX BYPASS "shared key: an invalid indice skips the cache"
    req GET "$n$TS?indice=P&indice=Q"
    check_status 400 "shared key: a repeated indice: hereproxy's 400, not the cached tile"
    req GET "$n$TS?indice=%50"
    check_status 200 "shared key: an encoded indice: 200"
    check_header X-Cache-NGINX BYPASS "shared key: an encoded indice skips the cache"
    check_header X-Index P "shared key: an encoded indice: hereproxy decoded it"
    # No indice: an entry of its own (the key keeps the whole query), "-".
    req GET "$n$TS"
    check_header X-Cache-NGINX MISS "shared key: no indice is a key of its own"
    req GET "$n$TS"
    check_header X-Cache-NGINX HIT "shared key: no indice, repeated: HIT"
    check_header X-Index - "shared key: a hit without indice says -"
}
