#!/bin/bash
# Every parameter of HERE's Raster Tile API v3 (3.0.4) that the proxy takes:
# every feature and mode reaches HERE; startTime and endTime reach it with a
# time-based vehicle_restrictions mode, and any other combination is a 400
# JSON naming the parameter that never reaches HERE; the order of the
# features does not split the cache; HERE_STYLES adds a style and removes
# one, and a reload (SIGHUP) changes the list.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

# recorded_query PATH NAME: the values of query parameter NAME in the
# upstream's requests for PATH (/v3/...), one a line.
recorded_query() {
    python3 - "$UPSTREAM_RECORD" "$1" "$2" <<'EOF'
import json, sys
rec, path, name = sys.argv[1:]
for line in open(rec, encoding="utf-8"):
    r = json.loads(line)
    if r.get("path") == path and "query" in r:
        for v in r["query"].get(name, []):
            print(v)
EOF
}

ADMIN="params-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
start_upstream
CONF=$RUN_DIR/hereproxy.conf
printf 'HERE_STYLES=explore.day, topo.day, explore.dusk\nHEREPROXY_ADMIN_TOKEN=%s\n' \
    "$ADMIN" >"$CONF"
start_proxy a "HEREPROXY_CONFIG=$CONF"
LOG_A=$PROXY_LOG
PID_A=$PROXY_PID
start_nginx a "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# ------------------------------------------------ every feature and mode
x=0
for fm in congestion_zones:all congestion_zones:disabled \
    environmental_zones:all environmental_zones:disabled \
    pois:all pois:disabled \
    vehicle_restrictions:active_and_inactive \
    vehicle_restrictions:permanent_only \
    vehicle_restrictions:active_and_inactive_differentiated \
    vehicle_restrictions:active_only vehicle_restrictions:disabled \
    public_transit:asia_selected_systems public_transit:all_systems \
    public_transit:disabled truck_preferred_roads:all \
    truck_preferred_roads:disabled; do
    x=$((x + 1))
    req GET "$P/mc/10/$x/7/png?features=$fm"
    check_status 200 "features=$fm: 200"
    assert_eq "$(recorded_query "/v3/base/mc/10/$x/7/png" features)" "$fm" \
        "features=$fm: reaches HERE as it is"
done
assert_contains "$(tr -d '\0' <"$HTTP_BODY_FILE")" \
    "features=truck_preferred_roads:disabled" \
    "the tile served is the one HERE made for the feature"

# ------------------------------------------------ a time window
W="features=vehicle_restrictions:active_only&startTime=2025-12-03T08:00&endTime=2025-12-03T18:00"
req GET "$P/mc/11/1/1/png?$W"
check_status 200 "vehicle_restrictions:active_only with startTime and endTime: 200"
assert_eq "$(recorded_query /v3/base/mc/11/1/1/png startTime)" "2025-12-03T08:00" \
    "startTime reaches HERE"
assert_eq "$(recorded_query /v3/base/mc/11/1/1/png endTime)" "2025-12-03T18:00" \
    "endTime reaches HERE"
assert_contains "$(tr -d '\0' <"$HTTP_BODY_FILE")" "startTime=2025-12-03T08:00" \
    "the tile served is HERE's for the window"
req GET "$P/mc/11/1/2/png?features=vehicle_restrictions:active_and_inactive_differentiated&startTime=2024-02-29T23:00"
check_status 200 "active_and_inactive_differentiated with startTime alone (29 February of a leap year): 200"
# Another window is another tile.
req GET "$P/mc/11/1/1/png?features=vehicle_restrictions:active_only&startTime=2025-12-03T09:00&endTime=2025-12-03T18:00"
check_status 200 "another window: 200"
assert_eq "$(header X-Cache)" "MISS" "another window is another cache entry"

# ------------------------------------------------ bad combinations: 400
before=$(upstream_requests)
bad() { # PARAMETER QUERY WHAT
    req GET "$P/mc/11/2/2/png?$2"
    check_json_error 400 "$3: 400 JSON"
    assert_contains "$(json_field 'd["error"]')" "$1" "$3: the error names $1"
}
bad startTime "startTime=2025-12-03T08:00" "startTime without features"
bad endTime "endTime=2025-12-03T18:00&features=pois:all" \
    "endTime without vehicle_restrictions"
bad startTime "features=vehicle_restrictions:active_and_inactive&startTime=2025-12-03T08:00" \
    "startTime with vehicle_restrictions:active_and_inactive"
bad endTime "features=vehicle_restrictions:permanent_only&endTime=2025-12-03T08:00" \
    "endTime with vehicle_restrictions:permanent_only"
bad endTime "features=vehicle_restrictions:active_only&startTime=2025-12-03T18:00&endTime=2025-12-03T08:00" \
    "endTime before startTime"
bad startTime "features=vehicle_restrictions:active_only&startTime=2025-02-29T08:00" \
    "startTime on 29 February of a common year"
