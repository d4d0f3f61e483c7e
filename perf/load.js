// k6 load test in the original system's shape: one row per request, a share of requests
// repeating one fixed payload (cache hits), the rest each a new row (cache misses).
//
//   k6 run perf/load.js                                  # ramp: 1 min up to VUS, 5 min held
//   MODE=rate RATE=830 DURATION=5m k6 run perf/load.js   # open model: RATE requests/s
//   MODE=rate SCENARIOS=legacy:0.5:200,v2:0:100 k6 run perf/load.js   # several at once
//
// Environment (defaults in brackets):
//   BASE_URL [http://127.0.0.1:8080]  ROUTE legacy|v1|v2 [legacy]  MODEL_NAME [housing]
//   CACHE_RATE share of requests that repeat the fixed payload, 0..1 [0]
//   MODE ramp|rate [ramp]
//   ramp: VUS [50] RAMP [1m] HOLD [5m] SLEEP seconds between a VU's requests [0]
//   rate: RATE requests/s [830] DURATION [5m] PRE_VUS [50] MAX_VUS [400]
//   SCENARIOS (rate only) several open-model scenarios at once, in place of ROUTE,
//     CACHE_RATE and RATE: comma-separated ROUTE:CACHE_RATE:RATE; scenario k is named
//     ROUTE_k (a `scenario` tag on its requests) and gets its own PRE_VUS and MAX_VUS [none]
//   UNIQUE_BASE first unique Population value, so runs against one cache never meet [1000];
//     iteration i of scenario k of N uses UNIQUE_BASE + i*N + k, unique across scenarios
//   P99_MS threshold on the P99 latency [50]
//   SUMMARY_JSON file for the end-of-test summary as JSON [none]
//
// The fixed payload is the first row of tests/data/sample.json, whose keys are in the
// model's feature order; a unique payload is that row with Population replaced.

import http from "k6/http";
import { check, sleep } from "k6";
import exec from "k6/execution";

const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:8080";
const ROUTE = __ENV.ROUTE || "legacy";
const MODEL_NAME = __ENV.MODEL_NAME || "housing";
const CACHE_RATE = Number(__ENV.CACHE_RATE || "0");
const MODE = __ENV.MODE || "ramp";
const RATE = Number(__ENV.RATE || "830");
const SLEEP = Number(__ENV.SLEEP || "0");
const UNIQUE_BASE = Number(__ENV.UNIQUE_BASE || "1000");
const P99_MS = Number(__ENV.P99_MS || "50");

const SAMPLE = JSON.parse(open("../tests/data/sample.json"))[0];
const FEATURES = Object.keys(SAMPLE);

const ROUTES = {
  legacy: {
    path: "/predict",
    body: (row) => [row],
    prediction: (r) => r.json("prediction.0"),
  },
  v1: {
    path: `/v1/models/${MODEL_NAME}:predict`,
    body: (row) => ({ instances: [FEATURES.map((f) => row[f])] }),
    prediction: (r) => r.json("predictions.0"),
  },
  v2: {
    path: `/v2/models/${MODEL_NAME}/infer`,
    body: (row) => ({
      inputs: [
        {
          name: "input-0",
          shape: [1, FEATURES.length],
          datatype: "FP64",
          data: FEATURES.map((f) => row[f]),
        },
      ],
    }),
    prediction: (r) => r.json("outputs.0.data.0"),
  },
};
// The scenarios: one called "load" from ROUTE, CACHE_RATE and RATE, or those of SCENARIOS.
function mix() {
  if (!__ENV.SCENARIOS) {
    return [{ name: "load", route: ROUTE, cacheRate: CACHE_RATE, rate: RATE }];
  }
  if (MODE !== "rate") {
    throw new Error(`SCENARIOS needs MODE=rate, got ${MODE}`);
  }
  return __ENV.SCENARIOS.split(",").map((spec, k) => {
    const [route, cacheRate, rate] = spec.split(":");
    return { name: `${route}_${k}`, route, cacheRate: Number(cacheRate), rate: Number(rate) };
  });
}
const MIX = mix();
for (const { route, cacheRate, rate } of MIX) {
  if (!(route in ROUTES)) {
    throw new Error(`ROUTE must be one of ${Object.keys(ROUTES)}, got ${route}`);
  }
  if (!(cacheRate >= 0 && cacheRate <= 1)) {
    throw new Error(`CACHE_RATE must be within 0..1, got ${cacheRate}`);
  }
  if (!(rate > 0)) {
    throw new Error(`RATE must be positive, got ${rate}`);
  }
}
const TARGETS = Object.fromEntries(
  MIX.map((s, k) => {
    const route = ROUTES[s.route];
    const fixedBody = JSON.stringify(route.body(SAMPLE));
    return [s.name, { ...s, index: k, api: route, url: BASE_URL + route.path, fixedBody }];
  }),
);
const TOTAL_RATE = MIX.reduce((sum, s) => sum + s.rate, 0);
const PARAMS = { headers: { "Content-Type": "application/json" } };

