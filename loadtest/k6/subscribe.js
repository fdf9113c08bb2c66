// Subscriber load: SUBS SSE streams held for the run while a publisher
// posts RATE messages per second; the k6/x/sse extension (loadtest/k6/xk6sse,
// so this needs a k6 built with xk6: see loadtest/k6/README.md) reports
// sse_events and sse_delivery_latency (publish to delivery, from the "ts"
// the publisher puts in each message). The run fails (exit 99) on a stream
// error, a failed publish, or delivery latency p95 over P95_MS.
//
//   k6 run --no-usage-report -e TINYSSE_URL=http://127.0.0.1:1983 -e SUBS=200 -e RATE=100 -e DURATION=30s loadtest/k6/subscribe.js
import http from "k6/http";
import sse from "k6/x/sse";
import { check } from "k6";

const BASE = __ENV.TINYSSE_URL || "http://127.0.0.1:1983";
const SUB_PATH = __ENV.SUB_PATH || "/sse";
const PUB_PATH = __ENV.PUB_PATH || "/sse";
const SUBS = Number(__ENV.SUBS || 100);
const RATE = Number(__ENV.RATE || 100);
const DURATION = __ENV.DURATION || "10s";
const P95_MS = Number(__ENV.P95_MS || 100);
const SIZE = Number(__ENV.SIZE || 100);

if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(BASE) && __ENV.ALLOW_REMOTE !== "1") {
  throw new Error(`TINYSSE_URL ${BASE} is not a loopback http:// origin; set ALLOW_REMOTE=1 to load it anyway`);
}

// Seconds in a k6 duration like "10s" or "2m".
function seconds(d) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(d);
  if (!m) throw new Error(`DURATION ${d}: want a number and ms, s or m`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60 }[m[2]];
}
const WARMUP = 1; // seconds the streams get to connect before the first publish
const HOLD = seconds(DURATION) + WARMUP + 2; // and to receive the last one

export const options = {
  scenarios: {
    subscribers: {
      executor: "per-vu-iterations",
      vus: SUBS,
      iterations: 1,
      maxDuration: `${HOLD + 10}s`,
      exec: "subscribe",
    },
    publisher: {
      executor: "constant-arrival-rate",
      rate: RATE,
      timeUnit: "1s",
      duration: DURATION,
      startTime: `${WARMUP}s`,
      preAllocatedVUs: 5,
      maxVUs: 20,
      exec: "publish",
    },
  },
  thresholds: {
    sse_delivery_latency: [`p(95)<${P95_MS}`],
    sse_stream_errors: ["count==0"],
    sse_events: ["count>0"],
    http_req_failed: ["rate<0.01"],
  },
};

export function subscribe() {
  const res = sse.open(BASE + SUB_PATH, { duration: `${HOLD}s` });
  check(res, {
    "stream opened (200)": (r) => r.status === 200,
    "stream ended cleanly": (r) => r.error === "",
  });
}

const pad = "x".repeat(SIZE);
const params = { headers: { "Content-Type": "application/json" } };

export function publish() {
  const data = JSON.stringify({ ts: Date.now(), pad });
  const res = http.post(BASE + PUB_PATH, JSON.stringify({ event: "load", data }), params);
  check(res, { "published (202)": (r) => r.status === 202 });
}
