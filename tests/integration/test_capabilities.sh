#!/bin/bash
# TileJSON (/here-proxy/tilejson/{resource}.json) and the WMTS capabilities
# (/here-proxy/wmts/1.0.0/WMTSCapabilities.xml): their fields, tile URL
# templates that work, HERE's attribution (and the fallback when HERE's
# copyright is not had), validation, admission (tokens, índices, CORS),
# caching like metadata in both tiers, per-índice metrics, the WMTS
# document valid against the OGC WMTS 1.0.0 schema (offline, xmllint with
# the copies in tests/schemas), and the Host header: documents built from
# it are never kept, neither here nor by NGINX's cache layer in front.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3 xmllint
SCHEMAS=$abs_top_srcdir/tests/schemas
[ -f "$SCHEMAS/catalog.xml" ] || die "missing $SCHEMAS/catalog.xml"
YEAR=$(date -u +%Y)

# wmts_valid FILE NAME: FILE validates against WMTS 1.0.0, never online.
wmts_valid() {
    local out
    if out=$(XML_CATALOG_FILES=$SCHEMAS/catalog.xml xmllint --noout --nonet \
        --schema http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd \
        "$1" 2>&1); then
        ok "$2"
    else
        not_ok "$2" "$(printf '%s' "$out" | tail -n 5)"
    fi
}

start_upstream
start_memcached
MC=127.0.0.1:$MEMCACHED_PORT

# ---------------------------------------------------------------- main
# HEREPROXY_PUBLIC_URL: NGINX's address, known before NGINX starts.
NGINX_PORT_NEXT=$(free_port)
PUB=http://127.0.0.1:$NGINX_PORT_NEXT
start_proxy main "MEMCACHED_SERVERS=$MC" HEREPROXY_ZMAX=6 "HEREPROXY_PUBLIC_URL=$PUB/" \
    "HEREPROXY_INDICES=capsweb,capsgis,capsjpeg,-" "HEREPROXY_CORS_ORIGINS=https://app.example"
MAIN_LOG=$PROXY_LOG
start_nginx main "$PROXY_ADDR"
assert_eq "$NGINX_URL" "$PUB" "NGINX listens where HEREPROXY_PUBLIC_URL says"
P=$PUB/here-proxy

# --- TileJSON
req GET "$P/tilejson/base.json?style=satellite.day&indice=capsweb"
check_status 200 "TileJSON: 200"
check_header Content-Type application/json "TileJSON: application/json"
check_header X-Cache MISS "TileJSON: first one asks HERE for its copyright"
check_header X-Index capsweb "TileJSON: X-Index"
assert_eq "$(json_field 'd["tilejson"]')" 3.0.0 "TileJSON: version 3.0.0"
assert_eq "$(json_field 'd["scheme"]')" xyz "TileJSON: scheme xyz"
assert_eq "$(json_field '[d["minzoom"], d["maxzoom"], d["tileSize"]]')" "[0, 6, 256]" \
    "TileJSON: minzoom 0, maxzoom HEREPROXY_ZMAX, tileSize"
assert_eq "$(json_field 'd["tiles"]')" \
    "[\"$PUB/here-proxy/base/mc/{z}/{x}/{y}/png?ppi=100&scale=1&size=256&style=satellite.day&indice=capsweb\"]" \
    "TileJSON: the template: public URL, canonical query, the client's índice"
assert_eq "$(json_field 'd["attribution"]')" "© HERE, © Imagery Example Co" \
    "TileJSON: attribution from HERE's copyright document (satellite credits imagery)"
assert_eq "$(json_field 'len(d["bounds"]) == 4 and -180 == d["bounds"][0] and len(d["center"]) == 3')" \
    true "TileJSON: bounds and center"
assert_match "$(header Cache-Control)" '^private, max-age=3[0-9]{3}$' \
    "TileJSON: private (it carries the client's índice), CACHE_META_TTL"
assert_eq "$(upstream_path_requests /v3/copyright)" 1 "TileJSON: HERE's copyright asked once"
TEMPLATE=$(json_field 'd["tiles"][0]')
ETAG=$(header ETag)
req GET "$(printf '%s' "$TEMPLATE" | sed 's/{z}/3/; s/{x}/4/; s/{y}/2/')"
check_status 200 "TileJSON: its template fetches a tile through the proxy"
check_header Content-Type image/png "TileJSON: the tile is a PNG"
check_header X-Index capsweb "TileJSON: the tile counts for the client's índice"

