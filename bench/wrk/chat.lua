-- wrk script: POST a fixed OpenAI-style chat request, print machine-readable
-- results. Env: BENCH_AUTH (bearer key, optional), BENCH_BODY_FILE (JSON body),
-- BENCH_DELAY_MS (optional: each connection waits this long after an answer
-- before its next request, so the load is paced below saturation),
-- BENCH_HEADERS (optional: more "Name: value" headers, one per line, e.g.
-- Portkey's x-portkey-provider), BENCH_UNIQUE=1 (optional: every request's
-- last message gets a unique suffix, so a response cache always misses).
local auth = os.getenv("BENCH_AUTH")
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  function delay()
    return pause
  end
end

if os.getenv("BENCH_UNIQUE") == "1" then
  -- The body ends with the last message's text, then `"}],...`: split there
  -- once, and put a per-thread counter in between on every request.
  local head, tail = wrk.body:match('^(.*)("}%].*)$')
  assert(head, "BENCH_UNIQUE needs a body whose messages end the list")
  -- BENCH_NONCE (one per wrk run) keeps a run's prompts apart from the last run's.
  local run, threads, tid, n = os.getenv("BENCH_NONCE") or "", 0, 0, 0
  function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
  end
  function init()
    tid = wrk.thread:get("tid") or 0
  end
  function request()
    n = n + 1
    return wrk.format(nil, nil, nil, string.format("%s (#%s-%d-%d)%s", head, run, tid, n, tail))
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
