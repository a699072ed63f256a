#include "access_guard.hpp"

#include "caduceus/resources/access_guarded_store.hpp"
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
  if (current->deleted) {
    if (!deleted_hides) return std::nullopt;
    // Its history shows its old versions: visible when its last live version was.
    auto was = resources::is_visible_or_was(store, tenant, std::string(type), std::string(id), access);
    if (!was) return error_response(was.error());
    return *was ? std::nullopt : std::optional<Response>(forbidden());
  }
  if (registry == nullptr) return forbidden();  // without the search index nothing can be decided: refused
  auto visible = resources::is_visible(store, tenant, *registry, std::string(type), std::string(id), access);
  if (!visible) return error_response(visible.error());
  if (!*visible) return forbidden();
  return std::nullopt;
}

}  // namespace caduceus::server