req GET "$P/tilejson/base.json?indice=capsweb&style=satellite.day"
check_header X-Cache HIT "TileJSON: the same document again is a HIT (parameters in any order)"
check_header ETag "$ETAG" "TileJSON: the same ETag"
req GET "$P/tilejson/base.json?style=satellite.day&indice=capsweb" -H "If-None-Match: $ETAG"
check_status 304 "TileJSON: If-None-Match answers 304"
req HEAD "$P/tilejson/base.json?style=satellite.day&indice=capsweb"
check_status 200 "TileJSON: HEAD 200"
assert_eq "$(wc -c <"$HTTP_BODY_FILE")" 0 "TileJSON: HEAD has no body"
req GET "$P/tilejson/label.json?format=png8&size=512&lang=de"
check_status 200 "TileJSON: label, png8, 512, German"
assert_eq "$(json_field 'd["tiles"][0]')" \
    "$PUB/here-proxy/label/mc/{z}/{x}/{y}/png8?lang=de&ppi=100&scale=1&size=512&style=explore.day" \
    "TileJSON: no índice asked, none in the template; format and size"
assert_eq "$(json_field 'd["tileSize"]')" 512 "TileJSON: tileSize 512"
assert_match "$(header Cache-Control)" '^public, max-age=' \
    "TileJSON: public when built from HEREPROXY_PUBLIC_URL without an índice"
assert_eq "$(json_field 'd["attribution"]')" "© HERE" "TileJSON: explore.day: HERE alone"
assert_eq "$(upstream_path_requests /v3/copyright)" 1 "TileJSON: one copyright for every document"

# --- WMTS
req GET "$P/wmts/1.0.0/WMTSCapabilities.xml?indice=capsgis"
check_status 200 "WMTS: 200"
check_header Content-Type application/xml "WMTS: application/xml"
WMTS=$(save_body wmts.xml)
wmts_valid "$WMTS" "WMTS: valid against the OGC WMTS 1.0.0 schema (offline)"
assert_eq "$(grep -o '<Layer>' "$WMTS" | wc -l)" 36 "WMTS: a layer for each of 4 resources and 9 styles"
assert_eq "$(grep -o '<TileMatrix>' "$WMTS" | wc -l)" 7 "WMTS: tile matrices z0 to HEREPROXY_ZMAX"
assert_contains "$(cat "$WMTS")" \
    "template=\"$PUB/here-proxy/base/mc/{TileMatrix}/{TileCol}/{TileRow}/png?ppi=100&amp;scale=1&amp;size=256&amp;style=explore.day&amp;indice=capsgis\"" \
    "WMTS: ResourceURL template through the proxy"
assert_contains "$(cat "$WMTS")" "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible" "WMTS: GoogleMapsCompatible"
assert_contains "$(cat "$WMTS")" "style satellite.day. © HERE, © Imagery Example Co</ows:Abstract>" \
    "WMTS: each layer carries HERE's attribution"
assert_not_contains "$(cat "$WMTS")" "logistics" "WMTS: logistics styles only when allowed"
req GET "$P/wmts/1.0.0/WMTSCapabilities.xml?indice=capsjpeg&format=jpeg&size=512&ppi=400"
check_status 200 "WMTS: jpeg, 512 pixels"
J=$(save_body wmts-jpeg.xml)
wmts_valid "$J" "WMTS: jpeg, 512: valid too"
assert_eq "$(grep -o 'format="image/jpeg"' "$J" | wc -l)" 36 "WMTS: jpeg templates"
assert_contains "$(cat "$J")" "<TileWidth>512</TileWidth>" "WMTS: 512-pixel tile matrices"

# A layer's template as a client fills it in.
req GET "$P/background/mc/2/1/3/png?ppi=100&scale=1&size=256&style=topo.night&indice=capsgis"
check_status 200 "WMTS: a filled-in template is a tile"

# --- what it refuses
req GET "$P/tilejson/nosuch.json"
check_json_error 400 "TileJSON: unknown resource: 400"
req GET "$P/tilejson/base.json?style=logistics.day"
check_json_error 400 "TileJSON: a style not allowed: 400"
req GET "$P/tilejson/base.json?zoom=3"
check_json_error 400 "TileJSON: unknown parameter: 400"
req GET "$P/tilejson/base.json?format=gif"
check_json_error 400 "TileJSON: unknown format: 400"
req GET "$P/wmts/1.0.0/WMTSCapabilities.xml?style=lite.day"
check_json_error 400 "WMTS: style (a layer for each): 400"
req GET "$P/wmts/1.0.0/WMTSCapabilities.json"
check_json_error 404 "WMTS: another document: 404"
req POST "$P/tilejson/base.json"
check_json_error 405 "TileJSON: POST: 405"
check_header Allow "GET, HEAD, OPTIONS" "TileJSON: Allow"
req GET "$P/tilejson/base.json?indice=intruder"
check_json_error 403 "TileJSON: an índice HEREPROXY_INDICES does not list: 403"
req GET "$P/tilejson/base.json" -H "Origin: https://app.example"
check_header Access-Control-Allow-Origin https://app.example "TileJSON: CORS for an allowed origin"
check_header Vary Origin "TileJSON: Vary: Origin"
req GET "$P/tilejson/base.json" -H "Origin: https://other.example"
assert_eq "$(header_count Access-Control-Allow-Origin)" 0 "TileJSON: no CORS grant for another origin"
req OPTIONS "$P/tilejson/base.json" -H "Origin: https://app.example"
check_status 204 "TileJSON: preflight 204"

