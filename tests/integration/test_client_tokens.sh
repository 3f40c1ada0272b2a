#!/bin/bash
# Who may ask: HEREPROXY_CLIENT_TOKENS (or a tokens file) makes a valid
# token (header X-Proxy-Token or query token) a must, and the token decides
# the indice; the token is never forwarded or logged.  HEREPROXY_INDICES
# lets only the listed indices in.  Origins outside HEREPROXY_CORS_ORIGINS
# get no CORS grant.  A preflight allows X-Proxy-Token when tokens are on.
# A tokens file of 10,000 tokens loads (no 4 KiB cap) and each token
# works; a token given twice is a configuration error.
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

# A page sends its token in X-Proxy-Token (web servers log query strings):
# the preflight a browser makes for that header allows it, and the fetch
# that follows, as the browser sends it, works.
req OPTIONS "$P$T" -H 'Origin: https://maps.example.com' -H 'Access-Control-Request-Method: GET' \
    -H 'Access-Control-Request-Headers: x-proxy-token'
check_status 204 "preflight for X-Proxy-Token: 204"
assert_match "$(header Access-Control-Allow-Headers)" '(^|, )X-Proxy-Token(,|$)' \
    "tokens on: the preflight allows X-Proxy-Token"
req GET "$P/base/mc/3/2/3/png" -H 'Origin: https://maps.example.com' -H "X-Proxy-Token: $TOKB" \
    -H 'Sec-Fetch-Mode: cors' -H 'Accept: image/avif,image/webp,image/png,*/*'
check_status 200 "a cross-origin fetch with X-Proxy-Token: 200"
check_header Access-Control-Allow-Origin https://maps.example.com "the fetch is granted to the page's origin"
check_header X-Index indiceB "the header's token decides the indice"

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
req OPTIONS "$A$T" -H 'Origin: https://maps.example.com' -H 'Access-Control-Request-Method: GET'
assert_not_contains "$(header Access-Control-Allow-Headers)" X-Proxy-Token \
    "tokens off: the preflight does not offer X-Proxy-Token"
req GET "$A$T"
check_json_error 403 "HEREPROXY_INDICES: no indice -> 403 JSON"

# bad lists are refused at startup, without quoting the tokens
run_out=$(env "HERE_API_KEY=$SERVER_KEY" "HEREPROXY_CLIENT_TOKENS=secretNOINDICE" "$HEREPROXY_BIN" --check-config 2>&1)
assert_contains "$run_out" "HEREPROXY_CLIENT_TOKENS" "a token without an indice is a configuration error"
assert_not_contains "$run_out" secretNOINDICE "the error does not quote the token"
run_out=$(env "HERE_API_KEY=$SERVER_KEY" "HEREPROXY_CLIENT_TOKENS=$TOKA:indiceA" "$HEREPROXY_BIN" --check-config 2>&1)
assert_not_contains "$run_out" "$TOKA" "--check-config redacts the tokens"

# ------------------------------------------- 10,000 tokens from a file
# No 4 KiB cap: a list of 10,000 tokens loads, the last one works, an
# unknown one is 401; a token given twice is an error naming its line.
python3 - "$RUN_DIR/many-tokens" <<'PYEOF'
import secrets, sys
with open(sys.argv[1], "w") as f:
    f.write("# 10,000 clients\n")
    for i in range(10000):
        f.write("many-%05d-%s:client%d\n" % (i, secrets.token_hex(12), i % 50))
