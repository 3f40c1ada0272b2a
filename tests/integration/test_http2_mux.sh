#!/bin/bash
# 100 concurrent misses to an HTTPS upstream (NGINX with a private CA, TLS
# and HTTP/2 in front of the local HERE imitation) share a few HTTP/2
# connections (PIPEWAIT multiplexes rather than opening more), every
# request HTTP/2.0.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi openssl curl python3
require_bin

start_upstream
start_tls_upstream
# Threads for 100 FastCGI connections and room for 100 transfers at once:
# the point is how the upstream side carries them. The TLS front answers
# 100 at once slowly on a loaded machine (5 s seen under ASan): a wide
# attempt window, so that no retry opens a connection of its own.
start_proxy h2 "HERE_BASE_URL=$TLS_URL/v3" "HERE_CA_FILE=$TLS_CA" HEREPROXY_THREADS=160 \
    HERE_MAX_INFLIGHT=128 HERE_TIMEOUT_MS=60000 HERE_ATTEMPT_TIMEOUT_MS=60000
PLOG=$PROXY_LOG
start_nginx h2 "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# Slow answers, so that the misses overlap at the proxy's engine.
upstream_control delay "ms=400&times=-1"
urls=()
for i in $(seq 0 99); do urls+=("$P/base/mc/10/$i/$((i + 7))/png?indice=mux$i"); done
fetch_parallel "$RUN_DIR/mux" "${urls[@]}"
R=$RUN_DIR/mux
assert_eq "$(results_eval "$R" 'dict(Counter(x["status"] for x in rs))')" '{"200": 100}' "100 concurrent misses: all 200"
assert_eq "$(results_eval "$R" '[x["error"] for x in rs if x["error"]][:3]')" "[]" "100 concurrent misses: every body whole"
assert_eq "$(results_eval "$R" 'dict(Counter(x["headers"].get("x-cache") for x in rs))')" '{"MISS": 100}' \
    "100 concurrent misses: all X-Cache MISS"
assert_eq "$(results_eval "$R" 'len(set(x["sha1"] for x in rs))')" 100 "100 concurrent misses: 100 distinct tiles"
assert_eq "$(upstream_requests)" 100 "100 concurrent misses: 100 upstream requests"
assert_eq "$(upstream_stat 's["max_inflight"] > 4')" True \
    "the upstream answered more than 4 at once (the misses did overlap: $(upstream_stat 's["max_inflight"]'))"

# The TLS front's view: which connection, which protocol.
summary=$(python3 - "$TLS_ACCESS_LOG" <<'EOF'
import re, sys
conns, protos, n = set(), set(), 0
for line in open(sys.argv[1]):
    if '"GET /v3/base/mc/10/' not in line:
        continue
    n += 1
    m = re.search(r'" (\S+) \d{3} .* conn=(\d+)$', line.rstrip("\n"))
    if not m:
        print("unparsed: " + line.strip())
        sys.exit(0)
    protos.add(m.group(1))
    conns.add(m.group(2))
print("requests=%d connections=%d protocols=%s" % (n, len(conns), ",".join(sorted(protos))))
EOF
)
diag "TLS front: $summary"
assert_match "$summary" '^requests=100 ' "TLS front logged the 100 requests"
assert_match "$summary" ' connections=[1-4] ' "at most 4 upstream connections for 100 concurrent misses (multiplexed)"
assert_match "$summary" ' protocols=HTTP/2\.0$' "every upstream request was HTTP/2.0"

# The proxy's access lines agree.
n=$(python3 - "$PLOG" <<'EOF'
import json, sys
c = {}
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if str(o.get("indice", "")).startswith("mux"):
        c[o.get("upstream_http")] = c.get(o.get("upstream_http"), 0) + 1
print(json.dumps(c))
EOF
)
assert_eq "$n" '{"HTTP/2": 100}' "proxy access lines: upstream_http HTTP/2 for all 100"

# ------------------------------------------------ HERE_MAX_CONNECTIONS=1
start_proxy one "HERE_BASE_URL=$TLS_URL/v3" "HERE_CA_FILE=$TLS_CA" HEREPROXY_THREADS=160 \
    HERE_MAX_INFLIGHT=128 HERE_MAX_CONNECTIONS=1 HERE_TIMEOUT_MS=60000 HERE_ATTEMPT_TIMEOUT_MS=60000
start_nginx one "$PROXY_ADDR"
urls=()
for i in $(seq 0 49); do urls+=("$NGINX_URL/here-proxy/base/mc/11/$i/3/png"); done
fetch_parallel "$RUN_DIR/one" "${urls[@]}"
assert_eq "$(results_eval "$RUN_DIR/one" 'dict(Counter(x["status"] for x in rs))')" '{"200": 50}' \
    "HERE_MAX_CONNECTIONS=1, 50 concurrent misses: all 200"
n=$(grep '"GET /v3/base/mc/11/' "$TLS_ACCESS_LOG" | sed 's/.*conn=//' | sort -u | wc -l)
assert_eq "$n" 1 "HERE_MAX_CONNECTIONS=1: one upstream connection for all 50"

check_log_json "$PLOG" "proxy log is JSON lines with complete access lines" 100
check_no_key_leak "no key in responses or logs" "$PLOG"
finish
