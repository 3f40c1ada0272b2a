#!/bin/bash
# Shared caches downstream keep clients apart: what a cache in front
# (the shipped NGINX cache layer, conf/nginx/hereproxy-cache.conf, and a
# "CDN stand-in", a plain NGINX proxy_cache with its default settings in
# front of that) stores for one client is never handed to another it was
# not meant for.
#
#  1. An origin allow-list (HEREPROXY_CORS_ORIGINS=https://maps.example.com):
#     a request without Origin fills the cache; a page of the allowed origin
#     must still get Access-Control-Allow-Origin (canvas maps cannot read
#     the tile without it).  Every proxy response varies on Origin, those
#     without a grant too; NGINX honours Vary in its cache.  With "*" the
#     headers are the same for everyone: no Vary, one entry for all.
#  2. Client tokens: tiles are Cache-Control: private, so the CDN stand-in
#     never hands a tile fetched with a token to a request without one;
#     NGINX's fastcgi_cache does not store them either (even with the
#     cache layer's token bypass taken out), and the shipped cache layer
#     still skips its cache for token requests, as documented.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

ORIGIN=https://maps.example.com

# cdn_nginx NAME BACKEND_URL: NGINX with proxy_cache, defaults only (it
# caches by Cache-Control and Expires, honours Vary, stores no "private"),
# in front of BACKEND_URL.  Sets C (its URL).
cdn_nginx() {
    local name=$1 backend=$2 d=$RUN_DIR/$1 port
    mkdir -p "$d/tmp" "$d/cache"
    port=$(free_port)
    {
        _nginx_main_conf "$d"
        cat <<EOF
    proxy_cache_path $d/cache keys_zone=cdn:1m;
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass $backend;
            proxy_cache cdn;
            add_header X-CDN-Cache \$upstream_cache_status always;
        }
    }
}
EOF
    } >"$d/nginx.conf"
    _run_nginx "$name" "$d" "$port"
    C=http://127.0.0.1:$port
}

# vary_has_origin: the last response's Vary names Origin.
vary_has_origin() {
    grep -i '^Vary:' "$HTTP_HEADERS_FILE" | grep -qi 'origin'
}

start_upstream

# ------------------------------------------------ 1. an origin allow-list
start_proxy cors "HEREPROXY_CORS_ORIGINS=$ORIGIN"
start_nginx_cache cache-cors "$PROXY_ADDR"
N=$NGINX_URL
cdn_nginx cdn-cors "$N"

# through the shipped cache layer
T=/here-proxy/base/mc/6/1/1/png
req GET "$N$T?indice=a"
check_status 200 "cache layer: a tile without Origin: 200"
check_header X-Cache-NGINX MISS "cache layer: the request without Origin fills NGINX's cache"
assert_eq "$(header Access-Control-Allow-Origin)" "" "cache layer: no Origin, no grant"
vary_has_origin && ok "cache layer: no grant, still Vary: Origin" ||
    not_ok "cache layer: no grant, still Vary: Origin" "$(_last_response)"
req GET "$N$T?indice=a" -H "Origin: $ORIGIN"
check_status 200 "cache layer: the allowed origin: 200"
check_header Access-Control-Allow-Origin "$ORIGIN" \
    "cache layer: the allowed origin gets its grant, not the stored copy without it"
req GET "$N$T?indice=a" -H "Origin: $ORIGIN"
check_header X-Cache-NGINX HIT "cache layer: the allowed origin's own copy is a hit"
check_header Access-Control-Allow-Origin "$ORIGIN" "cache layer: and carries the grant"
req GET "$N$T?indice=a" -H "Origin: https://evil.example"
check_status 200 "cache layer: another origin: 200"
assert_eq "$(header Access-Control-Allow-Origin)" "" \
    "cache layer: another origin never gets the allowed origin's stored grant"
req GET "$N$T?indice=a"
assert_eq "$(header Access-Control-Allow-Origin)" "" "cache layer: without Origin, still no grant"
assert_eq "$(upstream_path_requests /v3/base/mc/6/1/1/png)" 1 "cache layer: HERE asked once for all of them"

# Errors and preflights vary too: their CORS headers depend on Origin.
req GET "$N/here-proxy/base/mc/6/1/1/gif?indice=a"
check_status 400 "cache layer: a bad tile: 400"
vary_has_origin && ok "cache layer: an error varies on Origin" ||
    not_ok "cache layer: an error varies on Origin" "$(_last_response)"
req OPTIONS "$N$T" -H "Origin: https://evil.example" -H "Access-Control-Request-Method: GET"
assert_eq "$(header Access-Control-Allow-Origin)" "" "preflight of another origin: no grant"
vary_has_origin && ok "preflight without a grant varies on Origin" ||
    not_ok "preflight without a grant varies on Origin" "$(_last_response)"
