-- PUT /products/{id} (a partial update: name and price), the id drawn at random from the
-- seeded products; the bench user's token is sent as in products_post.lua.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
dofile(os.getenv("BENCH_LUA") .. "/ids.lua")
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN unset"),
}
local body = '{"name": "wrk updated", "price": 24.5, "in_stock": false}'

function request()
  return wrk.format("PUT", "/products/" .. random_id(), headers, body)
end
