-- wrk script: GET /users/{i}/items/{(i * 7) % 1000} for i = 0..4095, cycled (the paths of
-- scenarios.ROUTE_VARIED_PATHS), so a router that caches path -> match cannot skip its
-- search: a per-path cache is not fast routing.
local i = 0
request = function()
  local path = string.format("/users/%d/items/%d", i, (i * 7) % 1000)
  i = (i + 1) % 4096
  return wrk.format("GET", path)
end
