#!/bin/bash
# contrib/nginx-module: the NGINX module built against the installed NGINX
# (Debian's nginx-dev), loaded into a real NGINX running
# conf/nginx/hereproxy-cache.conf as contrib/nginx-module/cache-conf
# switches it. NGINX's hits are counted in the shared file hereproxy reads
# (NGINX_HITS_FILE), exactly, per indice, status and cache label, across a
# reload; a hit carries the requester's X-Index and X-Request-ID.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3 make cc
require_bin
[ -x /usr/share/nginx/src/configure ] ||
    die "no NGINX sources in /usr/share/nginx/src (Debian: apt-get install nginx-dev)"

MOD=$RUN_DIR/module
SO=$("$abs_top_srcdir/contrib/nginx-module/build" "$MOD" 2>"$RUN_DIR/module-build.err") ||
    die "contrib/nginx-module/build failed: $(tr '\n' ' ' <"$RUN_DIR/module-build.err")"
[ -f "$SO" ] && ok "the module builds against this NGINX" || not_ok "the module builds against this NGINX"

HITS=$RUN_DIR/hereproxy-hits
src=$abs_top_srcdir/conf/nginx/hereproxy-cache.conf

# module_nginx NAME PROXY_ADDR [SED_ARGS...]: the switched
# hereproxy-cache.conf with the module loaded (SED_ARGS edit it further),
# started; sets NGINX_PORT, N, D.
module_nginx() {
    local name=$1 addr=$2
    shift 2
    D=$RUN_DIR/$name
    mkdir -p "$D/tmp" "$D/cache"
    cp /etc/nginx/fastcgi_params "$D/fastcgi_params" || die "no /etc/nginx/fastcgi_params"
    NGINX_PORT=$(free_port)
    "$abs_top_srcdir/contrib/nginx-module/cache-conf" "$HITS" <"$src" >"$D/server.conf" ||
        die "cache-conf could not switch hereproxy-cache.conf"
    {
        echo "load_module $SO;"
        _nginx_main_conf "$D"
        sed -e "s|127\.0\.0\.1:9000|$addr|g" \
            -e "s|listen 127\.0\.0\.1:8080|listen 127.0.0.1:$NGINX_PORT|" \
            -e "s|/var/cache/nginx/hereproxy|$D/cache|" "$@" "$D/server.conf" | sed 's/^/    /'
        echo "}"
    } >"$D/nginx.conf"
    _run_nginx "$name" "$D" "$NGINX_PORT"
    N=http://127.0.0.1:$NGINX_PORT
}

prom_line() { # PATTERN: the Prometheus sample lines matching it
    req GET "$N/metrics/prometheus"
    grep -F "$1" <<<"$HTTP_BODY"
}

start_upstream
# Started before NGINX creates the file: the proxy waits for it.
start_proxy a "NGINX_HITS_FILE=$HITS"
LOG_A=$PROXY_LOG
module_nginx nginx-module "$PROXY_ADDR"
NGINX_MASTER=$NGINX_PID
NGINX_MODULE_PORT=$NGINX_PORT
grep -q "^ *access_log off;" "$D/nginx.conf" || die "the location still logs"
[ -f "$HITS" ] && ok "NGINX created the counters file" || not_ok "NGINX created the counters file"
assert_eq "$(stat -c '%a %s' "$HITS")" "644 $((64 + 4096 * 512))" "the file: mode 0644, 4096 slots of 512 bytes"

# ------------------------------------------------ hits counted, not logged
T=/here-proxy/base/mc/7/20/10/png
req GET "$N$T?indice=A"
check_header X-Cache-NGINX MISS "first request: NGINX cache MISS"
ETAG=$(header ETag)
for i in 1 2 3 4; do req GET "$N$T?indice=A"; done                 # A: 5
check_header X-Cache-NGINX HIT "repeat: NGINX's HIT"
for i in 1 2; do req GET "$N$T?indice=B"; done                     # B: 2
req HEAD "$N$T?indice=B"                                           # B: 3 (a MISS: the key holds the method)
req HEAD "$N$T?indice=B"                                           # B: 4
check_header X-Cache-NGINX HIT "HEAD repeated: HIT"
if [ -n "$ETAG" ]; then
    req GET "$N$T?indice=C" -H "If-None-Match: $ETAG"              # C: 1, a 304 from the cache
    check_status 304 "a conditional hit: 304 from NGINX's cache"
    check_header X-Cache-NGINX HIT "the 304 is NGINX's"
else
    not_ok "hereproxy sent no ETag to revalidate with"
