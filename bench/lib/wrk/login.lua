-- POST /login/access-token, OAuth2 password form of the bench user (argon2: slow).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = assert(os.getenv("BENCH_LOGIN_BODY"), "BENCH_LOGIN_BODY unset")
