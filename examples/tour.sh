#!/usr/bin/env bash
# A tour of the REST API with curl. Start the server first (`make run`), then: bash examples/tour.sh
# BASE may point elsewhere: BASE=http://127.0.0.1:9000/fhir bash examples/tour.sh
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8080/fhir}
HERE=$(cd "$(dirname "$0")" && pwd)
JSON='Content-Type: application/fhir+json'
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "What the server can do (CapabilityStatement, first lines)"
curl -s "$BASE/metadata?_pretty=true" | sed -n 1,20p

step "Create a patient (POST): 201, Location, ETag W/\"1\""
created=$(curl -s -D - -o /tmp/caduceus-tour-patient.json -H "$JSON" --data-binary @"$HERE/patient.json" "$BASE/Patient")
echo "$created" | grep -iE '^(HTTP|location|etag|last-modified)'
id=$(sed -E 's/.*"id":"([^"]+)".*/\1/' /tmp/caduceus-tour-patient.json)
echo "id: $id"

step "Read it back (GET)"
curl -s "$BASE/Patient/$id?_pretty=true"

step "Conditional read: If-None-Match W/\"1\" gives 304"
curl -s -o /dev/null -w '%{http_code}\n' -H 'If-None-Match: W/"1"' "$BASE/Patient/$id"

step "Record a temperature for the patient (37.50 stays 37.50)"
sed "s/PATIENT_ID/$id/" "$HERE/observation.json" | curl -s -H "$JSON" --data-binary @- "$BASE/Observation"; echo

step "Update with If-Match (PUT): version 2"
sed -E "s/\"resourceType\": \"Patient\",/\"resourceType\": \"Patient\", \"id\": \"$id\",/; s/\"active\": true/\"active\": false/" \
  "$HERE/patient.json" > /tmp/caduceus-tour-update.json
curl -s -o /dev/null -w '%{http_code}\n' -X PUT -H "$JSON" -H 'If-Match: W/"1"' \
  --data-binary @/tmp/caduceus-tour-update.json "$BASE/Patient/$id"

step "The same If-Match again is stale: 412 with an OperationOutcome"
curl -s -X PUT -H "$JSON" -H 'If-Match: W/"1"' --data-binary @/tmp/caduceus-tour-update.json "$BASE/Patient/$id"; echo

step "An invalid patient: 400, one issue per problem, each naming its element"
curl -s -H "$JSON" --data-binary @"$HERE/bad-patient.json" "$BASE/Patient?_pretty=true"; echo

step "Version 1 is still there (vread)"
curl -s -o /dev/null -w '%{http_code}\n' "$BASE/Patient/$id/_history/1"

step "History of the patient (Bundle type history, newest first)"
curl -s "$BASE/Patient/$id/_history" | cut -c1-600; echo ' ...'

step "Delete it; then a read answers 410 Gone"
curl -s -X DELETE "$BASE/Patient/$id"; echo
curl -s -o /dev/null -w '%{http_code}\n' "$BASE/Patient/$id"

if curl -s "$BASE/metadata" | grep -q '"search-type"'; then
  step "Search: the temperature, with its patient included"
  curl -s "$BASE/Observation?code=http://loinc.org%7C8310-5&_include=Observation:subject&_total=accurate" | cut -c1-400; echo ' ...'
else
  step "Search is off on this server (it runs with --search-index false)"
fi

step "Health, readiness and metrics"
root=${BASE%/fhir}
curl -s "$root/healthz"; curl -s "$root/readyz"
curl -s "$root/metrics" | grep caduceus_http_requests_total | sed -n 1,5p
