// k6 load script for hereproxy (for people who have k6; contrib/bench/run
// uses wrk). It ramps to 100 virtual users and requests the warm working
// set of contrib/bench/zipf.lua: TILES distinct tiles and INDICES indice
// labels with Zipf-like popularity, so a run after contrib/bench/run's warm
// scenario (or after a warm-up of its own) measures cache hits.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 contrib/bench/k6.js
//
// Environment (-e NAME=value): BASE_URL (default http://127.0.0.1:8080),
// TILES (50000), INDICES (50), ZIPF_S (1.0), Z (16), X0 (30000), Y0 (20000),
// WIDTH (250), FORMAT (png), RAMP (30s), HOLD (60s), VUS (100).
// Loopback or your own test hosts only.
import http from "k6/http";
import { check } from "k6";

const BASE = __ENV.BASE_URL || "http://127.0.0.1:8080";
const NT = parseInt(__ENV.TILES || "50000", 10);
const NI = parseInt(__ENV.INDICES || "50", 10);
const S = parseFloat(__ENV.ZIPF_S || "1.0");
const Z = parseInt(__ENV.Z || "16", 10);
const X0 = parseInt(__ENV.X0 || "30000", 10);
const Y0 = parseInt(__ENV.Y0 || "20000", 10);
const W = parseInt(__ENV.WIDTH || "250", 10);
const FORMAT = __ENV.FORMAT || "png";
const VUS = parseInt(__ENV.VUS || "100", 10);

export const options = {
  discardResponseBodies: true,
  stages: [
    { duration: __ENV.RAMP || "30s", target: VUS },
    { duration: __ENV.HOLD || "60s", target: VUS },
    { duration: "10s", target: 0 },
  ],
  thresholds: {
    http_req_failed: ["rate<0.001"],
    "http_req_duration{name:tile}": ["p(99)<100"],
  },
};

// Cumulative distribution of 1/r^s over ranks 1..n (one per VU).
function cdf(n, s) {
  const c = new Float64Array(n);
  let sum = 0;
  for (let r = 1; r <= n; r++) {
    sum += 1 / Math.pow(r, s);
    c[r - 1] = sum;
  }
  for (let r = 0; r < n; r++) c[r] /= sum;
  return c;
}

// 0-based rank of the first cumulative value >= u.
function draw(c, u) {
  let lo = 0;
  let hi = c.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (c[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const tiles = cdf(NT, S);
const indices = cdf(NI, S);

export default function () {
  const r = draw(tiles, Math.random());
  const i = draw(indices, Math.random());
  const url = `${BASE}/here-proxy/base/mc/${Z}/${X0 + (r % W)}/${Y0 + Math.floor(r / W)}/${FORMAT}` +
    `?indice=client-${String(i).padStart(2, "0")}`;
  const res = http.get(url, { tags: { name: "tile" } });
  check(res, { "status 200": (x) => x.status === 200 });
}
