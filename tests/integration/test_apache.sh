#!/bin/bash
# Core checks through Apache 2.4 mod_proxy_fcgi (the shipped
# conf/apache/hereproxy.conf) in front of spawn-fcgi + hereproxy.
. "$(dirname "$0")/lib.sh"

require_cmds apache2 spawn-fcgi curl python3
require_bin

start_upstream
ADMIN="apache-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
start_proxy main "HEREPROXY_ADMIN_TOKEN=$ADMIN"
PLOG=$PROXY_LOG
start_apache main "$PROXY_ADDR"
P=$APACHE_URL/here-proxy

req GET "$P/base/mc/3/4/5/png?indice=apache_1&apiKey=clientkey"
check_status 200 "apache: tile 200"
check_header X-Cache MISS "apache: first request X-Cache MISS"
check_header X-Index apache_1 "apache: X-Index is the indice given"
assert_match "$(header Content-Type)" '^image/png' "apache: Content-Type image/png"
assert_match "$(header Cache-Control)" '^public, *max-age=[0-9]+$' "apache: Cache-Control public, max-age=N"
ETAG=$(header ETag)
assert_match "$ETAG" '.' "apache: ETag present"
BODY1=$(save_body tile1.png)

req GET "$P/base/mc/3/4/5/png?indice=apache_2"
check_status 200 "apache: second request 200"
check_header X-Cache HIT "apache: second request X-Cache HIT"
check_header X-Index apache_2 "apache: X-Index on the HIT"
if cmp -s "$BODY1" "$HTTP_BODY_FILE"; then ok "apache: HIT body identical"; else not_ok "apache: HIT body identical"; fi
assert_eq "$(upstream_requests)" 1 "apache: upstream saw the tile once"

req GET "$P/base/mc/3/4/5/png" -H "If-None-Match: $ETAG"
check_status 304 "apache: If-None-Match -> 304"

req GET "$P/mc/3/4/5/png"
check_status 200 "apache: short form 200"

before=$(upstream_requests)
req GET "$P/base/mc/1/0/0/png?foo=1"
check_json_error 400 "apache: unknown parameter -> 400 JSON"
assert_contains "$(json_field 'd.get("error")')" foo "apache: the 400 names foo"
req GET "$P/base/mc/21/0/0/png"
check_json_error 400 "apache: z=21 -> 400 JSON"
assert_eq "$(upstream_requests)" "$before" "apache: 400s never reached the upstream"

req GET "$P/unknown"
check_json_error 404 "apache: unknown path -> 404 JSON"
req POST "$P/base/mc/1/0/0/png"
check_json_error 405 "apache: POST -> 405 JSON"

req GET "$APACHE_URL/healthz"
check_status 200 "apache: /healthz 200"
assert_eq "$(json_field 'd.get("status")')" ok 'apache: /healthz body {"status":"ok"}'
req GET "$APACHE_URL/readyz"
check_status 200 "apache: /readyz 200 (no memcached configured)"

req GET "$P/copyright"
check_status 200 "apache: copyright 200"
assert_match "$(header Content-Type)" '^application/json' "apache: copyright is JSON"

# The shipped <Location "/admin/"> sets CGIPassAuth On: the Bearer token
# must reach hereproxy.
req GET "$P/base/mc/3/1/1/png"
req POST "$APACHE_URL/admin/purge/here-proxy/base/mc/3/1/1/png" -H "Authorization: Bearer $ADMIN"
check_status 200 "apache: POST /admin/purge with the Bearer token (CGIPassAuth On)"
assert_eq "$(json_field 'd["in_memory"]')" true "apache: the purged tile was in memory"
req POST "$APACHE_URL/admin/purge?all=1"
check_json_error 401 "apache: POST /admin/purge without the token: 401"

upstream_record_check 'r["query"].get("apiKey") == ["'"$SERVER_KEY"'"] and "indice" not in r["query"]' \
    "apache: upstream got the server key and no indice"
check_log_json "$PLOG" "apache: proxy log is JSON lines with complete access lines" 8
check_no_key_leak "apache: no key in responses or the proxy log" "$PLOG"
finish