# --- kept in memcached: another instance answers from there
start_proxy second "MEMCACHED_SERVERS=$MC" HEREPROXY_ZMAX=6 "HEREPROXY_PUBLIC_URL=$PUB" \
    "HEREPROXY_INDICES=capsweb,capsgis,capsjpeg,-"
SECOND_LOG=$PROXY_LOG
SECOND_ADDR=$PROXY_ADDR
start_nginx second "$SECOND_ADDR"
S=$NGINX_URL
before=$(upstream_path_requests /v3/copyright)
req GET "$S/here-proxy/wmts/1.0.0/WMTSCapabilities.xml?indice=capsgis"
check_status 200 "second instance: WMTS 200"
check_header X-Cache HIT "second instance: the WMTS document is a HIT"
cmp -s "$HTTP_BODY_FILE" "$WMTS" && ok "second instance: the same document (its links say HEREPROXY_PUBLIC_URL)" ||
    not_ok "second instance: the same document"
req GET "$S/here-proxy/tilejson/base.json?style=satellite.day&indice=capsweb"
check_header X-Cache HIT "second instance: the TileJSON is a HIT"
assert_eq "$(upstream_path_requests /v3/copyright)" "$before" "second instance: HERE not asked"
req GET "$S/metrics/prometheus"
assert_eq "$(prom_value 'hereproxy_cache_rejected_total{reason="bounds"}')" 0 \
    "second instance: the documents read from memcached are in bounds (application/xml under wmts/)"
assert_eq "$(grep -c '"path":"/here-proxy/wmts/1.0.0/WMTSCapabilities.xml".*"cache_status":"HIT"' "$SECOND_LOG")" 1 \
    "second instance: its access line says HIT"

# --- metrics per índice, like metadata
req GET "$PUB/metrics"
assert_eq "$(json_field '[d["indices"]["capsweb"][k] for k in ("hits", "misses")]')" "[3, 2]" \
    "metrics: capsweb's TileJSON requests (and its tile) by cache status"
assert_eq "$(json_field 'd["indices"]["capsgis"]["requests"] >= 2')" true "metrics: capsgis counted"
check_log_json "$MAIN_LOG" "main: every log line is JSON"

# ------------------------------------------------------------------ fallback
# HERE's copyright unavailable: "© <year> HERE", said in the log, fresh for
# CACHE_NEGATIVE_TTL at most and kept nowhere (the next one, once HERE is
# back, has HERE's). Client tokens on: the token is never in a template.
upstream_control fail "status=503&times=-1&path=/v3/copyright"
NGINX_PORT_NEXT=$(free_port)
FB_PUB=http://127.0.0.1:$NGINX_PORT_NEXT
start_proxy fallback "HEREPROXY_PUBLIC_URL=$FB_PUB" HERE_RETRIES=1 \
    "HEREPROXY_CLIENT_TOKENS=tokSecret123:capstok"
FB_LOG=$PROXY_LOG
start_nginx fallback "$PROXY_ADDR"
F=$FB_PUB/here-proxy
req GET "$F/tilejson/base.json"
check_json_error 401 "tokens: no token: 401"
req GET "$F/tilejson/base.json?style=satellite.day" -H "X-Proxy-Token: tokSecret123"
check_status 200 "fallback: HERE's copyright fails, the TileJSON is still 200"
assert_eq "$(json_field 'd["attribution"]')" "© $YEAR HERE" "fallback: © <year> HERE"
assert_match "$(header Cache-Control)" '^private, max-age=([0-9]|[1-5][0-9]|60)$' \
    "fallback: fresh for CACHE_NEGATIVE_TTL at most (and private: client tokens)"
