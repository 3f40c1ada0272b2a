#!/bin/bash
# conf/nginx/hereproxy-cache.conf: NGINX's fastcgi_cache in front. A repeat
# request is answered by NGINX without reaching hereproxy, and NGINX's
# JSON access lines, in a file hereproxy follows (NGINX_LOG_FILE), keep
# hereproxy's per-indice metrics equal to what the clients sent, across
# log rotation.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

src=$abs_top_srcdir/conf/nginx/hereproxy-cache.conf
SHIPPED_LOG=/var/log/nginx/hereproxy-cache.log

# cache_nginx NAME PROXY_ADDR [SED_ARGS...]: hereproxy-cache.conf adapted
# (addresses, cache dir, log file $LOGF) and started; sets NGINX_PORT, N, D.
cache_nginx() {
    NGINX_CACHE_LOG=$LOGF start_nginx_cache "$@"
    D=$NGINX_DIR
    N=$NGINX_URL
}

grep -q "access_log $SHIPPED_LOG hereproxy_cache" "$src" ||
    die "hereproxy-cache.conf does not log to $SHIPPED_LOG"

LOGF=$RUN_DIR/hereproxy-cache.log
start_upstream
# Started before NGINX creates the file: the proxy waits for it.
start_proxy a "NGINX_LOG_FILE=$LOGF"
LOG_A=$PROXY_LOG
cache_nginx nginx-cache "$PROXY_ADDR"
grep -q "access_log $LOGF hereproxy_cache" "$D/nginx.conf" || die "the log file was not rewritten"
NGINX_MASTER=$NGINX_PID
[ -f "$LOGF" ] && ok "NGINX created $LOGF" || not_ok "NGINX created $LOGF"

proxy_lines() { # PATH: access lines hereproxy wrote for it
    grep -c "\"event\":\"access\".*\"path\":\"$1\"" "$LOG_A"
}

# ------------------------------------------------ the repeat is NGINX's
T=/here-proxy/base/mc/7/10/10/png
req GET "$N$T?indice=A"
check_status 200 "first request 200"
check_header X-Cache-NGINX MISS "first request: NGINX cache MISS"
check_header X-Cache MISS "first request: hereproxy MISS"
FIRST=$(save_body first.png)
req GET "$N$T?indice=A"
check_status 200 "repeat 200"
check_header X-Cache-NGINX HIT "repeat: answered by NGINX's cache (HIT)"
if cmp -s "$FIRST" "$HTTP_BODY_FILE"; then ok "repeat: same body"; else not_ok "repeat: same body"; fi
assert_eq "$(proxy_lines "$T")" 1 "repeat: never reached hereproxy (one access line)"
assert_eq "$(upstream_path_requests "/v3/base/mc/7/10/10/png")" 1 "repeat: HERE asked once"

# ------------------------------------------------ metrics equal what clients sent
for i in 1 2 3 4; do req GET "$N$T?indice=A"; done              # A: 6 in all
for i in 1 2 3; do req GET "$N/here-proxy/base/mc/7/11/10/png?indice=B"; done
req HEAD "$N/here-proxy/base/mc/7/11/10/png?indice=B"             # B: 4
check_status 200 "HEAD via the cache 200"
# Errors are not cached (no-store): each reaches hereproxy, counted once.
upstream_control fail "status=404&times=2&path=/v3/base/mc/7/12/10/png"
for i in 1 2; do req GET "$N/here-proxy/base/mc/7/12/10/png?indice=C"; done
check_status 404 "an upstream 404: 404"
wait_requests "[6, 4, 2]" A B C
check_status 200 "/metrics through NGINX 200"
assert_eq "$got" "[6, 4, 2]" "/metrics requests per indice equal what the clients sent (A 6, B 4, C 2)"
assert_eq "$(json_field 'd["indices"]["A"]["hits"]')" 5 "/metrics: A has 5 hits (NGINX's), 1 miss"
assert_eq "$(json_field 'd["indices"]["A"]["misses"]')" 1 "/metrics: A's one miss"
# The key holds the method: B's first GET and its HEAD reached hereproxy.
assert_eq "$(proxy_lines /here-proxy/base/mc/7/11/10/png)" 2 "B: hereproxy saw two of B's four requests"
req GET "$N/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_requests_total{indice="A",cache="hit",code="200"} 5' "Prometheus: A's 5 hits"
sleep 1.5   # past NGINX's flush=1s
req GET "$N/metrics"
assert_eq "$(json_field 'd["indices"]["A"]["requests"]')" 6 "/metrics: no double counting after the lines settle"
assert_eq "$(grep -c 'NGINX_LOG_FILE: cannot read' "$LOG_A")" 1 "the missing file was logged once"

