-- wrk script: GET requests rotating through the paths listed in a file (one a line, e.g. one search per patient),
-- so that consecutive requests ask different questions. Each thread starts at a different line.
--   wrk -t2 -c64 -d10s --latency -s bench/load/paths.lua http://127.0.0.1:PORT -- /tmp/paths.txt

local threads = {}
local thread_number = 0

function setup(thread)
  thread:set("number", thread_number)
  thread_number = thread_number + 1
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  local file = assert(io.open(args[1], "r"), "paths.lua: cannot open " .. tostring(args[1]))
  for line in file:lines() do
    if line ~= "" then table.insert(paths, line) end
  end
  file:close()
  assert(#paths > 0, "paths.lua: no paths in " .. args[1])
  next_index = (number * 7919) % #paths
end

function request()
  next_index = next_index % #paths + 1
  return wrk.format("GET", paths[next_index], {["Accept"] = "application/fhir+json"})
end
