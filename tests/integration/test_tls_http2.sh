#!/bin/bash
# The proxy talks to an HTTPS upstream (NGINX with a private CA, TLS and
# HTTP/2 in front of the local HERE imitation): HTTP/2 is used and the
# certificate is checked.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi openssl curl python3
require_bin

start_upstream
start_tls_upstream

# ------------------------------------------------ trusted CA: 200 over HTTP/2
start_proxy trusted "HERE_BASE_URL=$TLS_URL/v3" "HERE_CA_FILE=$TLS_CA"
LOG_T=$PROXY_LOG
start_nginx trusted "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/2/1/1/png?indice=tls"
check_status 200 "with HERE_CA_FILE: tile over TLS 200"
assert_match "$(header Content-Type)" '^image/png' "with HERE_CA_FILE: Content-Type image/png"
check_header X-Cache MISS "with HERE_CA_FILE: X-Cache MISS"
assert_eq "$(upstream_requests)" 1 "the request went through the TLS front to the upstream"
assert_match "$(grep '/v3/base/mc/2/1/1/png' "$TLS_ACCESS_LOG" | head -n 1)" ' HTTP/2\.0 200 ' \
    "TLS front's access log shows the proxy's request as HTTP/2.0"
req GET "$NGINX_URL/here-proxy/copyright"
check_status 200 "with HERE_CA_FILE: metadata over TLS 200"
assert_match "$(grep '/v3/copyright' "$TLS_ACCESS_LOG" | head -n 1)" ' HTTP/2\.0 200 ' \
    "metadata request used HTTP/2.0 too"
check_log_json "$LOG_T" "proxy log is JSON lines with complete access lines" 2

# ------------------------------------------------ untrusted CA: 502
before=$(upstream_requests)
start_proxy untrusted "HERE_BASE_URL=$TLS_URL/v3"
LOG_U=$PROXY_LOG
start_nginx untrusted "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/2/1/2/png?indice=untrusted"
check_json_error 502 "without HERE_CA_FILE (CA untrusted): tile -> 502 JSON"
assert_eq "$(upstream_requests)" "$before" "untrusted certificate: nothing reached the upstream"

# ------------------------------------------------ wrong name: 502
# 127.0.0.2 reaches the same TLS front, but the certificate names only
# 127.0.0.1 and localhost: host name verification must refuse it.
start_proxy wrongname "HERE_BASE_URL=https://127.0.0.2:$TLS_PORT/v3" "HERE_CA_FILE=$TLS_CA"
LOG_W=$PROXY_LOG
start_nginx wrongname "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/base/mc/2/1/3/png"
check_json_error 502 "certificate not naming 127.0.0.2: tile -> 502 JSON"
assert_eq "$(upstream_requests)" "$before" "wrong name: nothing reached the upstream"

check_no_key_leak "no key in responses or logs" "$LOG_T" "$LOG_U" "$LOG_W"
finish
