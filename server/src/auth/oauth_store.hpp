// The OAuth tables (clients, used assertion ids, revoked tokens, grants) of the FHIR store, as the SMART token
// endpoint and the launch pages reach them: each access is one write transaction of the store.
#pragma once

#include <optional>
#include <string>

#include "caduceus/fhir/error.hpp"
#include "caduceus/resources/store/oauth_tables.hpp"
#include "caduceus/resources/store/store.hpp"

namespace caduceus::server::auth {

// Runs f(OAuthTables&) -> fhir::Result<void> in one write transaction of `store`; 501 when the store keeps no
// OAuth tables.
template <class F>
fhir::Result<void> with_oauth_tables(resources::Store& store, F&& f) {
  return store.write([&](resources::Transaction& t) -> fhir::Result<void> {
    resources::OAuthTables* tables = t.oauth_tables();
    if (tables == nullptr)
      return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported", "this store has no OAuth tables");
    return f(*tables);
  });
}

// The registered client `client_id` of `tenant`, if any.
inline fhir::Result<std::optional<resources::ClientRecord>> find_oauth_client(resources::Store& store,
                                                                              resources::TenantId tenant,
                                                                              const std::string& client_id) {
  std::optional<resources::ClientRecord> out;
  auto r = with_oauth_tables(store, [&](resources::OAuthTables& t) -> fhir::Result<void> {
    auto c = t.client(tenant, client_id);
    if (!c) return std::unexpected(c.error());
    out = std::move(*c);
    return {};
  });
  if (!r) return std::unexpected(r.error());
  return out;
}

}  // namespace caduceus::server::auth
