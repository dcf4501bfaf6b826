-- A static GET of the URL given to wrk (GET /products/?limit=100).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
