-- wrk script: durable creates of a typical vital-sign Observation (bench of writes with the search index on).
-- Each request varies the subject (one of 1,000 patients), the effective time and the value, so the index rows
-- land where real ones would. At the end it prints "not-201: N", the answers that were not 201 Created.
--   wrk -t2 -c64 -d10s --latency -s bench/load/create_observation.lua http://127.0.0.1:PORT/fhir/Observation

local counter = 0

function init(args)
  counter = (seed or 1) * 1000003
end

function request()
  counter = counter + 1
  local patient = counter % 1000
  local second = counter % 60
  local minute = math.floor(counter / 60) % 60
  local hour = math.floor(counter / 3600) % 24
  local body = string.format(
    '{"resourceType":"Observation","status":"final",' ..
    '"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category",' ..
    '"code":"vital-signs","display":"Vital Signs"}]}],' ..
    '"code":{"coding":[{"system":"http://loinc.org","code":"8310-5","display":"Body temperature"}],' ..
    '"text":"Body temperature"},' ..
    '"subject":{"reference":"Patient/bench-%d"},' ..
    '"encounter":{"reference":"Encounter/bench-enc-%d"},' ..
    '"effectiveDateTime":"2026-11-%02dT%02d:%02d:%02dZ",' ..
    '"issued":"2026-11-%02dT%02d:%02d:%02d.000Z",' ..
    '"valueQuantity":{"value":%d.%d,"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"}}',
    patient, counter % 5000, 1 + counter % 28, hour, minute, second, 1 + counter % 28, hour, minute, second,
    36 + counter % 3, counter % 10)
  return wrk.format("POST", nil, {["Content-Type"] = "application/fhir+json"}, body)
end

-- Counts the answers that are not 201 (bench/load/status_count.lua).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
require("status_count")(201)