check_header X-Index capstok "tokens: the token's índice"
assert_match "$(grep '"path":"/here-proxy/tilejson/base.json"' "$FB_LOG" | tail -n 1)" \
    "\"status\":200.*\"error\":\"HERE's copyright document unavailable \\(HERE answered 503" \
    "fallback: the access line says why"
req GET "$F/wmts/1.0.0/WMTSCapabilities.xml?token=tokSecret123"
check_status 200 "fallback: WMTS 200 with the fallback"
FBW=$(save_body wmts-fallback.xml)
wmts_valid "$FBW" "fallback: WMTS still valid"
assert_contains "$(cat "$FBW")" "© $YEAR HERE" "fallback: WMTS says © <year> HERE"
assert_eq "$(grep -ac tokSecret123 "$RUN_DIR/all-responses.txt")" 0 \
    "tokens: the token is in no response (templates carry none)"
upstream_control reset
req GET "$F/tilejson/base.json?style=satellite.day" -H "X-Proxy-Token: tokSecret123"
assert_eq "$(json_field 'd["attribution"]')" "© HERE, © Imagery Example Co" \
    "fallback: not kept: once HERE answers, its attribution"
check_header X-Cache MISS "fallback: HERE asked again"

# HERE's words are not trusted: markup stays text in TileJSON (HTML to its
# clients) and in the XML; control and bidi characters go.
HOSTILE='{"copyrights":{"x":[{"label":"<img src=x onerror=alert(1)>\u202e\u0007 & \"Co\""}]},"resources":{"base":{"styles":{"explore.night":["x"]}}}}'
upstream_control metadoc "name=copyright&body=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$HOSTILE")"
start_proxy hostile "HEREPROXY_PUBLIC_URL=$FB_PUB"
start_nginx hostile "$PROXY_ADDR"
req GET "$NGINX_URL/here-proxy/tilejson/base.json?style=explore.night"
assert_eq "$(json_field 'd["attribution"]')" \
    "© $YEAR HERE, © &lt;img src=x onerror=alert(1)&gt; &amp; &quot;Co&quot;" \
    "hostile label: HTML-escaped text in TileJSON, controls and bidi overrides gone"
req GET "$NGINX_URL/here-proxy/wmts/1.0.0/WMTSCapabilities.xml"
HW=$(save_body wmts-hostile.xml)
wmts_valid "$HW" "hostile label: WMTS still valid"
assert_not_contains "$(cat "$HW")" "<img" "hostile label: no markup in the WMTS document"
upstream_control reset

# -------------------------------------------------------------- Host header
# Without HEREPROXY_PUBLIC_URL the links come from the Host the web server
# passes (Debian's fastcgi_params: $host, without the port). Behind NGINX's
# cache layer (which keys without Host), a Host of the client's choosing
# must not reach another client: the documents are private and not kept.
start_proxy host "MEMCACHED_SERVERS=$MC"
HOST_LOG=$PROXY_LOG
start_nginx_cache cachelayer "$PROXY_ADDR"
C=$NGINX_URL/here-proxy
req GET "$C/tilejson/base.json" -H "Host: maps.example.test"
check_status 200 "Host: TileJSON 200"
assert_eq "$(json_field 'd["tiles"][0]')" \
    "http://maps.example.test/here-proxy/base/mc/{z}/{x}/{y}/png?ppi=100&scale=1&size=256&style=explore.day" \
    "Host: the template names the request's host"
assert_match "$(header Cache-Control)" '^private, ' "Host: Cache-Control private"
req GET "$C/tilejson/base.json" -H "Host: evil.example"
assert_contains "$(json_field 'd["tiles"][0]')" "http://evil.example/" "Host: a client's own Host is in its own document"
req GET "$C/tilejson/base.json" -H "Host: maps.example.test"
assert_contains "$(json_field 'd["tiles"][0]')" "http://maps.example.test/" \
    "Host: the next client gets its own host, not evil.example (no cache kept it)"
assert_eq "$(header X-Cache-NGINX)" MISS "Host: NGINX's cache did not answer it"
req GET "$C/wmts/1.0.0/WMTSCapabilities.xml" -H "Host: evil.example"
req GET "$C/wmts/1.0.0/WMTSCapabilities.xml" -H "Host: maps.example.test"
assert_not_contains "$(cat "$HTTP_BODY_FILE")" "evil.example" "Host: the WMTS document neither"
req GET "$C/tilejson/base.json" -H 'Host: x"><script>.example'
check_json_error 400 "Host: one that is no host name is refused"
assert_eq "$(grep -c 'evil.example' "$HOST_LOG")" 0 "Host: no Host in the proxy's log"
check_log_json "$HOST_LOG" "host: every log line is JSON"

finish
