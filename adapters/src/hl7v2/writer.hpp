#pragma once
// Writes what a message maps to, inside the write job that stores the message (not a public interface).

#include <memory>
#include <string>
#include <vector>

#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_parameters.hpp"

namespace caduceus::adapters::hl7v2 {

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
    const resources::InboundMessageRecord& message, bool keep_unchanged = false);

}  // namespace caduceus::adapters::hl7v2
