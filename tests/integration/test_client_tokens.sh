#!/bin/bash
# Who may ask: HEREPROXY_CLIENT_TOKENS (or a tokens file) makes a valid
# token (header X-Proxy-Token or query token) a must, and the token decides
# the indice; the token is never forwarded or logged.  HEREPROXY_INDICES
# lets only the listed indices in.  Origins outside HEREPROXY_CORS_ORIGINS
# get no CORS grant.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

TOKA="tokA-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
TOKB="tokB-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
start_upstream
start_proxy tokens "HEREPROXY_CLIENT_TOKENS=$TOKA:indiceA, $TOKB:indiceB" \
    HEREPROXY_CORS_ORIGINS=https://maps.example.com
PLOG=$PROXY_LOG
start_nginx tokens "$PROXY_ADDR"
P=$NGINX_URL/here-proxy
T=/base/mc/3/2/1/png

before=$(upstream_requests)
req GET "$P$T"
check_json_error 401 "no token -> 401 JSON"
req GET "$P$T?indice=indiceA"
check_json_error 401 "an indice without a token -> 401 JSON"
req GET "$P$T" -H "X-Proxy-Token: wrong-token"
check_json_error 401 "an unknown token in X-Proxy-Token -> 401 JSON"
req GET "$P$T?token=${TOKA}x"
check_json_error 401 "a token with an extra byte -> 401 JSON"
req GET "$P$T?token=${TOKA%?}"
check_json_error 401 "a token one byte short -> 401 JSON"
req GET "$P/copyright"
check_json_error 401 "metadata without a token -> 401 JSON"
assert_eq "$(upstream_requests)" "$before" "refused requests never reached the upstream"

req GET "$P$T" -H "X-Proxy-Token: $TOKA"
check_status 200 "X-Proxy-Token A -> 200"
check_header X-Index indiceA "token A decides the indice (indiceA)"
req GET "$P$T?token=$TOKB&indice=indiceA"
check_status 200 "query token B -> 200"
check_header X-Index indiceB "token B decides the indice, whatever the query says"
check_header X-Cache HIT "the token is not part of the cache key"
req GET "$P/copyright?token=$TOKA"
check_status 200 "metadata with a token -> 200"
req GET "$P$T?token=$TOKA&token=$TOKB"
check_json_error 400 "token given twice -> 400 JSON"
req GET "$NGINX_URL/healthz"
check_status 200 "/healthz needs no token"

# CORS: only the configured origin is granted
req GET "$P$T" -H "X-Proxy-Token: $TOKA" -H 'Origin: https://maps.example.com'
check_header Access-Control-Allow-Origin https://maps.example.com "a listed origin gets its CORS grant"
req GET "$P$T" -H "X-Proxy-Token: $TOKA" -H 'Origin: https://evil.example'
check_status 200 "an unlisted origin still gets the tile (CORS is the browser's check)"
assert_eq "$(header Access-Control-Allow-Origin)" "" "an unlisted origin gets no Access-Control-Allow-Origin"
req OPTIONS "$P$T" -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: GET'
assert_eq "$(header Access-Control-Allow-Origin)" "" "a preflight from an unlisted origin gets no grant"
req OPTIONS "$P$T" -H 'Origin: https://maps.example.com' -H 'Access-Control-Request-Method: GET'
check_header Access-Control-Allow-Origin https://maps.example.com "a preflight from a listed origin gets its grant"

upstream_record_check '"token" not in r["query"] and "x-proxy-token" not in r["headers"]' \
    "the token is never forwarded upstream"
if grep -qF -e "$TOKA" -e "$TOKB" "$PLOG"; then
    not_ok "the tokens are not in the proxy log" "$(grep -F -e "$TOKA" -e "$TOKB" "$PLOG" | head -2)"
else
    ok "the tokens are not in the proxy log"
fi

# ------------------------------------------- tokens file and index allow-list
printf '# clients\n%s:indiceA\n%s:blocked\n' "$TOKA" "$TOKB" >"$RUN_DIR/tokens"
start_proxy file "HEREPROXY_CLIENT_TOKENS_FILE=$RUN_DIR/tokens" "HEREPROXY_INDICES=indiceA,other"
start_nginx file "$PROXY_ADDR"
F=$NGINX_URL/here-proxy
req GET "$F$T" -H "X-Proxy-Token: $TOKA"
check_status 200 "tokens file: token A -> 200"
check_header X-Index indiceA "tokens file: token A decides the indice"
before=$(upstream_requests)
req GET "$F/base/mc/3/2/2/png" -H "X-Proxy-Token: $TOKB"
check_json_error 403 "HEREPROXY_INDICES: a token whose indice is not listed -> 403 JSON"
assert_eq "$(upstream_requests)" "$before" "the 403 never reached the upstream"

start_proxy allow HEREPROXY_INDICES=indiceA,other
start_nginx allow "$PROXY_ADDR"
A=$NGINX_URL/here-proxy
req GET "$A$T?indice=other"
check_status 200 "HEREPROXY_INDICES without tokens: a listed indice -> 200"
req GET "$A$T?indice=nope"
check_json_error 403 "HEREPROXY_INDICES: an unlisted indice -> 403 JSON"
req GET "$A$T"
check_json_error 403 "HEREPROXY_INDICES: no indice -> 403 JSON"

# bad lists are refused at startup, without quoting the tokens
run_out=$(env "HERE_API_KEY=$SERVER_KEY" "HEREPROXY_CLIENT_TOKENS=secretNOINDICE" "$HEREPROXY_BIN" --check-config 2>&1)
assert_contains "$run_out" "HEREPROXY_CLIENT_TOKENS" "a token without an indice is a configuration error"
assert_not_contains "$run_out" secretNOINDICE "the error does not quote the token"
run_out=$(env "HERE_API_KEY=$SERVER_KEY" "HEREPROXY_CLIENT_TOKENS=$TOKA:indiceA" "$HEREPROXY_BIN" --check-config 2>&1)
assert_not_contains "$run_out" "$TOKA" "--check-config redacts the tokens"
finish
