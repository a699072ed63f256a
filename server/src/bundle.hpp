#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/server/http_types.hpp"

namespace caduceus::server {

// Batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction), as POST [base] answers them.
//
// transaction: every write entry goes into ONE Store write job, all or nothing, in the spec's order (DELETE, POST,
// PUT and PATCH; GET/HEAD after the commit). POST entries get new ids, and every `reference` to an entry's fullUrl
// (urn:uuid:, urn:oid: or absolute; relative references resolve against the base of their entry's absolute fullUrl, R4
// rule) is rewritten to Type/id in every resource, at any depth. Conditional references ("Patient?identifier=s|1") and
// request.ifNoneExist are resolved inside the write job (Transaction::search_ids), after the DELETEs and before the
// POSTs: no or several matches of a conditional reference, or several of an ifNoneExist, fail the transaction (412).
// A failure answers with an OperationOutcome naming the entry (issue.expression Bundle.entry[n]...), nothing stored.
// PATCH entries (Type/id, or conditional Type?query: one match, else 404/412): the resource is a Binary whose data
// is the base64 of a JSON Patch (contentType application/json-patch+json) or a Parameters (FHIRPath Patch). The
// patch applies inside the write job to the version current there; the result passes the structural check (422
// naming the entry when it does not).
// batch: each entry on its own (one write job each, in order); a failing entry answers its own status and
// response.outcome. Batch entries may not refer to each other by urn:uuid / urn:oid (400 for that entry).
// Not supported yet (501 for the entry): PATCH, conditional update and conditional delete in a Bundle.
struct BundleOptions {
  std::string base_url;              // the server's public base (fullUrl and location of the answers)
  std::size_t max_entries = 10'000;  // beyond: 413
  bool return_resources = true;      // the resources written in the response entries (Prefer: return=minimal: no)
  resources::TenantId tenant = resources::kDefaultTenant;
  // An extra check of each resource written (type, resource, id of a PUT or empty), after the structural one;
  // its issues are reported as the structural ones (400 naming the entry). Optional.
  std::function<fhir::Result<void>(std::string_view, const fhir::json::Value&, const std::string&)> check;
};

struct BundleOutcome {
  int status = 200;
  std::string body;  // the transaction-response / batch-response Bundle, or an OperationOutcome when status >= 400
  std::vector<resources::VersionRecord> written;  // every version written (deletions included), durable
  // batch: the entries that failed (their index and error)
  std::vector<std::pair<std::size_t, fhir::Error>> failed;
};

class BundleProcessor {
 public:
  // `registry`: the search parameters for conditional references and ifNoneExist (nullptr: those answer 501).
  // `get`: answers a GET of an entry (request.url made into "/fhir/..." with the entry's conditional headers);
  // nullptr: GET entries answer 501.
  BundleProcessor(resources::Repository& repository, std::shared_ptr<const resources::SearchParameterRegistry> registry,
                  BundleOptions options, std::function<Response(const Request&)> get = nullptr)
      : repo_(repository), registry_(std::move(registry)), options_(std::move(options)), get_(std::move(get)) {}

  // Processes a parsed Bundle, whose entries' resources it takes (moves out) as it reads them. Waits for the writes
  // (call it where blocking is allowed).
  BundleOutcome process(fhir::json::Value&& bundle) const;

 private:
  resources::Repository& repo_;
  std::shared_ptr<const resources::SearchParameterRegistry> registry_;
  BundleOptions options_;
  std::function<Response(const Request&)> get_;
};

}  // namespace caduceus::server
