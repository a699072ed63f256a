#include "access_guard.hpp"

#include "caduceus/server/errors.hpp"

namespace caduceus::server {

using fhir::ErrorKind;

std::optional<Response> refuse_hidden(resources::Store& store, resources::TenantId tenant,
                                      const std::shared_ptr<const resources::SearchParameterRegistry>& registry,
                                      const std::shared_ptr<const resources::AccessFilter>& access,
                                      std::string_view type, std::string_view id, bool deleted_hides) {
  if (!access) return std::nullopt;
  auto forbidden = [&] {
    Response r = error_response(ErrorKind::kInvalid, "forbidden",
                                "The token does not give access to " + std::string(type) + "/" + std::string(id) +
                                    " (its scopes, patient context or the user's role leave it out)",
                                std::string(type));
    r.status = 403;
    r.interaction = "forbidden";
    return r;
  };
  auto current = store.read(tenant, type, id);
  if (!current) return std::nullopt;  // not found (or the store fails): the interaction answers that
  if (current->deleted) return deleted_hides ? std::optional<Response>(forbidden()) : std::nullopt;
  if (registry == nullptr) return forbidden();  // without the search index nothing can be decided: refused
  auto visible = resources::is_visible(store, tenant, *registry, std::string(type), std::string(id), access);
  if (!visible) return error_response(visible.error());
  if (!*visible) return forbidden();
  return std::nullopt;
}

}  // namespace caduceus::server