fi
req GET "$N$T"                                                     # -: 1, its own key (MISS)
req GET "$N$T"                                                     # -: 2, HIT
wait_requests "[5, 4, 1]" A B C
assert_eq "$got" "[5, 4, 1]" "requests per indice equal what the clients sent (A 5, B 4, C 1)"
assert_eq "$(json_field 'd["indices"]["A"]["hits"]')" 4 "A: 4 hits (NGINX's), 1 miss"
assert_eq "$(json_field 'd["indices"]["B"]["hits"]')" 4 "B: 4 hits (3 NGINX's, the first HEAD from hereproxy's own cache)"
# "-" also counts the /metrics requests (cache="none"): its hits only.
assert_eq "$(prom_line 'hereproxy_requests_total{indice="-",cache="hit",code="200"}')" \
    'hereproxy_requests_total{indice="-",cache="hit",code="200"} 2' "no indice: both counted as \"-\" (hereproxy's hit, then NGINX's)"
assert_eq "$(prom_line 'hereproxy_requests_total{indice="C",cache="hit",code="304"}')" \
    'hereproxy_requests_total{indice="C",cache="hit",code="304"} 1' "Prometheus: C's 304 from the cache, code 304"
assert_eq "$(prom_line 'hereproxy_requests_total{indice="A",cache="hit",code="200"}')" \
    'hereproxy_requests_total{indice="A",cache="hit",code="200"} 4' "Prometheus: A's 4 hits, code 200"
req GET "$N$T?indice=D"                                            # D: 1 hit, body bytes counted
BYTES=$(stat -c %s "$(save_body tile.png)")
wait_requests "[1]" D
assert_eq "$(prom_line 'hereproxy_response_bytes_total{indice="D"}')" \
    "hereproxy_response_bytes_total{indice=\"D\"} $BYTES" "D's hit: its body's bytes counted"
assert_eq "$(grep -c "\"event\":\"access\".*\"path\":\"$T\"" "$LOG_A")" 3 \
    "only the three misses reached hereproxy (GET, HEAD, no indice)"
assert_eq "$(grep -c 'NGINX_HITS_FILE: .*waiting for it' "$LOG_A")" 1 "the missing file was logged once"
grep -q "NGINX_HITS_FILE: .*counting NGINX's hits" "$LOG_A" &&
    ok "hereproxy said when it found the file" || not_ok "hereproxy said when it found the file"

# ------------------------------------------------ hit headers, shared entry
check_shared_entry "$N" /here-proxy/base/mc/7/21/10/png "$LOG_A"
# P: the filler and the encoded one; the repeated indice is a 400 before
# admission, counted as _refused (as is the invalid one).
wait_requests "[2, 1, 2]" P Q R
assert_eq "$got" "[2, 1, 2]" "shared key: per-indice counts exact (P 2, Q 1, R 2)"
assert_match "$(json_field 'd["indices"]["_refused"]["requests"]')" '^([2-9]|[1-9][0-9]+)$' \
    "shared key: the two 400s count as _refused"

# $hereproxy_cache_key: the indice goes from the middle of the query too,
# the "&" around it stay (as the conf's map has it), the order counts.
TK=/here-proxy/base/mc/7/22/10/png
req GET "$N$TK?lang=en&indice=K1&scale=2"
check_header X-Cache-NGINX MISS "key: K1 fills lang=en&indice=K1&scale=2"
req GET "$N$TK?lang=en&indice=K2&scale=2"
check_header X-Cache-NGINX HIT "key: K2 hits it (the indice in the middle left out)"
check_header X-Index K2 "key: the hit says K2"
req GET "$N$TK?lang=en&scale=2&indice=K2"
check_header X-Cache-NGINX MISS "key: another parameter order is another entry"
req GET "$N$TK?lang=en&scale=2"
check_header X-Cache-NGINX MISS "key: no indice is not the stripped key (q: against i:)"

# ------------------------------------------------ left to hereproxy
# $hereproxy_cache_bypass: what the stock conf's token variables and
# indice map skip, and a parameter name hereproxy decodes ("%69ndice" is
# its "indice", which NGINX cannot see: before, the second was a HIT
# counted as "-" for a request hereproxy counted as E).
TB=/here-proxy/base/mc/7/23/10/png
req GET "$N$TB?indice=E"                                           # E: 1
check_header X-Cache-NGINX MISS "bypass: E fills the entry"
assert_eq "$(header_count X-Cache-NGINX)" 1 "one X-Cache-NGINX header on a miss (the module's)"
req GET "$N$TB?indice=E"                                           # E: 2
check_header X-Cache-NGINX HIT "bypass: E again is a HIT"
assert_eq "$(header_count X-Cache-NGINX)" 1 "one X-Cache-NGINX header on a hit"
for i in 1 2; do                                                   # E: 4
    req GET "$N$TB?%69ndice=E"
    check_status 200 "an encoded parameter name, request $i: 200"
    check_header X-Cache-NGINX BYPASS "an encoded parameter name, request $i: NGINX's cache skipped"
    check_header X-Index E "an encoded parameter name, request $i: hereproxy's X-Index"
