#include "caduceus/resources/access_filter.hpp"

namespace caduceus::resources {

std::shared_ptr<const AccessFilter> deny_all_access() {
  static const auto none = std::make_shared<const AccessFilter>();
  return none;
}

std::optional<SearchQuery> visible_id_query(const SearchParameterRegistry& registry, const std::string& type,
                                            const std::string& id, std::shared_ptr<const AccessFilter> access) {
  const SearchParameter* by_id = registry.find(type, "_id");
  if (by_id == nullptr) return std::nullopt;
  SearchQuery q;
  q.type = type;
  q.count = 1;
  Criterion c;
  c.name = "_id";
  c.parameter = by_id;
  c.values.push_back(id);
  q.criteria.push_back(std::move(c));
  q.access = std::move(access);
  return q;
}

fhir::Result<bool> is_visible(Store& store, TenantId tenant, const SearchParameterRegistry& registry,
                              const std::string& type, const std::string& id,
                              std::shared_ptr<const AccessFilter> access) {
  if (!access) return true;
  auto q = visible_id_query(registry, type, id, std::move(access));
  if (!q) return false;
  auto page = store.search(tenant, *q);
  if (!page) return std::unexpected(page.error());
  return !page->entries.empty();
}

}  // namespace caduceus::resources
