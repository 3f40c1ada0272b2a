#!/bin/bash
# HERE platform credentials (HERE_CREDENTIALS_FILE): the proxy trades them
# for a bearer token at the local upstream's token endpoint, which checks
# the OAuth 1.0a HMAC-SHA256 signature with Python's own hmac; tiles go
# with Authorization: Bearer and no apiKey. Many misses at start: one token
# request. A token HERE refuses (401) is renewed once and the tile retried;
# tokens are renewed before they expire; a failing token endpoint makes
# /readyz 503 and misses 503 until it recovers; hostile token answers (CR
# LF, too long, not bearer, no lifetime, HTML) are refused. A wrong secret:
# refused, said so. A key and credentials both: a configuration error. The
# secret and the tokens appear in no file the proxy, NGINX or a client
# wrote.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

CREDS=$RUN_DIR/credentials.properties
KEY_ID=hpKeyId-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
# The secret holds $SERVER_KEY: the teardown scan of every file looks for it.
SECRET="sec/+=&-$SERVER_KEY"
# Tokens of an hour first (no renewal to count during the first checks,
# however slow the build), then of 6 s from the refusal on.
LIFETIME=6

metric() { # SERIES: its value in /metrics/prometheus of proxy $1's NGINX
    req GET "$N/metrics/prometheus"
    prom_value "$1"
}
token_requests() { upstream_stat "s['token_requests']"; }
miss() { # a new tile each time: Z/X/Y from a counter
    MISS_N=$((${MISS_N:-0} + 1))
    req GET "$N/here-proxy/base/mc/12/$MISS_N/7/png?indice=oauth" "$@"
}

start_upstream --credentials-file "$CREDS" --token-lifetime 3600
write_credentials "$CREDS" "$KEY_ID" "$SECRET"

# ------------------------------------------------------------ --check-config
CLI_OUT=$RUN_DIR/cli.out
env HERE_CREDENTIALS_FILE="$CREDS" "$HEREPROXY_BIN" --check-config >"$CLI_OUT" 2>&1
assert_eq "$?" 0 "--check-config with HERE_CREDENTIALS_FILE exits 0"
assert_contains "$(cat "$CLI_OUT")" "HERE_CREDENTIALS_FILE=$CREDS" "--check-config prints the file's path"
env HERE_CREDENTIALS_FILE="$CREDS" HERE_API_KEY="$SERVER_KEY" "$HEREPROXY_BIN" --check-config >>"$CLI_OUT" 2>&1
assert_eq "$?" 1 "--check-config with a key and credentials exits 1"
assert_contains "$(tail -n 1 "$CLI_OUT")" "HERE_API_KEY (or HERE_API_KEY_FILE) and HERE_CREDENTIALS_FILE are both set" \
    "a key and credentials: the message says both are set"
printf 'here.access.key.id = a\nhere.access.key.secret = %s\\\n  more\n' "$SECRET" >"$RUN_DIR/bad.properties"
key_exempt "$RUN_DIR/bad.properties"
env HERE_CREDENTIALS_FILE="$RUN_DIR/bad.properties" "$HEREPROXY_BIN" --check-config >>"$CLI_OUT" 2>&1
assert_eq "$?" 1 "--check-config with a malformed credentials file exits 1"
assert_contains "$(tail -n 1 "$CLI_OUT")" "$RUN_DIR/bad.properties:2: backslash" \
    "a malformed file: the message names the file and the line"

# ------------------------------------------------- many misses, one token
start_proxy oauth HERE_API_KEY= "HERE_CREDENTIALS_FILE=$CREDS" CACHE_MAXSIZE=0
LOG=$PROXY_LOG
start_nginx oauth "$PROXY_ADDR"
N=$NGINX_URL
URLS=()
for i in $(seq 1 16); do URLS+=("$N/here-proxy/base/mc/10/$i/3/png?indice=oauth"); done
fetch_parallel "$RUN_DIR/burst" "${URLS[@]}"
assert_eq "$(results_eval "$RUN_DIR/burst" 'sorted(set(r["status"] for r in rs))')" "[200]" \
    "16 misses at once at start: all 200"
