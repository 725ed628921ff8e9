-- One wrk script for every workload (BENCH_WORKLOAD), printing one JSON line at the end.
-- Run with one thread (-t1): the PUT workload keeps its version counts in this Lua state.
local workload = os.getenv("BENCH_WORKLOAD")
local first_id = tonumber(os.getenv("BENCH_FIRST_ID"))
local last_id = tonumber(os.getenv("BENCH_LAST_ID"))
local headers = {["X-API-Key"] = os.getenv("BENCH_API_KEY"), ["Accept"] = "application/json"}
local json_headers = {
  ["X-API-Key"] = headers["X-API-Key"], ["Accept"] = "application/json",
  ["Content-Type"] = "application/json",
}
local sent = 0

function request()
  sent = sent + 1
  if workload == "get" then
    return wrk.format("GET", "/v1/users/" .. math.random(first_id, last_id), headers)
  elseif workload == "list" then
    return wrk.format("GET", "/v1/users?limit=20", headers)
  elseif workload == "post" then
    local body = string.format('{"name":"bench user %d","age":%d}', sent, sent % 120)
    return wrk.format("POST", "/v1/users", json_headers, body)
  elseif workload == "put" then
    -- Walk the ids in order: pass k over the table finds every user at version k (the
    -- runner adds fresh users, at version 1, for each run). A user's previous PUT finished long
    -- before its next one, since far fewer requests are in flight than there are users.
    local span = last_id - first_id + 1
    local id = first_id + (sent - 1) % span
    local version = math.floor((sent - 1) / span) + 1
    json_headers["If-Match"] = '"' .. version .. '"'
    local body = string.format('{"name":"renamed %d","age":%d}', sent, sent % 120)
    return wrk.format("PUT", "/v1/users/" .. id, json_headers, body)
  end
  error("unknown BENCH_WORKLOAD " .. tostring(workload))
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout + errors.status,
    errors.status, latency:percentile(50), latency:percentile(99)))
end
