// Headless Chromium against the demo page (contrib/demo/index.html):
//   node demo_test.js URL SCREENSHOT INDICE
// Loads the page, waits until every visible tile has loaded with status 200,
// pans away and back, and waits until the /metrics panel shows hits for
// INDICE; then switches the page to MapLibre GL JS (the proxy's TileJSON),
// which must draw its tiles (screenshot SCREENSHOT with -maplibre before
// .png).  Prints "ok ..." lines; exits 1 with a reason on the first failure.
"use strict";
const { chromium } = require("playwright-core");

const [url, shot, indice] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

function fail(msg) {
  console.log("not ok - " + msg);
  process.exitCode = 1;
  throw new Error(msg);
}

async function visibleTilesLoaded(page) {
  // Tiles Leaflet shows inside the map's box, and whether each one finished.
  return page.evaluate(() => {
    const box = document.getElementById("map").getBoundingClientRect();
    const imgs = [...document.querySelectorAll("#map img.leaflet-tile")].filter((img) => {
      const r = img.getBoundingClientRect();
      return r.right > box.left && r.left < box.right && r.bottom > box.top && r.top < box.bottom;
    });
    const done = imgs.filter((img) => img.complete && img.naturalWidth === 256);
    return { visible: imgs.length, loaded: done.length };
  });
}

async function waitTiles(page, what) {
  const deadline = Date.now() + 20000;
  let st;
  while (Date.now() < deadline) {
    st = await visibleTilesLoaded(page);
    if (st.visible > 0 && st.loaded === st.visible) return st;
    await page.waitForTimeout(200);
  }
  fail(what + ": visible tiles did not load: " + JSON.stringify(st));
}

(async () => {
  const browser = await chromium.launch({
    executablePath, headless: true,
    // MapLibre needs WebGL: SwiftShader, Chromium's CPU renderer.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
      "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    const tiles = new Map(); // url -> status
    let requests = 0;
    const bad = [];
    page.on("response", (r) => {
      if (r.url().includes("/here-proxy/")) {
        tiles.set(r.url(), r.status());
        requests++;
        if (r.status() !== 200) bad.push(r.status() + " " + r.url());
      }
    });
    page.on("pageerror", (e) => bad.push("page error: " + e.message));
    await page.goto(url + "/?indice=" + encodeURIComponent(indice), { waitUntil: "load" });
    const first = await waitTiles(page, "first view");
    // A 700x700 map of 256 px tiles shows at least 9; fewer means Leaflet's
    // CSS did not apply (tiles in the page flow instead of a grid).
    if (first.visible < 9) fail("only " + first.visible + " tiles inside the map: is leaflet.css served as text/css?");
    if (bad.length) fail("non-200 tile responses: " + bad.join(", "));
    const sample = [...tiles.keys()][0] || "";
    if (!sample.includes("indice=" + indice)) fail("tile URL lacks indice=" + indice + ": " + sample);
    console.log("ok - first view: " + first.loaded + " visible tiles loaded, all 200 (" + tiles.size + " requests)");

    // Pan away (new tiles: misses), then back (tiles seen before: the
    // browser cache is off, so they come from the proxy's cache as hits).
    await page.evaluate(() => window.map.panBy([1500, 1200], { animate: false }));
    await waitTiles(page, "panned away");
    // Leaflet prunes the tiles it left behind once the new ones faded in.
    await page.waitForFunction((n) =>
      document.querySelectorAll("#map img.leaflet-tile").length <= n, first.visible * 3,
      { timeout: 10000 }).catch(() => {});
    await page.waitForTimeout(500);
    const requestsBefore = requests;
    await page.evaluate(() => window.map.panBy([-1500, -1200], { animate: false }));
    await waitTiles(page, "panned back");
    if (requests === requestsBefore) fail("panning back asked the proxy for nothing");
    if (bad.length) fail("non-200 tile responses: " + bad.join(", "));
    console.log("ok - panned away and back: " + requests + " tile responses, " + tiles.size + " distinct URLs, all 200");

    // The panel polls /metrics every 1.5 s.
    const deadline = Date.now() + 15000;
    let row = null;
    while (Date.now() < deadline) {
      row = await page.evaluate((ind) => {
        const tr = document.querySelector('#metrics tr[data-indice="' + ind + '"]');
        if (!tr) return null;
        const get = (c) => tr.querySelector("td." + c).textContent;
        return { requests: +get("requests"), hits: +get("hits"), misses: +get("misses"),
                 ratio: get("hit_ratio"), p50: get("p50") };
      }, indice);
      if (row && row.hits > 0) break;
      await page.waitForTimeout(300);
    }
    if (!row || !(row.hits > 0)) fail("the panel shows no hits for " + indice + ": " + JSON.stringify(row));
    console.log("ok - panel for " + indice + ": " + JSON.stringify(row));
    await page.screenshot({ path: shot });
    console.log("ok - screenshot " + shot);

    // The switch: MapLibre GL JS from /maplibre/, its source the TileJSON.
    const before = tiles.size;
    await page.selectOption("#lib", "maplibre");
    const mlDeadline = Date.now() + 30000;
    let state = null;
    while (Date.now() < mlDeadline) {
      state = await page.evaluate(() => ({
        map: !!window.mlmap, leaflet: !!window.map,
        done: !!(window.mlmap && window.mlmap.loaded() && window.mlmap.areTilesLoaded()),
        status: document.getElementById("status").textContent,
      }));
      if (state.done) break;
      await page.waitForTimeout(200);
    }
    if (!state || !state.done) fail("MapLibre did not draw: " + JSON.stringify(state));
    if (state.leaflet) fail("Leaflet's map is still there after the switch");
    if (bad.length) fail("non-200 responses with MapLibre: " + bad.join(", "));
    const mlTiles = [...tiles.keys()].slice(before).filter((u) => u.includes("/mc/"));
    if (mlTiles.length < 4) fail("MapLibre asked the proxy for " + mlTiles.length + " tiles");
    if (!mlTiles.every((u) => u.includes("indice=" + indice))) fail("a MapLibre tile lacks indice=" + indice);
    const attrib = await page.evaluate(() =>
      (document.querySelector(".maplibregl-ctrl-attrib-inner") || {}).textContent || "");
    if (!attrib.includes("\u00a9")) fail("MapLibre shows no attribution: '" + attrib + "'");
    const mlShot = shot.replace(/\.png$/, "-maplibre.png");
    await page.screenshot({ path: mlShot });
    console.log("ok - MapLibre switch: " + mlTiles.length + " tiles from the TileJSON, attribution '" +
      attrib + "', screenshot " + mlShot);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  if (!process.exitCode) console.log("not ok - " + e.message);
  process.exit(1);
});
