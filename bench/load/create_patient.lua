-- wrk script: durable creates. Every request POSTs the same Patient to the URL given to wrk (.../fhir/Patient);
-- the server assigns a new id each time. At the end it prints "not-201: N", the answers that were not 201 Created.
--   wrk -t2 -c64 -d10s --latency -s bench/load/create_patient.lua http://127.0.0.1:PORT/fhir/Patient

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Accept"] = "application/fhir+json"
wrk.body = [[{"resourceType":"Patient","active":true,]] ..
  [["identifier":[{"system":"http://example.org/mrn","value":"bench-0001"}],]] ..
  [["name":[{"use":"official","family":"Benchmark","given":["Load","Test"]}],]] ..
  [["telecom":[{"system":"phone","value":"555-0100","use":"home"}],]] ..
  [["gender":"female","birthDate":"1980-04-12",]] ..
  [["address":[{"line":["1 Main Street"],"city":"Springfield","postalCode":"12345","country":"US"}]}]]

-- Counts the answers that are not 201 (bench/load/status_count.lua).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
require("status_count")(201)