assert_eq "$(token_requests)" 1 "16 misses at once: one token request (one renewer)"
upstream_record_check '"apiKey" not in r.get("query", {})' "no request to the upstream carries an apiKey"
upstream_record_check 'r["path"] == "/oauth2/token" or r["headers"].get("authorization", "").startswith("Bearer hpTOKEN.")' \
    "every tile request carries Authorization: Bearer and an issued token"
upstream_record_check 'r["path"] != "/oauth2/token" or (r["method"] == "POST" and r["headers"]["authorization"].startswith("OAuth ") and "oauth_signature_method=\"HMAC-SHA256\"" in r["headers"]["authorization"] and "oauth_consumer_key=\"'"$KEY_ID"'\"" in r["headers"]["authorization"])' \
    "the token request is a POST with an OAuth HMAC-SHA256 header for the access key id"
assert_eq "$(upstream_stat "s['token_refused']")" 0 "the upstream verified the signature (no refusal)"
assert_eq "$(metric 'hereproxy_here_auth{kind="oauth"}')" 1 "metrics: hereproxy_here_auth{kind=oauth} 1"
assert_eq "$(prom_value hereproxy_here_token_valid)" 1 "metrics: a valid token"
assert_eq "$(prom_value 'hereproxy_here_token_renewals_total{outcome="ok"}')" 1 "metrics: one renewal ok"
assert_match "$(prom_value hereproxy_here_token_expiry_seconds)" '^1[0-9]{9}\.' "metrics: the token's expiry as Unix time"
req GET "$N/readyz"
check_status 200 "/readyz 200 with a valid token"
assert_eq "$(json_field 'd.get("here_auth")')" oauth "/readyz says here_auth oauth"
assert_match "$(grep -c '"event":"here_token"' "$LOG")" '^1$' "one here_token log event"

# ------------------------------------------------- HERE refuses the token
R0=$(upstream_stat "s['bearer_refused']")
T0=$(token_requests)
upstream_control lifetime "s=$LIFETIME"
upstream_control revoke
URLS=()
for i in $(seq 1 8); do URLS+=("$N/here-proxy/base/mc/11/$i/5/png?indice=oauth"); done
fetch_parallel "$RUN_DIR/revoked" "${URLS[@]}"
assert_eq "$(results_eval "$RUN_DIR/revoked" 'sorted(set(r["status"] for r in rs))')" "[200]" \
    "token revoked, 8 misses at once: all 200 (401, one renewal, one retry each)"
assert_match "$(($(upstream_stat "s['bearer_refused']") - R0))" '^[1-8]$' "HERE answered 401 to the revoked token"
assert_eq "$(($(token_requests) - T0))" 1 "8 refusals at once: one new token"
assert_eq "$(metric hereproxy_here_token_refused_total)" 1 "metrics: one token refused"
assert_contains "$(grep '"event":"here_token"' "$LOG" | tail -n 1)" '"reason":"refused"' \
    "the renewal is logged with reason refused"

# ------------------------------------------------- renewed before expiry
# Tokens live 6 s and are renewed at 80%: 8 s of misses never send an
# expired one (the upstream refuses nothing) and the renewals are scheduled.
R1=$(upstream_stat "s['bearer_refused']")
T1=$(token_requests)
python3 "$abs_top_srcdir/tests/integration/load.py" 8 4 "$RUN_DIR/load.json" "$N/here-proxy" \
    "/base/mc/14/%d/%d/png?indice=renew"
diag "load across renewals: $(cat "$RUN_DIR/load.json")"
assert_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed"])' "$RUN_DIR/load.json")" 0 \
    "8 s of misses across token renewals: zero failures"
assert_eq "$(upstream_stat "s['bearer_refused']")" "$R1" "no expired token was ever sent (no 401)"
assert_match "$(($(token_requests) - T1))" '^[1-3]$' "tokens of 6 s renewed during 8 s"
assert_contains "$(grep '"event":"here_token"' "$LOG" | tail -n 1)" '"reason":"scheduled"' \
    "the renewal before expiry is logged as scheduled"

