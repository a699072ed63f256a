-- wrk script: small transaction Bundles (a Patient and an Observation that refers to it by urn:uuid), each
-- answered after its commit. At the end it prints "not-200: N", the answers that were not 200 OK.
--   wrk -t1 -c1 -d10s --latency -s bench/load/transaction.lua http://127.0.0.1:PORT/fhir
--   wrk -t2 -c16 -d10s --latency -s bench/load/transaction.lua http://127.0.0.1:PORT/fhir

local counter = 0

function init(args)
  counter = (seed or 1) * 1000003
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"resourceType":"Bundle","type":"transaction","entry":[' ..
    '{"fullUrl":"urn:uuid:%08x-0000-4000-8000-000000000001","resource":{"resourceType":"Patient",' ..
    '"identifier":[{"system":"http://example.org/mrn","value":"tx-%d"}],"name":[{"family":"Transaction",' ..
    '"given":["Load"]}],"gender":"female","birthDate":"1980-04-12"},"request":{"method":"POST","url":"Patient"}},' ..
    '{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",' ..
    '"code":"8310-5"}]},"subject":{"reference":"urn:uuid:%08x-0000-4000-8000-000000000001"},' ..
    '"effectiveDateTime":"2026-11-25T10:00:00Z","valueQuantity":{"value":37.%d,"unit":"Cel",' ..
    '"system":"http://unitsofmeasure.org","code":"Cel"}},"request":{"method":"POST","url":"Observation"}}]}',
    counter, counter, counter, counter % 10)
  return wrk.format("POST", nil, {["Content-Type"] = "application/fhir+json"}, body)
end

-- Counts the answers that are not 200 (bench/load/status_count.lua).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
require("status_count")(200)
