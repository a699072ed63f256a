-- Shared by the wrk scripts that write: counts, in every wrk thread (each runs its own Lua state), the answers whose
-- status is not the expected one, and prints "not-<status>: N" at the end (bench/load/*.sh read that line). It
-- defines wrk's setup(), response() and done(); setup gives each thread a `seed` (1, 2, ...) that a script's
-- init() may use to make its requests differ from the other threads'. Load it from a script with:
--   package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
--   require("status_count")(201)
local threads = {}

return function(expected)
  unexpected = 0

  function setup(thread)
    table.insert(threads, thread)
    thread:set("seed", #threads)
  end

  function response(status, headers, body)
    if status ~= expected then
      unexpected = unexpected + 1
    end
  end

  function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do
      total = total + (thread:get("unexpected") or 0)
    end
    io.write(string.format("not-%d: %d\n", expected, total))
  end
end
