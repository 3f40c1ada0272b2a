#!/bin/bash
# A stalled HERE is retried, not waited out (HERE_ATTEMPT_TIMEOUT_MS), and a
# tile-sized body reaches clients only once it is whole
# (HERE_BUFFER_MAX_BYTES), so that the retry is always possible: HERE stalls
# after 1 KB with 8 coalesced clients, and all 8 get the whole tile after one
# retry. Connect errors are retried too. Every case counts the attempts HERE
# saw. Where a cut stays unavoidable (a large body already streaming), the
# access line says the proxy aborted the response on purpose, and NGINX
# logs the line the man page's DIAGNOSTICS explains.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

ATTEMPT_MS=1000
start_upstream
# Short backoff: the test is about how many attempts, and how soon.
start_proxy main HERE_ATTEMPT_TIMEOUT_MS=$ATTEMPT_MS HERE_RETRY_BASE_MS=20 \
    HERE_RETRY_MAX_MS=100
PLOG=$PROXY_LOG
start_nginx main "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# access INDICE PYEXPR: PYEXPR on l, the access line of the request with INDICE.
access() { access_line "$PLOG" indice "$1" "$2"; }

# direct_sha1 PATH: the digest of HERE's own bytes for PATH (/v3/...) with
# the query the proxy sent, asked directly (one more request for PATH:
# count before).
direct_sha1() {
    local q
    q=$(python3 - "$UPSTREAM_RECORD" "$1" <<'EOF'
import json, sys, urllib.parse
q = {}
for r in map(json.loads, open(sys.argv[1])):
    if r.get("path") == sys.argv[2] and "query" in r:
        q = r["query"]
print(urllib.parse.urlencode(q, doseq=True))
EOF
)
    curl -sS --max-time 10 "$UPSTREAM_URL$1?$q" | sha1sum | cut -d' ' -f1
}

metric() {
    req GET "$NGINX_URL/metrics/prometheus"
    prom_value "$1"
}

# --------------------------------- a tile: stalls after 1 KB, 8 coalesced
# HERE sends the head and 1 KB, then nothing for 20 s. Kept back (a tile),
# the 1 KB reached no client; after HERE_ATTEMPT_TIMEOUT_MS the attempt is
# abandoned and retried, and every reader gets the retry's whole tile.
TILE=/base/mc/7/20/21/png
UPATH=/v3$TILE
upstream_control stall "after=1024&ms=20000&times=1&path=$UPATH"
urls=()
for i in $(seq 8); do urls+=("$P$TILE?indice=s$i"); done
t0=$(date +%s.%N)
fetch_parallel "$RUN_DIR/eight" "${urls[@]}"
t1=$(date +%s.%N)
R=$RUN_DIR/eight
assert_eq "$(upstream_path_requests "$UPATH")" 2 "stall after 1 KB: HERE saw exactly 2 attempts"
assert_eq "$(results_eval "$R" 'dict(Counter(x["status"] for x in rs))')" '{"200": 8}' \
    "stall after 1 KB: all 8 clients get 200"
assert_eq "$(results_eval "$R" '[x["error"] for x in rs if x["error"]][:3]')" "[]" \
    "stall after 1 KB: no client got a body cut short"
assert_eq "$(results_eval "$R" 'all(x["length"] == int(x["headers"].get("content-length", -1)) > 1024 for x in rs)')" true \
    "stall after 1 KB: every body as long as its Content-Length (more than the 1 KB before the stall)"
SHA=$(direct_sha1 "$UPATH")
assert_eq "$(results_eval "$R" 'sorted(set(x["sha1"] for x in rs))')" "[\"$SHA\"]" \
    "stall after 1 KB: all 8 bodies are HERE's tile, byte for byte (sha1)"
assert_eq "$(results_eval "$R" 'dict(Counter(x["headers"].get("x-cache") for x in rs))')" \
    '{"COALESCED": 7, "MISS": 1}' "stall after 1 KB: one MISS, 7 COALESCED on the same fetch"
took=$(python3 -c "print(round($t1 - $t0, 2))")
assert_eq "$(python3 -c "print($t1 - $t0 < 6)")" True \
    "stall after 1 KB: answered after about one HERE_ATTEMPT_TIMEOUT_MS (${took} s), not after the stall (20 s)"
lead=$(results_eval "$R" '[x["headers"]["x-index"] for x in rs if x["headers"].get("x-cache") == "MISS"][0]')
assert_eq "$(access "$lead" 'l.get("upstream_attempts")')" 2 \
    "stall after 1 KB: the leader's access line says upstream_attempts 2"
req GET "$P$TILE"
check_header X-Cache HIT "stall after 1 KB: the retried tile was cached"

