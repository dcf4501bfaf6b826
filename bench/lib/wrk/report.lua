-- Loaded first by every scenario script: numbers the threads, optionally checks every
-- response's status (BENCH_STRICT=1, used by --smoke: counts anything outside 200-299,
-- 3xx included, at some cost per response), and prints one machine-readable line at the end.
-- errors.status is wrk's own count of responses with status >= 400.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_no", #threads)
end

if os.getenv("BENCH_STRICT") == "1" then
  bad = 0  -- a global of each thread's own Lua state, read back in done()
  function response(status, headers, body)
    if status < 200 or status > 299 then bad = bad + 1 end
  end
end

function done(summary, latency, requests)
  local bad_total = -1  -- -1: not checked
  if os.getenv("BENCH_STRICT") == "1" then
    bad_total = 0
    for _, thread in ipairs(threads) do bad_total = bad_total + (thread:get("bad") or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d not2xx_strict=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, bad_total, e.connect, e.read, e.write, e.timeout))
end
