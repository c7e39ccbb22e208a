-- wrk script: POST the bytes of the file named by $BODY_FILE with the Content-Type in
-- $CONTENT_TYPE (both set by bench/e2e.py). The body is read once; every request sends it.
local path = assert(os.getenv("BODY_FILE"), "BODY_FILE not set")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = assert(os.getenv("CONTENT_TYPE"), "CONTENT_TYPE not set")
