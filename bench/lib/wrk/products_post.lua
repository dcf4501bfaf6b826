-- POST /products/ with a JSON body; the bench user's token is sent too, so that the
-- scenario also works with PRODUCT_WRITE_ACCESS=user (public routes ignore it).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN unset")
wrk.body = '{"name": "wrk product", "description": "created by wrk", "price": 19.99, "in_stock": true}'
