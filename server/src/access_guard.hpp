#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "caduceus/resources/access_filter.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/server/authorizer.hpp"
#include "caduceus/server/http_types.hpp"

namespace caduceus::server {

// For an interaction on one resource (read, vread, instance history, update, patch, delete): 403 with an
// OperationOutcome when type/id exists and `access` (the request's access filter for the interaction's permission)
// hides it; nullopt when it may proceed (no filter, visible, or no such resource: the interaction answers 404).
// A deleted resource has no search index left to decide by: with `deleted_hides` (its old versions would be
// shown) it is refused, else it proceeds (the interaction answers 410, showing nothing).
std::optional<Response> refuse_hidden(resources::Store& store, resources::TenantId tenant,
                                      const std::shared_ptr<const resources::SearchParameterRegistry>& registry,
                                      const std::shared_ptr<const resources::AccessFilter>& access,
                                      std::string_view type, std::string_view id, bool deleted_hides);

}  // namespace caduceus::server