function scenario(rate) {
  if (MODE === "rate") {
    return {
      executor: "constant-arrival-rate",
      rate,
      timeUnit: "1s",
      duration: __ENV.DURATION || "5m",
      preAllocatedVUs: Number(__ENV.PRE_VUS || "50"),
      maxVUs: Number(__ENV.MAX_VUS || "400"),
    };
  }
  if (MODE === "ramp") {
    const vus = Number(__ENV.VUS || "50");
    return {
      executor: "ramping-vus",
      startVUs: 0,
      stages: [
        { duration: __ENV.RAMP || "1m", target: vus },
        { duration: __ENV.HOLD || "5m", target: vus },
      ],
      gracefulRampDown: "5s",
    };
  }
  throw new Error(`MODE must be ramp or rate, got ${MODE}`);
}

const thresholds = {
  http_req_failed: ["rate<0.01"],
  checks: ["rate>0.99"],
  http_req_duration: [`p(99)<${P99_MS}`],
  // Per-kind latencies in the summary (a threshold makes k6 report the sub-metric).
  "http_req_duration{payload:repeat}": ["max>=0"],
  "http_req_duration{payload:unique}": ["max>=0"],
};
if (MODE === "rate") {
  // The generator could not keep up with RATE: fewer than 1% of iterations may be dropped.
  thresholds.dropped_iterations = [`rate<${TOTAL_RATE / 100}`];
}
if (MIX.length > 1) {
  for (const { name } of MIX) {
    thresholds[`http_req_duration{scenario:${name}}`] = ["max>=0"];
  }
}

export const options = {
  scenarios: Object.fromEntries(MIX.map((s) => [s.name, scenario(s.rate)])),
  thresholds,
  summaryTrendStats: ["avg", "min", "med", "p(50)", "p(90)", "p(95)", "p(99)", "max"],
};

// Iteration i repeats the fixed payload when the running count of repeats steps up, so
// exactly cacheRate of the iterations repeat, spread evenly, with no random numbers.
function repeats(i, cacheRate) {
  return Math.floor((i + 1) * cacheRate) > Math.floor(i * cacheRate);
}

export default function () {
  const target = TARGETS[exec.scenario.name];
  const i = exec.scenario.iterationInTest;
  const repeat = repeats(i, target.cacheRate);
  const population = UNIQUE_BASE + i * MIX.length + target.index;
  const body = repeat
    ? target.fixedBody
    : JSON.stringify(target.api.body({ ...SAMPLE, Population: population }));
  const response = http.post(target.url, body, {
    ...PARAMS,
    tags: { payload: repeat ? "repeat" : "unique" },
  });
  check(response, {
    "status is 200": (r) => r.status === 200,
    "body has a numeric prediction": (r) => {
      try {
        return Number.isFinite(target.api.prediction(r));
      } catch (e) {
        return false;
      }
    },
  });
  if (SLEEP > 0) {
    sleep(SLEEP);
  }
}

function ms(values, stat) {
  return values[stat] === undefined ? "n/a" : `${values[stat].toFixed(2)} ms`;
}

export function handleSummary(data) {
  const m = data.metrics;
  const duration = m.http_req_duration.values;
  const reqs = m.http_reqs ? m.http_reqs.values : { count: 0, rate: 0 };
  const failed = m.http_req_failed ? m.http_req_failed.values.rate : 0;
  const dropped = m.dropped_iterations ? m.dropped_iterations.values.count : 0;
  const crossed = Object.entries(m)
    .flatMap(([name, metric]) =>
      Object.entries(metric.thresholds || {})
        .filter(([, result]) => !result.ok)
        .map(([threshold]) => `${name} ${threshold}`),
    )
    .join(", ");
  const what = __ENV.SCENARIOS
    ? `SCENARIOS=${__ENV.SCENARIOS}`
    : `${ROUTE} CACHE_RATE=${CACHE_RATE}`;
  const line =
    `${what} ${MODE}: ${reqs.count} requests ` +
    `(${reqs.rate.toFixed(1)}/s), P50 ${ms(duration, "p(50)")}, ` +
    `P90 ${ms(duration, "p(90)")}, P95 ${ms(duration, "p(95)")}, P99 ${ms(duration, "p(99)")}, ` +
    `failed ${(100 * failed).toFixed(2)}%, dropped ${dropped}; ` +
    `thresholds ${crossed ? "crossed: " + crossed : "ok"}\n`;
  const out = { stdout: line };
  if (__ENV.SUMMARY_JSON) {
    out[__ENV.SUMMARY_JSON] = JSON.stringify(data, null, 2);
  }
  return out;
}
