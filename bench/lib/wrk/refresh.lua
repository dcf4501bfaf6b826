-- POST /login/refresh: every connection rotates a refresh token of its own and keeps the new
-- one. The tokens come from BENCH_SESSIONS_FILE (one a line, seeded by lib/seed.py --sessions,
-- a few more than the connections), thread k taking lines k, k + BENCH_THREADS, ...; a thread
-- without a spare token logs in (BENCH_LOGIN_BODY) and rotates the refresh token of that login
-- from then on: done() prints how many such logins there were (REFRESH_LOGINS). A token is
-- never sent twice (a replay would end its session), and an answer without a new token (a
-- 401 from a lost session, say) counts as an error in wrk's status count and loses the token.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local strict_response = response  -- report.lua's status check, when BENCH_STRICT=1
local spare = {}  -- this thread's refresh tokens that no request carries right now
local json = { ["Content-Type"] = "application/json" }
local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local login_body = assert(os.getenv("BENCH_LOGIN_BODY"), "BENCH_LOGIN_BODY unset")
logins = 0  -- a global of each thread's own Lua state: the logins it made, read in done()
local all_threads, report_setup, report_done = {}, setup, done

function setup(thread)
  report_setup(thread)
  all_threads[#all_threads + 1] = thread
end

function done(summary, latency, requests)
  report_done(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(all_threads) do n = n + (thread:get("logins") or 0) end
  io.write(string.format("REFRESH_LOGINS %d\n", n))
end

function init(args)
  local path, threads = os.getenv("BENCH_SESSIONS_FILE"), tonumber(os.getenv("BENCH_THREADS") or "1")
  if path == nil or path == "" then return end
  local i = 0
  for line in assert(io.open(path)):lines() do
    if line ~= "" then
      if i % threads == thread_no - 1 then spare[#spare + 1] = line end
      i = i + 1
    end
  end
end

function request()
  local token = table.remove(spare)
  if token == nil then
    logins = logins + 1
    return wrk.format("POST", "/login/access-token", form, login_body)
  end
  return wrk.format("POST", "/login/refresh", json, '{"refresh_token": "' .. token .. '"}')
end

function response(status, headers, body)
  if strict_response then strict_response(status, headers, body) end
  local token = status == 200 and body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then spare[#spare + 1] = token end
end
