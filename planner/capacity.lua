-- Closed-loop load for `python -m planner measure`: print one JSON line of results.
--   wrk -s capacity.lua URL -- get                            GET URL (a health check)
--   wrk -s capacity.lua URL -- post FIXED PREFIX SUFFIX BASE RATE
--       POST; request i repeats FIXED (a cache hit) when floor((i+1)*RATE) > floor(i*RATE),
--       else sends PREFIX .. (BASE + i) .. SUFFIX (a new row, a cache miss): exactly RATE
--       of the requests repeat, spread evenly, as perf/load.js does. One thread only.
local counter = 0

function init(args)
  mode = args[1]
  if mode == "get" then
    wrk.method = "GET"
    return
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  fixed, prefix, suffix = args[2], args[3], args[4]
  base, rate = tonumber(args[5]), tonumber(args[6])
end

function request()
  if mode == "get" then
    return wrk.format(nil, nil, nil, nil)
  end
  local i = counter
  counter = counter + 1
  if math.floor((i + 1) * rate) > math.floor(i * rate) then
    return wrk.format(nil, nil, nil, fixed)
  end
  return wrk.format(nil, nil, nil, prefix .. string.format("%d", base + i) .. suffix)
end

function done(summary, latency, requests)
  local e = summary.errors
  local points = {0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9}
  local parts = {string.format('"p0":%d', latency.min)}
  for _, p in ipairs(points) do
    table.insert(parts, string.format('"p%s":%d', p, latency:percentile(p)))
  end
  table.insert(parts, string.format('"p100":%d', latency.max))
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"latency_us":{%s},"mean_us":%.1f}\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    table.concat(parts, ","), latency.mean))
end
