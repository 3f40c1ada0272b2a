#!/bin/bash
# MapLibre GL JS and OpenLayers (exact versions from npm, tests/browser) in
# Debian's headless Chromium, driven by playwright-core: MapLibre's raster
# source is the proxy's TileJSON URL, OpenLayers builds its layer with
# optionsFromCapabilities from the WMTS capabilities. Both draw tiles through
# the proxy (screenshots checked for the upstream's colours, kept in the run
# directory and copied to tests/browser-node/ in the build tree), and the
# proxy's log shows their requests under their índices. Missing chromium,
# node or npm is a failure, never a skip.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3 node npm
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$CHROMIUM" ] || die "missing chromium (apt-get install chromium)"
export CHROMIUM

browser_node_install
ok "npm packages installed in $NODE_DIR"

start_upstream
NGINX_PORT_NEXT=$(free_port)
PUB=http://127.0.0.1:$NGINX_PORT_NEXT
start_proxy main "HEREPROXY_PUBLIC_URL=$PUB"
NM=$NODE_DIR/node_modules
NGINX_EXTRA_LOCATIONS="    location /clients/ { alias $abs_top_srcdir/tests/browser/clients/; types { text/html html; } }
    location /maplibre/ { alias $NM/maplibre-gl/dist/; types { text/javascript mjs js; text/css css; } }
    location /ol/ { alias $NM/ol/dist/; types { text/javascript js; } }"
start_nginx main "$PROXY_ADDR"
assert_eq "$NGINX_URL" "$PUB" "NGINX listens at HEREPROXY_PUBLIC_URL"
req GET "$PUB/maplibre/maplibre-gl.mjs"
check_status 200 "MapLibre served from the npm package"
check_header Content-Type text/javascript "MapLibre's module as JavaScript"

OUT=$(cd "$NODE_DIR" && NODE_PATH=$NM timeout 120 \
    node "$abs_top_srcdir/tests/browser/clients_test.js" "$PUB" "$RUN_DIR" 2>&1)
rc=$?
diag "$OUT"
if [ "$rc" -eq 0 ]; then
    ok "Chromium: MapLibre from the TileJSON, OpenLayers from the WMTS capabilities"
else
    not_ok "Chromium run (exit $rc)"
fi

# The proxy saw them: the documents, then tiles, under each client's índice.
count() { grep -c "\"path\":\"$1\",\"indice\":\"$2\",\"cache_status\":\"[A-Z]*\",\"status\":200" "$PROXY_LOG"; }
assert_eq "$(count /here-proxy/tilejson/base.json mlbrowser)" 1 "log: MapLibre read the TileJSON"
# tileSize 256 from the TileJSON: at zoom 3, MapLibre draws z4 tiles.
assert_match "$(count '/here-proxy/base/mc/4/[0-9]*/[0-9]*/png' mlbrowser)" '^([4-9]|[1-9][0-9]+)$' \
    "log: MapLibre's z4 tiles through the proxy (tileSize 256 from the TileJSON)"
assert_eq "$(count /here-proxy/wmts/1.0.0/WMTSCapabilities.xml olbrowser)" 1 "log: OpenLayers read the capabilities"
assert_match "$(count '/here-proxy/base/mc/3/[0-9]*/[0-9]*/png' olbrowser)" '^([4-9]|[1-9][0-9]+)$' \
    "log: OpenLayers' z3 tiles through the proxy"
for s in maplibre openlayers; do
    if [ -s "$RUN_DIR/$s.png" ]; then
        cp "$RUN_DIR/$s.png" "$NODE_DIR/$s-screenshot.png"
        ok "screenshot: $RUN_DIR/$s.png (copy: $NODE_DIR/$s-screenshot.png)"
    else
        not_ok "screenshot missing: $RUN_DIR/$s.png"
    fi
done
finish
