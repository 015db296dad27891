-- wrk script: every request comes "from" a new client IP via X-Forwarded-For
-- (the bench config trusts 127.0.0.1/32 as a proxy), so chatgate's per-IP
-- limiter gets one new bucket per request. Run with one thread (-t1).
-- BENCH_IP_START: index of the first address (run.sh runs short rounds and
-- moves it on); BENCH_IP_BASE: first octet, so another pass uses fresh addresses.
local auth = os.getenv("BENCH_AUTH")
local n = tonumber(os.getenv("BENCH_IP_START") or "0")
local base = tonumber(os.getenv("BENCH_IP_BASE") or "10")
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()

function request()
  local ip = string.format("%d.%d.%d.%d", base + math.floor(n / 16777216) % 256,
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  n = n + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. auth,
    ["X-Forwarded-For"] = ip,
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
end