# ------------------------------------------------ stalls before the head
TILE=/base/mc/7/20/22/png
UPATH=/v3$TILE
upstream_control stall "after=-1&ms=20000&times=1&path=$UPATH"
req GET "$P$TILE?indice=beforehead"
check_status 200 "stall before the head: retried, 200"
assert_eq "$(upstream_path_requests "$UPATH")" 2 "stall before the head: HERE saw exactly 2 attempts"
assert_eq "$(sha1sum <"$HTTP_BODY_FILE" | cut -d' ' -f1)" "$(direct_sha1 "$UPATH")" \
    "stall before the head: the whole tile"

# ------------------------------------------------ a tile cut off part way
# Not a stall: HERE announces the length, sends half and hangs up. Kept
# back, it is retried like a stall.
TILE=/base/mc/7/20/23/png
UPATH=/v3$TILE
upstream_control truncate "times=1&path=$UPATH"
req GET "$P$TILE?indice=truncated"
check_status 200 "a tile cut off part way: retried, 200"
assert_eq "$(upstream_path_requests "$UPATH")" 2 "a tile cut off part way: HERE saw exactly 2 attempts"
assert_eq "$(wc -c <"$HTTP_BODY_FILE" | tr -d ' ')" "$(header Content-Length)" \
    "a tile cut off part way: the body is whole"

# ------------------------------------------------ every attempt stalls
TILE=/base/mc/7/20/24/png
UPATH=/v3$TILE
stalls0=$(metric hereproxy_upstream_stalls_total)
upstream_control stall "after=1024&ms=20000&times=-1&path=$UPATH"
t0=$(date +%s.%N)
req GET "$P$TILE?indice=always"
t1=$(date +%s.%N)
check_json_error 504 "stalls on every attempt: 504 JSON"
assert_contains "$HTTP_BODY" stalled "stalls on every attempt: the error says HERE stalled"
assert_eq "$(upstream_path_requests "$UPATH")" 3 "stalls on every attempt: HERE saw exactly HERE_RETRIES (3) attempts"
assert_eq "$(python3 -c "print($t1 - $t0 < 8)")" True \
    "stalls on every attempt: the 504 came after about 3 x HERE_ATTEMPT_TIMEOUT_MS ($(python3 -c "print(round($t1 - $t0, 2))") s), not HERE_TIMEOUT_MS"
assert_eq "$(access always 'l.get("upstream_attempts")')" 3 "stalls on every attempt: the access line says upstream_attempts 3"
assert_contains "$(access always 'l.get("error")')" HERE_ATTEMPT_TIMEOUT_MS \
    "stalls on every attempt: the access line's error names HERE_ATTEMPT_TIMEOUT_MS"
assert_eq "$(metric 'hereproxy_upstream_requests_total{indice="always",outcome="stalled"}')" 1 \
    "stalls on every attempt: hereproxy_upstream_requests_total{outcome=\"stalled\"} 1"
assert_eq "$(( $(metric hereproxy_upstream_stalls_total) - stalls0 ))" 3 \
    "stalls on every attempt: hereproxy_upstream_stalls_total grew by 3"
upstream_control reset
req GET "$P$TILE"
check_header X-Cache MISS "stalls on every attempt: nothing was cached"

# ------------------------------- a large body already streaming stalls
# More than HERE_BUFFER_MAX_BYTES (64 KiB): it streams as it comes, so a
# stall part way can no longer be retried. The client sees the response
# cut (never a short body that looks whole), and the proxy says why.
TILE=/base/mc/7/20/25/png
UPATH=/v3$TILE
upstream_control stall "after=100000&bytes=200000&ms=20000&times=1&path=$UPATH"
curl -sS --max-time 15 -o "$RUN_DIR/big.body" -D "$RUN_DIR/big.headers" \
    "$P$TILE?indice=bigstall" 2>"$RUN_DIR/big.err"
rc=$?
got=$(wc -c <"$RUN_DIR/big.body" | tr -d ' ')
assert_eq "$rc" 18 "large body stalls mid-stream: the client's transfer is cut (curl 18)"
assert_eq "$(grep -i '^content-length:' "$RUN_DIR/big.headers" | tr -dc 0-9)" 200000 \
    "large body stalls mid-stream: the 200 announced all 200000 bytes"
if [ "$got" -gt 0 ] && [ "$got" -le 100000 ]; then
    ok "large body stalls mid-stream: it streamed ($got bytes) before the stall"
else
    not_ok "large body stalls mid-stream: it streamed before the stall" "$got bytes"
