// MapLibre GL JS and OpenLayers, from npm, against the proxy's capabilities:
//   node clients_test.js URL SHOTDIR
// URL serves /clients/*.html (tests/browser/clients), /maplibre/ and /ol/
// (the packages' dist), and /here-proxy/ (the proxy). MapLibre's raster
// source is the TileJSON URL (índice mlbrowser); OpenLayers builds its layer
// with optionsFromCapabilities from the WMTS capabilities (índice
// olbrowser). Each page must load tiles through the proxy with status 200,
// and its screenshot (kept in SHOTDIR) must show the upstream's map colours,
// not a blank page. Prints "ok ..." lines; exits 1 on the first failure.
"use strict";
const { chromium } = require("playwright-core");

const [url, shotdir] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

// The local upstream's day palette (tests/upstream/here_upstream.py): the
// background, water, park, grid and coast colours of an explore.day tile.
const PALETTE = [[245, 240, 225], [170, 211, 223], [200, 225, 180],
  [218, 208, 188], [110, 150, 180]];

function fail(msg) {
  console.log("not ok - " + msg);
  process.exitCode = 1;
  throw new Error(msg);
}

function ok(msg) {
  console.log("ok - " + msg);
}

// Share of a screenshot's pixels within 8 of a palette colour: decoded by
// the browser itself (an <img> of the PNG drawn on a canvas).
async function mapShare(page, png) {
  return page.evaluate(async ({ b64, palette }) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let hits = 0;
    for (let i = 0; i < d.length; i += 4) {
      for (const p of palette) {
        if (Math.abs(d[i] - p[0]) <= 8 && Math.abs(d[i + 1] - p[1]) <= 8 &&
            Math.abs(d[i + 2] - p[2]) <= 8) {
          hits++;
          break;
        }
      }
    }
    return hits / (d.length / 4);
  }, { b64: png.toString("base64"), palette: PALETTE });
}

// Responses from the proxy's tile path, and what went wrong on the page.
function watch(page, indice) {
  const w = { tiles: 0, bad: [] };
  page.on("response", (r) => {
    const u = r.url();
    if (!u.includes("/here-proxy/")) return;
    if (r.status() !== 200) w.bad.push(r.status() + " " + u);
    if (u.includes("/mc/")) {
      w.tiles++;
      if (!u.includes("indice=" + indice)) w.bad.push("tile without indice=" + indice + ": " + u);
    }
  });
  page.on("pageerror", (e) => w.bad.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") w.bad.push("console: " + m.text()); });
  return w;
}

async function waitFor(page, what, fn, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await page.evaluate(fn)) return;
    await page.waitForTimeout(200);
  }
  fail(what + ": not within " + ms + " ms");
}

(async () => {
  const browser = await chromium.launch({
    executablePath, headless: true,
    // MapLibre needs WebGL: SwiftShader, Chromium's CPU renderer.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
      "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"],
  });
  try {
    const blank = await browser.newPage();

    // MapLibre GL JS: a raster source whose url is the TileJSON.
    const ml = await browser.newPage({ viewport: { width: 800, height: 600 } });
    const mw = watch(ml, "mlbrowser");
    const tilejson = url + "/here-proxy/tilejson/base.json?indice=mlbrowser";
    await ml.goto(url + "/clients/maplibre.html?tilejson=" + encodeURIComponent(tilejson),
      { waitUntil: "load" });
    await waitFor(ml, "MapLibre: the map loaded", () => window.map && window.map.loaded() &&
      window.map.areTilesLoaded(), 30000);
    const webgl = await ml.evaluate(() => !!document.querySelector("canvas.maplibregl-canvas"));
    if (!webgl) fail("MapLibre: no WebGL canvas");
    const errs = await ml.evaluate(() => window.mapErrors);
    if (errs.length) fail("MapLibre errors: " + errs.join("; "));
    if (mw.bad.length) fail("MapLibre: " + mw.bad.join(", "));
    if (mw.tiles < 4) fail("MapLibre: only " + mw.tiles + " tiles through the proxy");
    ok("MapLibre: " + mw.tiles + " tiles through the proxy from the TileJSON, all 200");
    const attribution = await ml.evaluate(() =>
      (document.querySelector(".maplibregl-ctrl-attrib-inner") || {}).textContent || "");
    if (!attribution.includes("\u00a9 HERE")) fail("MapLibre: attribution is '" + attribution + "'");
    ok("MapLibre: shows HERE's attribution from the TileJSON: " + attribution);
    await ml.waitForTimeout(300);
    const mshot = await ml.screenshot({ path: shotdir + "/maplibre.png" });
    const mshare = await mapShare(blank, mshot);
    if (mshare < 0.5) fail("MapLibre: only " + (100 * mshare).toFixed(1) + " % of the screenshot is map colours");
    ok("MapLibre: screenshot " + (100 * mshare).toFixed(1) + " % map colours");

    // OpenLayers: optionsFromCapabilities on the WMTS capabilities.
    const ol = await browser.newPage({ viewport: { width: 800, height: 600 } });
    const ow = watch(ol, "olbrowser");
    const caps = url + "/here-proxy/wmts/1.0.0/WMTSCapabilities.xml?indice=olbrowser";
    await ol.goto(url + "/clients/openlayers.html?layer=base-explore.day&caps=" +
      encodeURIComponent(caps), { waitUntil: "load" });
    await waitFor(ol, "OpenLayers: rendered", () => window.olDone || window.olError, 30000);
    const olError = await ol.evaluate(() => window.olError);
    if (olError) fail("OpenLayers: " + olError);
    const tiles = await ol.evaluate(() => window.olTiles);
    if (tiles.errors > 0 || tiles.loaded < 4) fail("OpenLayers tiles: " + JSON.stringify(tiles));
    if (ow.bad.length) fail("OpenLayers: " + ow.bad.join(", "));
    const urls = await ol.evaluate(() => window.olUrls);
    if (!urls || urls.length !== 1 || !urls[0].startsWith(url + "/here-proxy/base/mc/{TileMatrix}/"))
      fail("OpenLayers: tile URL template " + JSON.stringify(urls));
    ok("OpenLayers: " + tiles.loaded + " tiles through the proxy from the WMTS capabilities, all 200");
    const oshot = await ol.screenshot({ path: shotdir + "/openlayers.png" });
    const oshare = await mapShare(blank, oshot);
    if (oshare < 0.5) fail("OpenLayers: only " + (100 * oshare).toFixed(1) + " % of the screenshot is map colours");
    ok("OpenLayers: screenshot " + (100 * oshare).toFixed(1) + " % map colours");
  } finally {
    await browser.close();
  }
})().catch((e) => {
  if (!process.exitCode) console.log("not ok - " + e.message);
  process.exitCode = 1;
});
