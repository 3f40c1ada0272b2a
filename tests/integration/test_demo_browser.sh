#!/bin/bash
# The demo page (contrib/demo/index.html) in headless Chromium, driven by
# playwright-core (tests/browser, versions pinned in package-lock.json):
# NGINX serves the page and Debian's Leaflet, the tile layer goes through
# hereproxy to the local upstream; tiles load with 200, a pan away and back
# gives cache hits, and the page's /metrics panel shows them.  A screenshot
# is kept in the run directory (and copied to tests/browser-node/ in the build
# tree).  Missing chromium, node or npm is a failure, never a skip.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3 node npm
require_bin
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$CHROMIUM" ] || die "missing chromium (apt-get install chromium)"
export CHROMIUM
LEAFLET=/usr/share/javascript/leaflet
[ -f "$LEAFLET/leaflet.js" ] || die "missing $LEAFLET/leaflet.js (apt-get install libjs-leaflet)"

# playwright-core (and MapLibre, for the page's switch), installed from the
# lock file into the build tree (lib.sh: browser_node_install).
browser_node_install
ok "playwright-core installed in $NODE_DIR"

# The demo's MapLibre is the one the quickstart installs
# (contrib/demo/package-lock.json): the same version as the tests'.
assert_eq "$(json_field 'd["packages"]["node_modules/maplibre-gl"]["version"]' "$abs_top_srcdir/contrib/demo/package-lock.json")" \
    "$(json_field 'd["packages"]["node_modules/maplibre-gl"]["version"]' "$abs_top_srcdir/tests/browser/package-lock.json")" \
    "the demo's MapLibre version is the tests'"

start_upstream
start_memcached
# The TileJSON's links name NGINX (HEREPROXY_PUBLIC_URL), as the quickstart sets.
NGINX_PORT_NEXT=$(free_port)
start_proxy main "MEMCACHED_SERVERS=127.0.0.1:$MEMCACHED_PORT" \
    "HEREPROXY_PUBLIC_URL=http://127.0.0.1:$NGINX_PORT_NEXT"
DEMO=$abs_top_srcdir/contrib/demo
NGINX_EXTRA_LOCATIONS="    location = / { root $DEMO; index index.html; }
    location = /index.html { root $DEMO; types { text/html html; } }
    location /leaflet/ { alias $LEAFLET/; types { text/css css; application/javascript js; image/png png; } }
    location /maplibre/ { alias $NODE_DIR/node_modules/maplibre-gl/dist/; types { text/css css; text/javascript mjs js; } }"
start_nginx main "$PROXY_ADDR"
U=$NGINX_URL

req GET "$U/"
check_status 200 "the demo page is served at /"
check_header Content-Type text/html "the page as text/html"
assert_contains "$(cat "$HTTP_BODY_FILE")" "/here-proxy/base/mc/{z}/{x}/{y}/png?style=" "the page's tile layer goes through the proxy"
req GET "$U/leaflet/leaflet.js"
check_status 200 "Leaflet is served at /leaflet/"
req GET "$U/leaflet/leaflet.css"
check_status 200 "leaflet.css is served"
check_header Content-Type text/css "leaflet.css as text/css (else Chromium ignores it)"
req GET "$U/metrics"
check_status 200 "/metrics answers the loopback page"

SHOT=$RUN_DIR/demo.png
OUT=$(cd "$NODE_DIR" && NODE_PATH=$NODE_DIR/node_modules timeout 90 \
    node "$abs_top_srcdir/tests/browser/demo_test.js" "$U" "$SHOT" browsertest 2>&1)
rc=$?
diag "$OUT"
if [ "$rc" -eq 0 ]; then ok "Chromium: tiles 200, pan away and back, panel shows hits, the MapLibre switch draws"; else not_ok "Chromium run (exit $rc)"; fi
assert_eq "$(grep -c '"path":"/here-proxy/tilejson/base.json","indice":"browsertest"' "$PROXY_LOG")" 1 \
    "the MapLibre switch read the TileJSON (proxy log)"

# The page's numbers are the proxy's: hits for the índice in /metrics.
req GET "$U/metrics"
HITS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["indices"]["browsertest"]["hits"])' "$HTTP_BODY_FILE" 2>/dev/null)
assert_match "${HITS:-0}" '^[1-9][0-9]*$' "/metrics counts hits for índice browsertest ($HITS)"
if [ -s "$SHOT" ] && [ "$(head -c 8 "$SHOT" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
    cp "$SHOT" "$NODE_DIR/demo-screenshot.png"
    ok "screenshot saved: $SHOT (copy: $NODE_DIR/demo-screenshot.png)"
else
    not_ok "screenshot missing or not a PNG: $SHOT"
fi
finish