fi
assert_eq "$(upstream_path_requests "$UPATH")" 1 "large body stalls mid-stream: 1 attempt (no retry once streaming)"
assert_eq "$(access bigstall 'l.get("aborted")')" upstream_stalled \
    "large body stalls mid-stream: the access line says \"aborted\":\"upstream_stalled\""
assert_contains "$(access bigstall 'l.get("error")')" "aborted on purpose" \
    "large body stalls mid-stream: the error says the response was aborted on purpose"
if grep -q 'upstream sent unsupported FastCGI protocol version: 0' "$NGINX_DIR/error.log"; then
    ok "large body stalls mid-stream: NGINX logs 'upstream sent unsupported FastCGI protocol version: 0' (man page, DIAGNOSTICS)"
else
    not_ok "NGINX logs 'upstream sent unsupported FastCGI protocol version: 0'" "$(tail -n 3 "$NGINX_DIR/error.log")"
fi
assert_eq "$(access s1 'l.get("aborted", "absent")')" absent "an access line without a cut has no aborted field"

# ------------------------------------------------ connect errors
# A refused port: HERE sees nothing, so the proxy's own counts say how many
# attempts it made: HERE_RETRIES, soon, then a 502.
start_proxy refused "HERE_BASE_URL=http://127.0.0.1:$(free_port)/v3" HERE_RETRY_BASE_MS=20 \
    HERE_RETRY_MAX_MS=100
RLOG=$PROXY_LOG
start_nginx refused "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/7/20/26/png?indice=refused"
check_json_error 502 "connect refused: 502 JSON"
n=$(python3 - "$RLOG" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "access" and o.get("indice") == "refused":
        print(o.get("upstream_attempts"))
EOF
)
assert_eq "$n" 3 "connect refused: 3 attempts (HERE_RETRIES) on the access line"
req GET "$NGINX_URL/metrics/prometheus"
assert_eq "$(prom_value 'hereproxy_upstream_requests_total{indice="refused",outcome="connect"}')" 1 \
    "connect refused: one exchange with outcome connect"
assert_eq "$(prom_value hereproxy_upstream_retries_total)" 2 "connect refused: 2 retries"

# A listener that never accepts: the kernel completes each connection, HERE
# never answers. Each attempt is abandoned after HERE_ATTEMPT_TIMEOUT_MS
# and retried on a new connection; the listener counts them at the end.
BH_PORT=$(free_port)
python3 - "$BH_PORT" "$RUN_DIR/blackhole.count" <<'EOF' &
import os, signal, socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
open(out + ".ready", "w").close()
go = []
signal.signal(signal.SIGUSR1, lambda *a: go.append(1))
deadline = time.time() + 60
while not go and time.time() < deadline:
    time.sleep(0.05)
s.setblocking(False)
n = 0
while True:
    try:
        s.accept()
        n += 1
    except BlockingIOError:
        break
with open(out + ".tmp", "w") as f:
    f.write("%d\n" % n)
os.replace(out + ".tmp", out)
EOF
BH_PID=$!
_register blackhole "$BH_PID"
for _ in $(seq 100); do [ -e "$RUN_DIR/blackhole.count.ready" ] && break; sleep 0.1; done
[ -e "$RUN_DIR/blackhole.count.ready" ] || die "the never-accepting listener did not start"
start_proxy blackhole "HERE_BASE_URL=http://127.0.0.1:$BH_PORT/v3" HERE_ATTEMPT_TIMEOUT_MS=$ATTEMPT_MS \
    HERE_RETRY_BASE_MS=20 HERE_RETRY_MAX_MS=100
start_nginx blackhole "$PROXY_ADDR"
t0=$(date +%s.%N)
req GET "$NGINX_URL/here-proxy/base/mc/7/20/27/png?indice=blackhole"
t1=$(date +%s.%N)
check_json_error 504 "listener that never accepts: 504 JSON"
assert_eq "$(python3 -c "print($t1 - $t0 < 8)")" True \
    "listener that never accepts: answered after about 3 x HERE_ATTEMPT_TIMEOUT_MS ($(python3 -c "print(round($t1 - $t0, 2))") s)"
kill -USR1 "$BH_PID"
for _ in $(seq 50); do [ -s "$RUN_DIR/blackhole.count" ] && break; sleep 0.1; done
assert_eq "$(cat "$RUN_DIR/blackhole.count" 2>/dev/null)" 3 \
    "listener that never accepts: it saw exactly 3 connections (HERE_RETRIES), one per attempt"

check_log_json "$PLOG" "proxy log is JSON lines with complete access lines" 14
check_log_json "$RLOG" "refused proxy log is JSON lines" 1
check_no_key_leak "no key in responses or logs" "$PLOG" "$RLOG"
finish