# ------------------------------------------------- the token endpoint fails
# (the last forced renewal is 8 s old: another may be asked for)
upstream_control fail 'status=503&times=2&path=/oauth2/token'
upstream_control revoke
miss
check_json_error 503 "token endpoint failing: a miss is a 503 JSON error"
assert_contains "$(json_field 'd["error"]')" "no valid HERE token" "the 503 says there is no valid HERE token"
assert_eq "$(header Retry-After)" 1 "the 503 has Retry-After"
req GET "$N/readyz"
check_json_error 503 "/readyz 503 without a valid token"
assert_contains "$(json_field 'd["error"]')" "token endpoint answered 503" "/readyz says why"
wait_status 200 15 "$N/readyz"
check_status 200 "/readyz 200 again once the token endpoint answers (backoff)"
miss
check_status 200 "a miss is 200 again"
assert_eq "$(metric 'hereproxy_here_token_renewals_total{outcome="http_error"}')" 2 \
    "metrics: two renewals failed with http_error"
assert_match "$(grep -c '"event":"here_token_failed"' "$LOG")" '^2$' "two here_token_failed log events"
stop_pid "$PROXY_PID" TERM 10
assert_eq "$STOP_RC" 0 "the proxy stops cleanly (renewer joined)"

# ------------------------------------------------- hostile token answers
upstream_control badtoken 'kind=crlf&times=1'
upstream_control badtoken 'kind=huge&times=1'
upstream_control badtoken 'kind=lifetime&times=1'
start_proxy hostile HERE_API_KEY= "HERE_CREDENTIALS_FILE=$CREDS"
LOG_H=$PROXY_LOG
start_nginx hostile "$PROXY_ADDR"
N=$NGINX_URL
wait_status 200 20 "$N/readyz"
check_status 200 "after three hostile answers, the fourth token is taken"
assert_eq "$(metric 'hereproxy_here_token_renewals_total{outcome="bad_response"}')" 3 \
    "metrics: three bad_response renewals"
miss
check_status 200 "a miss with the good token: 200"
upstream_record_check '"x-injected" not in r.get("headers", {}) and "X-Injected" not in str(r)' \
    "no header from a token answer reached the upstream"
for w in "an accessToken of" "expiresIn"; do
    assert_contains "$(grep '"event":"here_token_failed"' "$LOG_H")" "$w" "the log says what was wrong: $w"
done
upstream_control badtoken 'kind=type&times=1'
upstream_control badtoken 'kind=html&times=1'
stop_pid "$PROXY_PID" TERM 10
start_proxy hostile2 HERE_API_KEY= "HERE_CREDENTIALS_FILE=$CREDS"
LOG_H2=$PROXY_LOG
start_nginx hostile2 "$PROXY_ADDR"
N=$NGINX_URL
wait_status 200 20 "$N/readyz"
check_status 200 "after a non-bearer and an HTML answer, the third token is taken"
assert_eq "$(metric 'hereproxy_here_token_renewals_total{outcome="bad_response"}')" 2 \
    "metrics: two more bad_response renewals"
stop_pid "$PROXY_PID" TERM 10

# ------------------------------------------------- a wrong secret
WRONG=$RUN_DIR/wrong.properties
write_credentials "$WRONG" "$KEY_ID" "wrong-$SERVER_KEY"
start_proxy wrong HERE_API_KEY= "HERE_CREDENTIALS_FILE=$WRONG"
LOG_W=$PROXY_LOG
start_nginx wrong "$PROXY_ADDR"
N=$NGINX_URL
sleep 1
req GET "$N/readyz"
check_json_error 503 "a wrong secret: /readyz 503"
assert_contains "$(json_field 'd["error"]')" "answered 401 (errorCode 401300)" \
    "/readyz says the token endpoint answered 401 and HERE's error code"
miss
check_json_error 503 "a wrong secret: a miss is a 503 at once"
# Backoff from 0.5-1 s, doubling: a handful in the seconds a loaded
# machine takes to get here (4 seen under load), never dozens.
assert_match "$(metric 'hereproxy_here_token_renewals_total{outcome="refused"}')" '^[1-6]$' \
    "metrics: the renewals were refused, backing off"
stop_pid "$PROXY_PID" TERM 10

# ------------------------------------------------- nothing leaked
check_no_token_leak "no issued token in any file the proxies, NGINX, the CLI or the clients wrote"
for f in "$LOG" "$LOG_H" "$LOG_W" "$RUN_DIR/all-responses.txt" "$CLI_OUT"; do
    assert_match "$(wc -c <"$f")" '^[1-9]' "searched a non-empty $(basename "$f")"
done
check_log_json "$LOG" "proxy log lines are JSON" 10
# The secret holds $SERVER_KEY: the teardown's scan of every file checks it.
finish
