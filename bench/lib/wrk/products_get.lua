-- GET /products/{id}, the id drawn at random from the seeded products.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
dofile(os.getenv("BENCH_LUA") .. "/ids.lua")

function request()
  return wrk.format("GET", "/products/" .. random_id())
end
