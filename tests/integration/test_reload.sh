#!/bin/bash
# SIGHUP reloads HEREPROXY_CONFIG under load without failing a request:
# reloadable settings (CORS origins, log level, ...) apply at once, the
# others are named as needing a restart, an invalid file keeps the running
# configuration; each reload is logged.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

load_field() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
acao() {
    grep -i '^access-control-allow-origin:' "$HTTP_HEADERS_FILE" | tr -d '\r' | sed 's/^[^:]*: *//'
}

start_upstream
CONF=$RUN_DIR/hereproxy.conf
printf 'HEREPROXY_CORS_ORIGINS=https://a.example\nLOG_LEVEL=INFO\n' >"$CONF"
start_proxy a "HEREPROXY_CONFIG=$CONF"
LOG_A=$PROXY_LOG
PID_A=$PROXY_PID
start_nginx a "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

req GET "$P/base/mc/9/1/1/png" -H "Origin: https://b.example"
check_status 200 "before reload: tile 200"
assert_eq "$(acao)" "" "before reload: https://b.example is not an allowed origin"
ADMIN="reloaded-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
req POST "$NGINX_URL/admin/purge?all=1" -H "Authorization: Bearer $ADMIN"
check_status 404 "before reload: no admin token, /admin/purge is off"
for i in 1 2 3; do req GET "$P/base/mc/9/1/$i/png?indice=reloaded"; done
check_status 200 "before reload: índice reloaded is not rate limited"

python3 "$abs_top_srcdir/tests/integration/load.py" 8 4 "$RUN_DIR/load.json" "$P" &
LOAD_PID=$!
_register load "$LOAD_PID"
sleep 1

# ------------------------------------------------ a valid file
printf 'HEREPROXY_CORS_ORIGINS=https://a.example,https://b.example\nLOG_LEVEL=INFO\nHEREPROXY_THREADS=8\nHEREPROXY_ADMIN_TOKEN=%s\nRATE_LIMIT_INDEX_OVERRIDES=reloaded:2/minute\n' "$ADMIN" >"$CONF"
kill -HUP "$PID_A"
deadline=$((SECONDS + 10))
until [ "$(log_events "$LOG_A" reload)" -ge 1 ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
assert_eq "$(log_events "$LOG_A" reload)" 1 "SIGHUP: one reload event"
line=$(grep '"event":"reload"' "$LOG_A" | head -n 1)
assert_contains "$line" '"restart_needed":"HEREPROXY_THREADS"' "SIGHUP: the reload names HEREPROXY_THREADS as needing a restart"
req GET "$P/base/mc/9/1/1/png" -H "Origin: https://b.example"
check_status 200 "after reload: tile 200"
assert_eq "$(acao)" "https://b.example" "after reload: https://b.example is allowed"
req POST "$NGINX_URL/admin/purge?all=1" -H "Authorization: Bearer $ADMIN"
check_status 200 "after reload: the admin token from the file works"
for i in 1 2; do
    req GET "$P/base/mc/9/1/$i/png?indice=reloaded"
    check_status 200 "after reload: índice reloaded, request $i of its 2/minute"
done
req GET "$P/base/mc/9/1/3/png?indice=reloaded"
check_json_error 429 "after reload: the third of índice reloaded is 429 (RATE_LIMIT_INDEX_OVERRIDES reloaded)"

# ------------------------------------------------ an invalid file
printf 'HEREPROXY_CORS_ORIGINS=not-an-origin\n' >"$CONF"
kill -HUP "$PID_A"
deadline=$((SECONDS + 10))
until [ "$(log_events "$LOG_A" reload_failed)" -ge 1 ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
assert_eq "$(log_events "$LOG_A" reload_failed)" 1 "SIGHUP with a bad file: a reload_failed event"
assert_contains "$(grep '"event":"reload_failed"' "$LOG_A")" "HEREPROXY_CORS_ORIGINS" "reload_failed names the bad setting"
req GET "$P/base/mc/9/1/1/png" -H "Origin: https://b.example"
check_status 200 "after a failed reload: tile 200"
assert_eq "$(acao)" "https://b.example" "after a failed reload: the running configuration stays"

wait "$LOAD_PID"
_unregister "$LOAD_PID"
diag "load during the reloads: $(cat "$RUN_DIR/load.json")"
assert_eq "$(load_field "$RUN_DIR/load.json" failed)" 0 "two SIGHUPs under load: zero failed requests"
assert_match "$(load_field "$RUN_DIR/load.json" ok)" '^[1-9][0-9]{2,}$' "reload under load: at least 100 requests answered"
kill -0 "$PID_A" && ok "the proxy still runs after both reloads" || not_ok "the proxy still runs after both reloads"

stop_pid "$PID_A" TERM 15
assert_eq "$STOP_RC" 0 "SIGTERM after reloads: exit 0"
check_log_json "$LOG_A" "proxy log is JSON lines" 5
check_no_key_leak "no key in responses or logs" "$LOG_A"
finish
