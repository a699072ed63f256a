-- wrk script: durable creates of Patients with typed identifiers, as Synthea writes them: a medical record number
-- (MR), a social security number (SS) and a driver's licence (DL), each with a type coding of v2-0203 and a value
-- that differs per request (random, as real identifiers land in an index at random positions). POSTs to the URL
-- given to wrk (.../fhir/Patient); prints "not-201: N" at the end.
--   wrk -t2 -c32 -d6s -s bench/load/create_patient_typed.lua http://127.0.0.1:PORT/fhir/Patient

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Accept"] = "application/fhir+json"

local v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
local n = 0

local function identifier(type_code, display, system, value)
  return string.format([[{"type":{"coding":[{"system":"%s","code":"%s","display":"%s"}],"text":"%s"},]] ..
                       [["system":"%s","value":"%s"}]], v2, type_code, display, display, system, value)
end

function init(args)
  math.randomseed(os.time() * 100 + (seed or 0))
end

function request()
  n = n + 1
  local mrn = string.format("%08x-%04x-%04x", math.random(0, 0x7fffffff), math.random(0, 0xffff), n % 0x10000)
  local ssn = string.format("999-%02d-%04d", math.random(10, 99), math.random(0, 9999))
  local dl = string.format("S%08d", math.random(0, 99999999))
  local body = [[{"resourceType":"Patient","identifier":[]] ..
    identifier("MR", "Medical Record Number", "http://hospital.smarthealthit.org", mrn) .. "," ..
    identifier("SS", "Social Security Number", "http://hl7.org/fhir/sid/us-ssn", ssn) .. "," ..
    identifier("DL", "Driver's License", "urn:oid:2.16.840.1.113883.4.3.25", dl) .. "]," ..
    [["name":[{"use":"official","family":"Benchmark","given":["Load","Test"]}],]] ..
    [["gender":"female","birthDate":"1980-04-12"}]]
  return wrk.format(nil, nil, nil, body)
end

-- Counts the answers that are not 201 (bench/load/status_count.lua).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
require("status_count")(201)
