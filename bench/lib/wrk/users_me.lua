-- GET /users/me with the bench user's bearer token.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN unset")
