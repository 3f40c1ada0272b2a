#!/bin/bash
# GDAL (Debian gdal-bin), a client nobody here wrote, against the proxy:
# gdalinfo lists the WMTS capabilities' layers; gdal_translate renders an
# area through the WMTS driver, and through the WMS driver's TMS minidriver
# fed with the TileJSON's tile template; both give the pixels of the tiles
# the local upstream drew, and the proxy's log shows the tiles asked.
# Missing gdal-bin is a failure, never a skip.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3 gdalinfo gdal_translate

start_upstream
NGINX_PORT_NEXT=$(free_port)
PUB=http://127.0.0.1:$NGINX_PORT_NEXT
start_proxy main HEREPROXY_ZMAX=3 "HEREPROXY_PUBLIC_URL=$PUB"
start_nginx main "$PROXY_ADDR"

# GDAL writes nothing outside the run directory; no cache between runs.
cd "$RUN_DIR" || die "cannot enter $RUN_DIR"
export GDAL_DEFAULT_WMS_CACHE_PATH=$RUN_DIR/gdalcache GDAL_HTTP_TIMEOUT=20 \
    CPL_TMPDIR=$RUN_DIR GDAL_PAM_ENABLED=NO

# gdal NAME CMD...: run a GDAL command (bounded), its output in $GDAL_OUT.
gdal() {
    local name=$1
    shift
    if GDAL_OUT=$(timeout 90 "$@" 2>&1); then
        ok "$name"
    else
        not_ok "$name" "$(printf '%s' "$GDAL_OUT" | tail -n 5)"
    fi
}

# ppm_of PNG OUT: the RGB pixels of a PNG as a binary PPM (GDAL's PNM driver,
# a palette expanded): two of them compare with cmp.
ppm_of() {
    local bands
    bands=$(gdalinfo "$1" | grep -c '^Band ')
    if gdalinfo "$1" | grep -q 'Color Table'; then
        gdal_translate -q -of PNM -expand rgb "$1" "$2"
    elif [ "$bands" -ge 3 ]; then
        gdal_translate -q -of PNM -b 1 -b 2 -b 3 "$1" "$2"
    else
        return 1
    fi
}

# The tiles as the upstream drew them, asked of it directly (curl's
# command line holds the key; no file does).
upstream_tile() { # Z X Y OUT
    curl -sS --max-time 10 -o "$4" \
        "$UPSTREAM_URL/v3/base/mc/$1/$2/$3/png?apiKey=$SERVER_KEY&style=explore.day&size=256"
}
upstream_tile 3 4 2 up-3-4-2.png && ppm_of up-3-4-2.png up-3-4-2.ppm ||
    die "cannot read the upstream's tile 3/4/2 with GDAL"
for xy in "3 2" "4 3"; do
    set -- $xy
    upstream_tile 3 "$1" "$2" "up-3-$1-$2.png" && ppm_of "up-3-$1-$2.png" "up-3-$1-$2.ppm" ||
        die "cannot read the upstream's tile 3/$1/$2"
done
upstream_control reset

CAPS="$PUB/here-proxy/wmts/1.0.0/WMTSCapabilities.xml?indice=gdal"
gdal "gdalinfo WMTS: reads the capabilities" gdalinfo "WMTS:$CAPS"
assert_eq "$(printf '%s\n' "$GDAL_OUT" | grep -c '^  SUBDATASET_[0-9]*_NAME=WMTS:')" 36 \
    "gdalinfo: lists the 36 layers"
assert_contains "$GDAL_OUT" "SUBDATASET_1_NAME=WMTS:$CAPS,layer=base-explore.day" \
    "gdalinfo: base-explore.day first"
assert_contains "$GDAL_OUT" "layer=blank-topo.night" "gdalinfo: blank-topo.night too"
LAYER="WMTS:$CAPS,layer=base-explore.day"
gdal "gdalinfo: one layer" gdalinfo "$LAYER"
assert_contains "$GDAL_OUT" "Size is 2048, 2048" "gdalinfo: z0 to HEREPROXY_ZMAX=3: 8 tiles of 256 a side"
assert_contains "$GDAL_OUT" 'Pseudo-Mercator' "gdalinfo: EPSG:3857"

# One tile's extent at z3 (x 4, y 2) in metres: its pixels, exactly.
T=5009377.085697311
gdal "gdal_translate WMTS: tile 3/4/2's extent" gdal_translate -q -of PNG \
    -projwin 0 "$(python3 -c "print(2 * $T)")" "$T" "$T" -outsize 256 256 "$LAYER" wmts-3-4-2.png