bad endTime "features=vehicle_restrictions:active_only&endTime=2025-12-03T24:00" \
    "endTime at hour 24"
bad startTime "features=vehicle_restrictions:active_only&startTime=2025-12-03T08:00Z" \
    "startTime with a time zone"
bad features "features=public_transit:everything" "an unknown public_transit mode"
bad features "features=pois:all,pois:disabled" "a feature given twice"
assert_eq "$(upstream_requests)" "$before" "no bad combination reached HERE"

# ------------------------------------------------ canonical key
req GET "$P/mc/12/5/5/png?features=pois:disabled,public_transit:all_systems,vehicle_restrictions:active_only&endTime=2025-12-03T18:00&startTime=2025-12-03T08:00"
check_status 200 "three features and a window: 200"
assert_eq "$(header X-Cache)" "MISS" "first order: MISS"
req GET "$P/mc/12/5/5/png?startTime=2025-12-03T08:00&features=vehicle_restrictions:active_only,pois:disabled,public_transit:all_systems&endTime=2025-12-03T18:00"
check_status 200 "the same in another order: 200"
assert_eq "$(header X-Cache)" "HIT" "another order of features and times: HIT"
assert_eq "$(upstream_path_requests /v3/base/mc/12/5/5/png)" 1 \
    "one request to HERE for both orders"
assert_eq "$(recorded_query /v3/base/mc/12/5/5/png features)" \
    "pois:disabled,public_transit:all_systems,vehicle_restrictions:active_only" \
    "HERE gets the features in the canonical order"

# ------------------------------------------------ HERE_STYLES
req GET "$P/mc/9/3/3/png?style=explore.dusk"
check_status 200 "HERE_STYLES adds explore.dusk: 200"
assert_eq "$(recorded_query /v3/base/mc/9/3/3/png style)" "explore.dusk" \
    "style=explore.dusk reaches HERE"
req GET "$P/mc/9/3/3/png?style=lite.day"
check_json_error 400 "HERE_STYLES without lite.day: style=lite.day is 400 JSON"
assert_contains "$(json_field 'd["error"]')" "style" "the error names style"
req GET "$P/mc/9/3/3/png?style=logistics.day"
check_json_error 400 "logistics.day stays refused without HERE_ALLOW_LOGISTICS"
req GET "$P/mc/9/3/4/png?style=topo.day"
check_status 200 "a listed default style: 200"
req GET "$P/mc/9/3/4/png"
check_status 200 "no style (explore.day, listed): 200"
req POST "$NGINX_URL/admin/purge/here-proxy/mc/9/3/3/png?style=explore.dusk" \
    -H "Authorization: Bearer $ADMIN"
check_status 200 "a tile of a HERE_STYLES style can be purged"

printf 'HERE_STYLES=explore.day,lite.day\nHEREPROXY_ADMIN_TOKEN=%s\n' "$ADMIN" >"$CONF"
kill -HUP "$PID_A"
deadline=$((SECONDS + 10))
until [ "$(log_events "$LOG_A" reload)" -ge 1 ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
assert_eq "$(log_events "$LOG_A" reload)" 1 "SIGHUP: one reload event"
assert_not_contains "$(grep '"event":"reload"' "$LOG_A")" "HERE_STYLES" \
    "HERE_STYLES needs no restart"
req GET "$P/mc/9/3/5/png?style=lite.day"
check_status 200 "after the reload: lite.day is accepted"
req GET "$P/mc/9/3/5/png?style=explore.dusk"
check_json_error 400 "after the reload: explore.dusk is refused"

printf 'HERE_STYLES=explore.day,Bad Style\nHEREPROXY_ADMIN_TOKEN=%s\n' "$ADMIN" >"$CONF"
kill -HUP "$PID_A"
deadline=$((SECONDS + 10))
until [ "$(log_events "$LOG_A" reload_failed)" -ge 1 ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.1; done
assert_contains "$(grep '"event":"reload_failed"' "$LOG_A")" "HERE_STYLES" \
    "a bad HERE_STYLES fails the reload, named"
req GET "$P/mc/9/3/6/png?style=lite.day"
check_status 200 "after the failed reload: the running list stays"

out=$(env HERE_API_KEY=x HERE_STYLES="explore.day,topo.day" "$HEREPROXY_BIN" --check-config 2>&1)
assert_contains "$out" "HERE_STYLES=explore.day,topo.day" "--check-config prints HERE_STYLES"
if out=$(env HERE_API_KEY=x HERE_STYLES="explore.day,a&b" "$HEREPROXY_BIN" --check-config 2>&1); then
    not_ok "--check-config refuses a style that is not a name" "$out"
else
    assert_contains "$out" "HERE_STYLES" "--check-config refuses a style that is not a name, naming HERE_STYLES"
fi

check_log_json "$LOG_A" "every proxy log line is JSON" 40
check_no_key_leak "no HERE key in responses or logs" "$LOG_A"

stop_pid "$PID_A" TERM 15
assert_eq "$STOP_RC" 0 "SIGTERM: exit 0"
finish
