-- POST JSON bodies with wrk, and print the results as one JSON line.
--   wrk -s perf/wrk.lua URL -- BODY                 every request sends BODY (cache hits)
--   wrk -s perf/wrk.lua URL -- PREFIX SUFFIX BASE   request n of thread t sends
--       PREFIX .. (BASE + t * 1e9 + n) .. SUFFIX, unique across threads (cache misses)
-- Built by perf/loadgen.py from harness/payloads.py's bodies.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if #args == 1 then
    wrk.body = args[1]
    request = nil -- a static request: wrk builds it once
    return
  end
  prefix, suffix = args[1], args[2]
  next_value = tonumber(args[3]) + id * 1e9
end

function request()
  next_value = next_value + 1
  return wrk.format(nil, nil, nil, prefix .. string.format("%d", next_value) .. suffix)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,' ..
    '"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
end