# ------------------------------------------------ rotation
# logrotate's way: rename, then NGINX reopens (USR1) and creates a new file.
mv "$LOGF" "$LOGF.1"
kill -USR1 "$NGINX_MASTER"
for i in $(seq 50); do [ -f "$LOGF" ] && break; sleep 0.1; done
[ -f "$LOGF" ] && ok "rename rotation: NGINX reopened a new file" || not_ok "rename rotation: NGINX reopened a new file"
for i in 1 2 3; do req GET "$N$T?indice=A"; done                # A: 9
wait_requests "[9]" A
assert_eq "$got" "[9]" "rename rotation: the new file's lines counted (A 9)"
# copytruncate: the same file, emptied; NGINX appends from 0.
sleep 1.5
cp "$LOGF" "$LOGF.2" && : >"$LOGF"
for i in 1 2; do req GET "$N$T?indice=A"; done                  # A: 11
wait_requests "[11]" A
assert_eq "$got" "[11]" "copytruncate: the lines after the truncation counted (A 11)"
sleep 1.5
req GET "$N/metrics"
assert_eq "$(json_field 'd["indices"]["A"]["requests"]')" 11 "rotation: nothing counted twice"

# ------------------------------------------------ one entry for every indice
TS=/here-proxy/base/mc/7/15/10/png
check_shared_entry "$N" "$TS" "$LOG_A"
# P: the filler and the encoded one; the repeated indice is a 400 before
# admission, counted as _refused (as is the invalid one).
wait_requests "[2, 1, 2]" P Q R
assert_eq "$got" "[2, 1, 2]" "shared key: per-indice counts exact (P 2, Q 1, R 2)"
assert_match "$(json_field 'd["indices"]["_refused"]["requests"]')" '^([2-9]|[1-9][0-9]+)$' \
    "shared key: the two 400s count as _refused"

check_log_json "$LOG_A" "proxy log is JSON lines" 3
check_no_key_leak "no key in responses or logs" "$LOG_A"

# ------------------------------------------------ client tokens skip it
TOK=nginxcachetoken0123456789
start_proxy tok "HEREPROXY_CLIENT_TOKENS=$TOK:TK"
cache_nginx nginx-cache-tok "$PROXY_ADDR"
TT=/here-proxy/base/mc/7/14/10/png
for i in 1 2; do
    req GET "$N$TT?indice=TK" -H "X-Proxy-Token: $TOK"
    check_status 200 "token in the header, request $i: 200"
    check_header X-Cache-NGINX BYPASS "token in the header, request $i: NGINX's cache skipped"
done
req GET "$N$TT?indice=TK"
check_status 401 "the same URL without the token: 401 from hereproxy, not a cached tile"
for i in 1 2; do
    req GET "$N$TT?indice=TK&token=$TOK"
    check_status 200 "token in the query, request $i: 200"
    check_header X-Cache-NGINX BYPASS "token in the query, request $i: NGINX's cache skipped"
done
req GET "$N$TT?indice=TK&token=wrongtoken0123456789xx"
check_status 401 "a wrong token in the query: 401"

finish