PYEOF
LAST=$(tail -n 1 "$RUN_DIR/many-tokens")
LAST_TOKEN=${LAST%%:*}
FIRST=$(sed -n 2p "$RUN_DIR/many-tokens")
assert_eq "$(grep -c '^many-' "$RUN_DIR/many-tokens")" 10000 "the tokens file holds 10,000 tokens ($(wc -c <"$RUN_DIR/many-tokens") bytes)"
run_out=$(env "HERE_API_KEY=$SERVER_KEY" "HEREPROXY_CLIENT_TOKENS_FILE=$RUN_DIR/many-tokens" "$HEREPROXY_BIN" --check-config 2>&1)
assert_contains "$run_out" "# configuration OK" "--check-config: 10,000 tokens load"
assert_contains "$run_out" "HEREPROXY_CLIENT_TOKENS=<redacted>" "--check-config: the tokens are redacted"
assert_not_contains "$run_out" "many-" "--check-config quotes no token"
start_proxy many "HEREPROXY_CLIENT_TOKENS_FILE=$RUN_DIR/many-tokens"
start_nginx many "$PROXY_ADDR"
M=$NGINX_URL/here-proxy
req GET "$M$T" -H "X-Proxy-Token: $LAST_TOKEN"
check_status 200 "10,000 tokens: the last one -> 200"
check_header X-Index "${LAST##*:}" "10,000 tokens: the last one decides its indice"
req GET "$M$T?token=${FIRST%%:*}"
check_status 200 "10,000 tokens: the first one (query) -> 200"
req GET "$M$T" -H "X-Proxy-Token: ${LAST_TOKEN%?}x"
check_json_error 401 "10,000 tokens: an unknown one -> 401 JSON"
assert_eq "$(grep -c -e "$LAST_TOKEN" -e "${FIRST%%:*}" "$PROXY_LOG")" 0 "10,000 tokens: none in the proxy log"

# SIGHUP reads the file again into a new table, swapped in whole; a file
# that does not load (a token twice) keeps the table in force.
wait_reloads() { # N EVENT: until the proxy logged N EVENT events (10 s)
    local deadline=$((SECONDS + 10))
    until [ "$(log_events "$PROXY_LOG" "$2")" -ge "$1" ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
}
NEWTOK="reloaded-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
{ sed -n 2,5000p "$RUN_DIR/many-tokens"; echo "$NEWTOK:fresh"; } >"$RUN_DIR/many-tokens.new"
mv "$RUN_DIR/many-tokens.new" "$RUN_DIR/many-tokens"
kill -HUP "$PROXY_PID"
wait_reloads 1 reload
assert_eq "$(log_events "$PROXY_LOG" reload)" 1 "SIGHUP: the tokens file is read again"
req GET "$M$T" -H "X-Proxy-Token: $NEWTOK"
check_status 200 "after the reload: the new token -> 200"
check_header X-Index fresh "after the reload: the new token's indice"
req GET "$M$T" -H "X-Proxy-Token: $LAST_TOKEN"
check_json_error 401 "after the reload: a token no longer in the file -> 401"
req GET "$M$T?token=${FIRST%%:*}"
check_status 200 "after the reload: a token still in the file -> 200"
echo "$NEWTOK:again" >>"$RUN_DIR/many-tokens"
kill -HUP "$PROXY_PID"
wait_reloads 1 reload_failed
assert_eq "$(log_events "$PROXY_LOG" reload_failed)" 1 "SIGHUP with a token twice: the reload fails"
assert_not_contains "$(grep '"event":"reload_failed"' "$PROXY_LOG")" "$NEWTOK" "the failed reload does not quote the token"
req GET "$M$T" -H "X-Proxy-Token: $NEWTOK"
check_status 200 "after the failed reload: the table in force still answers"
check_header X-Index fresh "after the failed reload: with the indice it had"
{ sed -n 1,5p "$RUN_DIR/many-tokens"; echo "$FIRST"; } >"$RUN_DIR/dup-tokens"
run_out=$(env "HERE_API_KEY=$SERVER_KEY" "HEREPROXY_CLIENT_TOKENS_FILE=$RUN_DIR/dup-tokens" "$HEREPROXY_BIN" --check-config 2>&1)
assert_contains "$run_out" "entry 6 repeats" "a token twice in the file is an error naming line 6"
assert_not_contains "$run_out" "${FIRST%%:*}" "the error does not quote the token"
finish
