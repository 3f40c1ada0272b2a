#!/bin/bash
# conf/nginx/hereproxy-cache.conf: NGINX's fastcgi_cache in front. A repeat
# request is answered by NGINX without reaching hereproxy, and NGINX's
# JSON access lines over syslog (NGINX_LOG_SOCKET) keep hereproxy's
# per-indice metrics equal to what the clients sent.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

SOCK=$RUN_DIR/nginx-log.sock
start_upstream
start_proxy a "NGINX_LOG_SOCKET=$SOCK"
LOG_A=$PROXY_LOG
[ -S "$SOCK" ] && ok "NGINX_LOG_SOCKET: the socket exists" || not_ok "NGINX_LOG_SOCKET: the socket exists"

d=$RUN_DIR/nginx-cache
src=$abs_top_srcdir/conf/nginx/hereproxy-cache.conf
mkdir -p "$d/tmp" "$d/cache"
cp /etc/nginx/fastcgi_params "$d/fastcgi_params" || die "no /etc/nginx/fastcgi_params"
NGINX_PORT=$(free_port)
{
    _nginx_main_conf "$d"
    sed -e "s|127\.0\.0\.1:9000|$PROXY_ADDR|g" \
        -e "s|listen 127\.0\.0\.1:8080|listen 127.0.0.1:$NGINX_PORT|" \
        -e "s|/var/cache/nginx/hereproxy|$d/cache|" \
        -e "s|unix:/run/hereproxy/nginx-log.sock|unix:$SOCK|" "$src" | sed 's/^/    /'
    echo "}"
} >"$d/nginx.conf"
grep -q "unix:$SOCK" "$d/nginx.conf" || die "hereproxy-cache.conf has no syslog socket to rewrite"
_run_nginx nginx-cache "$d" "$NGINX_PORT"
N=http://127.0.0.1:$NGINX_PORT

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
sent_a=6 sent_b=4 sent_c=2
deadline=$((SECONDS + 10))
while :; do
    req GET "$N/metrics"
    got=$(json_field '[d["indices"].get(k, {}).get("requests") for k in ("A", "B", "C")]')
    [ "$got" = "[$sent_a, $sent_b, $sent_c]" ] || [ "$SECONDS" -ge "$deadline" ] && break
    sleep 0.2
done
check_status 200 "/metrics through NGINX 200"
assert_eq "$got" "[$sent_a, $sent_b, $sent_c]" "/metrics requests per indice equal what the clients sent (A 6, B 4, C 2)"
assert_eq "$(json_field 'd["indices"]["A"]["hits"]')" 5 "/metrics: A has 5 hits (NGINX's), 1 miss"
assert_eq "$(json_field 'd["indices"]["A"]["misses"]')" 1 "/metrics: A's one miss"
# The key holds the method: B's first GET and its HEAD reached hereproxy.
assert_eq "$(proxy_lines /here-proxy/base/mc/7/11/10/png)" 2 "B: hereproxy saw two of B's four requests"
req GET "$N/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_requests_total{indice="A",cache="hit",code="200"} 5' "Prometheus: A's 5 hits"
sleep 0.5
req GET "$N/metrics"
assert_eq "$(json_field 'd["indices"]["A"]["requests"]')" $sent_a "/metrics: no double counting after the lines settle"

check_log_json "$LOG_A" "proxy log is JSON lines" 3
check_no_key_leak "no key in responses or logs" "$LOG_A"
finish
