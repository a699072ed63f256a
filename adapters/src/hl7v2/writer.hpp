#pragma once
// Writes what a message maps to, inside the write job that stores the message (not a public interface).

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_parameters.hpp"

namespace caduceus::adapters::hl7v2 {

// What write_mapping can take ready-made, computed before the write job (on the thread that mapped the message,
// not on the store's single writer): each resource's id as if nothing matched its criteria (a new time-ordered id),
// and its body with the references to local names resolved to those ids, checked, with its search index values.
// In the job, a resource whose criteria match nothing, or whose body refers to no local name that turned out
// otherwise, is written from here; any other is computed in the job as before (the match stays decided there).
struct PreparedMapping {
  std::vector<std::string> ids;                // per resource: its id when new
  std::map<std::string, std::string> locals;   // local name -> Type/id, as predicted
  std::vector<std::vector<std::string>> uses;  // per resource: the local names its body refers to
  std::vector<std::optional<resources::Repository::Prepared>> writes;  // per resource; nullopt: computed in the job
};
PreparedMapping prepare_mapping(const resources::Repository& repository, const Mapping& mapping);

// Writes the mapping's resources in `txn`, then a Provenance of them:
// 1. each resource is matched by its criteria (local names such as urn:hl7v2:patient in them replaced by the
//    Type/id they were matched to, a resource matched once per message): one match is the resource to update, none
//    a new id; several: kPreconditionFailed (nothing is kept);
// 2. references to local names in every body become Type/id;
// 3. each is written (kAmend: merged into its current body) as an update of that id;
// 4. Provenance/hl7v2-<message id>: target = the versions written, entity = the stored message (identifier
//    urn:caduceus:hl7v2:message|<message id>), agent = the sending application, recorded = now, occurred = the
//    event's time.
// `keep_unchanged` (a replay): a resource whose body would stay the same (meta aside) is not written again; its
// current version is the one referred to.
// Returns the versions written ("Patient/ID/_history/N"), the Provenance's last.
fhir::Result<std::vector<std::string>> write_mapping(
    resources::Repository& repository, resources::Transaction& txn, resources::TenantId tenant, const Mapping& mapping,
    const std::shared_ptr<const resources::SearchParameterRegistry>& registry,
    const resources::InboundMessageRecord& message, bool keep_unchanged = false,
    const PreparedMapping* prepared = nullptr);

}  // namespace caduceus::adapters::hl7v2