done
req GET "$N$TB?indice=E" -H "X-Proxy-Token: sometoken0123456789"     # E: 5
check_header X-Cache-NGINX BYPASS "a token in the header: NGINX's cache skipped"
req GET "$N$TB?indice=E&token=sometoken0123456789"                 # E: 6
check_header X-Cache-NGINX BYPASS "a token in the query: NGINX's cache skipped"
req GET "$N$TB?indice=E&indice=F"                                  # refused
check_status 400 "a repeated indice: hereproxy's 400"
check_header X-Cache-NGINX BYPASS "a repeated indice: NGINX's cache skipped"
req GET "$N$TB?indice=E"                                           # E: 7
check_header X-Cache-NGINX HIT "after them, E still hits the entry its first request filled"
wait_requests "[7]" E
assert_eq "$got" "[7]" "bypass: E's requests counted once each (2 NGINX hits, 5 by hereproxy)"

# hereproxy_indices: with HEREPROXY_INDICES, only the listed indices may
# take a cached tile; the others reach hereproxy's 403.
start_proxy lst "NGINX_HITS_FILE=$RUN_DIR/hits-lst" "HEREPROXY_INDICES=L1,L2"
module_nginx nginx-module-lst "$PROXY_ADDR" -e "s|$HITS|$RUN_DIR/hits-lst|" \
    -e 's|^\( *\)# hereproxy_indices name1 name2;|\1hereproxy_indices L1 L2;|'
grep -q "^ *hereproxy_indices L1 L2;" "$D/nginx.conf" || die "no hereproxy_indices line to enable"
TL=/here-proxy/base/mc/7/24/10/png
req GET "$N$TL?indice=L1"
check_header X-Cache-NGINX MISS "hereproxy_indices: L1 fills the entry"
req GET "$N$TL?indice=L2"
check_header X-Cache-NGINX HIT "hereproxy_indices: L2, listed, hits it"
for i in 1 2; do
    req GET "$N$TL?indice=L3"
    check_status 403 "hereproxy_indices: L3, not listed, request $i: hereproxy's 403, not the cached tile"
    check_header X-Cache-NGINX BYPASS "hereproxy_indices: L3, request $i: NGINX's cache skipped"
done
req GET "$N$TL?indice=l1"
check_status 403 "hereproxy_indices: l1 is not L1 (hereproxy's indices keep their case): 403"
check_header X-Cache-NGINX BYPASS "hereproxy_indices: l1: NGINX's cache skipped"
req GET "$N$TL"
check_status 403 "hereproxy_indices: no indice (\"-\" not listed): hereproxy's 403"
check_header X-Cache-NGINX BYPASS "hereproxy_indices: no indice: NGINX's cache skipped"
sed 's|hereproxy_indices L1 L2;|hereproxy_indices L1 bad!name;|' "$D/nginx.conf" >"$D/bad-indices.conf"
if nginx -t -p "$D" -c "$D/bad-indices.conf" >"$RUN_DIR/bad-indices.out" 2>&1; then
    not_ok "NGINX refuses an invalid name in hereproxy_indices"
else
    assert_contains "$(cat "$RUN_DIR/bad-indices.out")" 'invalid indice "bad!name"' \
        "NGINX refuses an invalid name in hereproxy_indices, saying which"
fi
N=http://127.0.0.1:$NGINX_MODULE_PORT

# ------------------------------------------------ reload: the same file
kill -HUP "$NGINX_MASTER"
sleep 1     # the old worker finishes, new ones start with the file mapped anew
for i in 1 2 3; do req GET "$N$T?indice=A"; done                   # A: 8
check_header X-Cache-NGINX HIT "after a reload: HIT"
wait_requests "[8]" A
assert_eq "$got" "[8]" "after a reload: hits still counted (A 8)"

# ------------------------------------------------ hereproxy restarted
# Counts already in the file when hereproxy starts are not counted again.
start_proxy b "NGINX_HITS_FILE=$HITS"
LOG_B=$PROXY_LOG
module_nginx nginx-module-b "$PROXY_ADDR"   # the same file, a second NGINX
for i in 1 2; do req GET "$N$T?indice=A"; done                     # b: miss + hit
wait_requests "[2]" A
assert_eq "$got" "[2]" "a second hereproxy counts only what came after its start (A 2)"

check_log_json "$LOG_A" "proxy log is JSON lines" 3
check_no_key_leak "no key in responses or logs" "$LOG_A" "$LOG_B"

# ------------------------------------------------ a file of another layout
BAD=$RUN_DIR/bad-hits
head -c 1000 /dev/urandom >"$BAD"
sed "s|hereproxy_hits_file $HITS;|hereproxy_hits_file $BAD;|" "$RUN_DIR/nginx-module/nginx.conf" >"$RUN_DIR/bad.conf"
if nginx -t -p "$RUN_DIR/nginx-module" -c "$RUN_DIR/bad.conf" >"$RUN_DIR/bad.out" 2>&1; then
    not_ok "NGINX refuses a file that is not a counters file"
else
    assert_contains "$(cat "$RUN_DIR/bad.out")" "has 1000 bytes" "NGINX refuses a file that is not a counters file, saying why"
fi
assert_eq "$(stat -c %s "$BAD")" 1000 "the refused file is left as it was"
finish
