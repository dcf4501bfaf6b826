-- Product ids created by the seeding (one a line in BENCH_IDS_FILE), and a random pick.
local ids = {}
local path = assert(os.getenv("BENCH_IDS_FILE"), "BENCH_IDS_FILE unset")
for line in assert(io.open(path)):lines() do
  if line ~= "" then ids[#ids + 1] = line end
end
assert(#ids > 0, "no product ids in BENCH_IDS_FILE")

function init(args)
  math.randomseed(os.time() * 97 + (thread_no or 0))
end

function random_id()
  return ids[math.random(#ids)]
end
