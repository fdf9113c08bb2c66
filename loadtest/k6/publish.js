// Publish load on stock k6: POST /sse at a fixed rate; the run fails (exit
// 99) when more than 1% of publishes fail or p95 of their duration passes
// P95_MS. See loadtest/k6/README.md.
//
//   k6 run --no-usage-report -e TINYSSE_URL=http://127.0.0.1:1983 -e RATE=500 -e DURATION=30s loadtest/k6/publish.js
import http from "k6/http";
import { check } from "k6";

const BASE = __ENV.TINYSSE_URL || "http://127.0.0.1:1983";
const PUB_PATH = __ENV.PUB_PATH || "/sse";
const RATE = Number(__ENV.RATE || 200);
const DURATION = __ENV.DURATION || "10s";
const P95_MS = Number(__ENV.P95_MS || 50);
const SIZE = Number(__ENV.SIZE || 100);

// A load generator aims at loopback unless told otherwise.
if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(BASE) && __ENV.ALLOW_REMOTE !== "1") {
  throw new Error(`TINYSSE_URL ${BASE} is not a loopback http:// origin; set ALLOW_REMOTE=1 to load it anyway`);
}

export const options = {
  scenarios: {
    publish: {
      executor: "constant-arrival-rate",
      rate: RATE,
      timeUnit: "1s",
      duration: DURATION,
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
  },
  thresholds: {
    http_req_failed: ["rate<0.01"],
    http_req_duration: [`p(95)<${P95_MS}`],
    checks: ["rate>0.99"],
  },
};

const pad = "x".repeat(SIZE);
const params = { headers: { "Content-Type": "application/json" } };

export default function () {
  // data carries the send time (unix ms) as "ts": k6/x/sse measures
  // delivery latency from it (loadtest/k6/subscribe.js).
  const data = JSON.stringify({ ts: Date.now(), vu: __VU, iter: __ITER, pad });
  const res = http.post(BASE + PUB_PATH, JSON.stringify({ event: "load", data }), params);
  check(res, { "published (202)": (r) => r.status === 202 });
}