req OPTIONS "$N$T" -H "Origin: $ORIGIN" -H "Access-Control-Request-Method: GET"
check_header Access-Control-Allow-Origin "$ORIGIN" "preflight of the allowed origin: granted"
vary_has_origin && ok "preflight with a grant varies on Origin" ||
    not_ok "preflight with a grant varies on Origin" "$(_last_response)"

# through the CDN stand-in in front of the cache layer
T=/here-proxy/base/mc/6/2/1/png
req GET "$C$T?indice=a"
check_status 200 "CDN: a tile without Origin: 200"
check_header X-CDN-Cache MISS "CDN: the request without Origin fills the CDN's cache"
req GET "$C$T?indice=a"
check_header X-CDN-Cache HIT "CDN: the CDN caches tiles (a repeat is its hit)"
req GET "$C$T?indice=a" -H "Origin: $ORIGIN"
check_status 200 "CDN: the allowed origin: 200"
check_header Access-Control-Allow-Origin "$ORIGIN" \
    "CDN: the allowed origin gets its grant, not the copy a curl got"
req GET "$C$T?indice=a" -H "Origin: $ORIGIN"
check_header X-CDN-Cache HIT "CDN: the allowed origin's copy is a CDN hit"
check_header Access-Control-Allow-Origin "$ORIGIN" "CDN: with the grant"

# "*": the same headers for everyone, so no Vary and one entry for all.
start_proxy star
start_nginx_cache cache-star "$PROXY_ADDR"
S=$NGINX_URL
T=/here-proxy/base/mc/6/3/1/png
req GET "$S$T?indice=a"
check_header X-Cache-NGINX MISS "*: the first request fills the cache"
if vary_has_origin; then not_ok "*: no Vary: Origin" "$(_last_response)"; else ok "*: no Vary: Origin"; fi
req GET "$S$T?indice=a" -H "Origin: $ORIGIN"
check_header X-Cache-NGINX HIT "*: a page's request is a hit on the same entry"
check_header Access-Control-Allow-Origin "*" "*: and carries Access-Control-Allow-Origin: *"

# ------------------------------------------------ 2. client tokens
TOK=sharedcachetoken0123456789
start_proxy tok "HEREPROXY_CLIENT_TOKENS=$TOK:TK"
TOK_PROXY=$PROXY_ADDR
start_nginx_cache cache-tok "$TOK_PROXY"
cdn_nginx cdn-tok "$NGINX_URL"
T=/here-proxy/base/mc/6/4/1/png
req GET "$C$T" -H "X-Proxy-Token: $TOK"
check_status 200 "tokens, CDN: a tile with the token: 200"
assert_match "$(header Cache-Control)" '^private, max-age=[0-9]+$' \
    "tokens: the tile is Cache-Control: private, max-age=N"
check_header X-Cache-NGINX BYPASS "tokens: the shipped cache layer still skips its cache for a token request"
req GET "$C$T" -H "X-Proxy-Token: $TOK"
check_status 200 "tokens, CDN: again with the token: 200"
check_header X-CDN-Cache MISS "tokens, CDN: the private tile was not stored"
req GET "$C$T"
check_json_error 401 "tokens, CDN: the same URL without a token: 401, never the token's tile"
req HEAD "$C$T"
check_status 401 "tokens, CDN: HEAD without a token: 401"
req GET "$C/here-proxy/copyright" -H "X-Proxy-Token: $TOK"
check_status 200 "tokens: metadata with the token: 200"
assert_match "$(header Cache-Control)" '^private, max-age=[0-9]+$' "tokens: metadata is private too"
req GET "$C/here-proxy/copyright"
check_json_error 401 "tokens, CDN: metadata without a token: 401"

# NGINX's fastcgi_cache stores no "private" response itself: with the
# cache layer's token bypass taken out, a token tile is still not handed
# to a request without one.
start_nginx_cache cache-tok-nobypass "$TOK_PROXY" \
    -e '/^ *fastcgi_cache_bypass /,/;/d' -e '/^ *fastcgi_no_cache /,/;/d'
if grep -qE '^ *fastcgi_(cache_bypass|no_cache) ' "$NGINX_DIR/nginx.conf"; then
    die "the token bypass is still in $NGINX_DIR/nginx.conf"
fi
B=$NGINX_URL
T=/here-proxy/base/mc/6/5/1/png
req GET "$B$T" -H "X-Proxy-Token: $TOK"
check_status 200 "no bypass: a tile with the token: 200"
check_header X-Cache-NGINX MISS "no bypass: the token request went through NGINX's cache"
req GET "$B$T" -H "X-Proxy-Token: $TOK"
check_header X-Cache-NGINX MISS "no bypass: NGINX did not store the private tile"
req GET "$B$T"
check_json_error 401 "no bypass: without a token: 401, not the stored tile"
finish
