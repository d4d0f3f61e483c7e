// The original service's k6 load test, replayed in its own shape (a closed model): VUs ramp
// to 100 in 1 minute and hold for 5; each iteration calls GET /health, then POST /predict
// with a one-row body sent as the original sent it, `JSON.stringify(body)` with no
// Content-Type. A share CACHE_RATE of iterations send one fixed row (cache hits), the rest a
// random row (cache misses).
//
//   k6 run perf/original.js                             # as written: 100 VUs, no think time
//   RTT_MS=50 k6 run perf/original.js                   # the original's client round trip
//   CACHE_RATE=0.75 VUS=10 RAMP=5s HOLD=10s k6 run perf/original.js
//
// Environment (defaults in brackets):
//   BASE_URL [http://127.0.0.1:8080]  CACHE_RATE 0..1 [0]  VUS [100]  RAMP [1m]  HOLD [5m]
//   RTT_MS client-side delay before each request [0], standing in for the network between
//     the original's k6 (a laptop) and its cluster: its k6 reports show ~50 ms per request
//   P99_MS threshold on the P99 of every request [500], as the original's
//   SUMMARY_JSON file for the end-of-test summary as JSON [none]
//
// The fixed row is the first of tests/data/sample.json; random rows are drawn within the
// features' bounds (a fresh row each time: the cache cannot have seen it).

import http from "k6/http";
import { check, sleep } from "k6";

const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:8080";
const CACHE_RATE = Number(__ENV.CACHE_RATE || "0");
const VUS = Number(__ENV.VUS || "100");
const RTT_S = Number(__ENV.RTT_MS || "0") / 1000;
const P99_MS = Number(__ENV.P99_MS || "500");

if (!(CACHE_RATE >= 0 && CACHE_RATE <= 1)) {
  throw new Error(`CACHE_RATE must be within 0..1, got ${CACHE_RATE}`);
}

const FIXED = JSON.parse(open("../tests/data/sample.json"))[0];

export const options = {
  scenarios: {
    original: {
      executor: "ramping-vus",
      startVUs: 0,
      stages: [
        { duration: __ENV.RAMP || "1m", target: VUS },
        { duration: __ENV.HOLD || "5m", target: VUS },
      ],
      gracefulRampDown: "5s",
    },
  },
  thresholds: {
    http_req_duration: [`p(99)<${P99_MS}`],
    // Per-endpoint latencies in the summary (a threshold makes k6 report the sub-metric).
    "http_req_duration{endpoint:health}": ["max>=0"],
    "http_req_duration{endpoint:predict}": ["max>=0"],
    "http_req_duration{payload:repeat}": ["max>=0"],
    "http_req_duration{payload:unique}": ["max>=0"],
  },
  summaryTrendStats: ["avg", "min", "med", "p(50)", "p(90)", "p(95)", "p(99)", "max"],
};

function uniform(low, high) {
  return low + Math.random() * (high - low);
}

function randomRow() {
  return {
    MedInc: uniform(0.5, 15),
    HouseAge: uniform(1, 52),
    AveRooms: uniform(1, 10),
    AveBedrms: uniform(0.5, 3),
    Population: uniform(3, 5000),
    AveOccup: uniform(1, 6),
    Latitude: uniform(32.5, 42),
    Longitude: uniform(-124.3, -114.3),
  };
}

export default function () {
  if (RTT_S > 0) sleep(RTT_S);
  const health = http.get(`${BASE_URL}/health`, { tags: { endpoint: "health" } });
  check(health, { "health is 200": (r) => r.status === 200 });

  const repeat = Math.random() < CACHE_RATE;
  const body = JSON.stringify([repeat ? FIXED : randomRow()]);
  if (RTT_S > 0) sleep(RTT_S);
  const predicted = http.request("POST", `${BASE_URL}/predict`, body, {
    tags: { endpoint: "predict", payload: repeat ? "repeat" : "unique" },
  });
  check(predicted, {
    "predict is 200": (r) => r.status === 200,
    "predict has a prediction": (r) => {
      try {
        return Number.isFinite(r.json("prediction.0"));
      } catch (e) {
        return false;
      }
    },
  });
}

function ms(values, stat) {
  return values === undefined || values[stat] === undefined
    ? "n/a"
    : `${values[stat].toFixed(2)} ms`;
}

export function handleSummary(data) {
  const m = data.metrics;
  const all = m.http_req_duration ? m.http_req_duration.values : undefined;
  const predict = m["http_req_duration{endpoint:predict}"];
  const reqs = m.http_reqs ? m.http_reqs.values : { count: 0, rate: 0 };
  const checks = m.checks ? m.checks.values : { passes: 0, fails: 0 };
  const line =
    `original CACHE_RATE=${CACHE_RATE} VUS=${VUS} RTT_MS=${RTT_S * 1000}: ` +
    `${reqs.count} requests (${reqs.rate.toFixed(1)}/s), P50 ${ms(all, "p(50)")}, ` +
    `P99 ${ms(all, "p(99)")}; /predict P99 ${ms(predict && predict.values, "p(99)")}; ` +
    `checks failed ${checks.fails} of ${checks.passes + checks.fails}\n`;
  const out = { stdout: line };
  if (__ENV.SUMMARY_JSON) {
    out[__ENV.SUMMARY_JSON] = JSON.stringify(data, null, 2);
  }
  return out;
}