ppm_of wmts-3-4-2.png wmts-3-4-2.ppm
cmp -s wmts-3-4-2.ppm up-3-4-2.ppm && ok "WMTS: GDAL's pixels are the upstream's tile 3/4/2" ||
    not_ok "WMTS: GDAL's pixels differ from the upstream's tile 3/4/2"
assert_eq "$(grep -c '"path":"/here-proxy/base/mc/3/4/2/png","indice":"gdal","cache_status":"MISS","status":200' "$PROXY_LOG")" 1 \
    "WMTS: the proxy's log shows GDAL's tile request, for índice gdal"

# An area of two by two tiles (x 3-4, y 2-3): four tiles through the proxy,
# the corners as the upstream drew them. GDAL's own tile cache emptied
# first: 3/4/2 is asked again, and is the proxy's hit.
rm -rf "$GDAL_DEFAULT_WMS_CACHE_PATH"
gdal "gdal_translate WMTS: a 2x2-tile area" gdal_translate -q -of PNG \
    -projwin "-$T" "$(python3 -c "print(2 * $T)")" "$T" 0 -outsize 512 512 "$LAYER" area.png
gdal_translate -q -of PNM -b 1 -b 2 -b 3 -srcwin 0 0 256 256 area.png area-3-3-2.ppm
gdal_translate -q -of PNM -b 1 -b 2 -b 3 -srcwin 256 256 256 256 area.png area-3-4-3.ppm
cmp -s area-3-3-2.ppm up-3-3-2.ppm && ok "WMTS area: its top left is tile 3/3/2" ||
    not_ok "WMTS area: top left differs from tile 3/3/2"
cmp -s area-3-4-3.ppm up-3-4-3.ppm && ok "WMTS area: its bottom right is tile 3/4/3" ||
    not_ok "WMTS area: bottom right differs from tile 3/4/3"
assert_eq "$(grep -c '"path":"/here-proxy/base/mc/3/[34]/[23]/png","indice":"gdal"' "$PROXY_LOG")" 5 \
    "WMTS area: the four tiles asked of the proxy (3/4/2 again: a HIT)"
assert_eq "$(grep -c '"path":"/here-proxy/base/mc/3/4/2/png","indice":"gdal","cache_status":"HIT"' "$PROXY_LOG")" 1 \
    "WMTS area: tile 3/4/2 the second time is the proxy's HIT"

# The TMS minidriver, with the template the TileJSON gives ({z} -> ${z}).
req GET "$PUB/here-proxy/tilejson/base.json?indice=gdaltms"
check_status 200 "TileJSON for the TMS minidriver"
TEMPLATE=$(json_field 'd["tiles"][0]')
assert_eq "${TEMPLATE%%/here-proxy/*}" "$PUB" "TileJSON: the template names HEREPROXY_PUBLIC_URL"
python3 - "$TEMPLATE" >tms.xml <<'EOF'
import sys
from xml.sax.saxutils import escape
url = sys.argv[1].replace("{z}", "${z}").replace("{x}", "${x}").replace("{y}", "${y}")
print("""<GDAL_WMS>
  <Service name="TMS"><ServerUrl>%s</ServerUrl></Service>
  <DataWindow>
    <UpperLeftX>-20037508.3427892</UpperLeftX><UpperLeftY>20037508.3427892</UpperLeftY>
    <LowerRightX>20037508.3427892</LowerRightX><LowerRightY>-20037508.3427892</LowerRightY>
    <TileLevel>3</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>
    <YOrigin>top</YOrigin>
  </DataWindow>
  <Projection>EPSG:3857</Projection>
  <BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY>
  <BandsCount>3</BandsCount>
</GDAL_WMS>""" % escape(url))
EOF
gdal "gdal_translate TMS minidriver: tile 3/4/2" gdal_translate -q -of PNM \
    -srcwin 1024 512 256 256 tms.xml tms-3-4-2.ppm
cmp -s tms-3-4-2.ppm up-3-4-2.ppm && ok "TMS: GDAL's pixels are the upstream's tile 3/4/2" ||
    not_ok "TMS: GDAL's pixels differ from the upstream's tile 3/4/2"
assert_eq "$(grep -c '"path":"/here-proxy/base/mc/3/4/2/png","indice":"gdaltms"' "$PROXY_LOG")" 1 \
    "TMS: the proxy's log shows the tile, for the TileJSON's índice"
assert_eq "$(upstream_path_requests /v3/base/mc/3/4/2/png)" 1 \
    "the proxy asked HERE for tile 3/4/2 once, for every client"
check_log_json "$PROXY_LOG" "every log line is JSON"
finish
