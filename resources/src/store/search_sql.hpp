#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

// A search as SQL over the resource table and the idx_* tables (SQLite dialect), with its bound values in order.
struct SqlQuery {
  using Bind = std::variant<std::int64_t, double, std::string>;
  std::string sql;
  std::vector<Bind> binds;
};

// `SELECT r.rid, r.id, r.type ... ORDER BY r.rid LIMIT n` for the page after `after_rid`, or (count_only) the number of
// matches. Errors: kNotSupported for what the query builder does not do yet (_sort,
// special parameters, terminology modifiers), kInvalid for a value that does not parse.
fhir::Result<SqlQuery> build_search_sql(TenantId tenant, const SearchQuery& query,
                                        std::optional<std::int64_t> after_rid, std::size_t limit, bool count_only);

// From the count_only query of build_search_sql: the number of matches, counting no further than `bound`
// (`SELECT COUNT(*) FROM (SELECT 1 ... LIMIT bound)`), for the explainer's row figures.
SqlQuery bounded_match_count_sql(const SqlQuery& count_sql, std::size_t bound);

// The (type, id) of the resources that `include` adds for the given resources of its source type: referenced
// by them (_include) or referring to them (_revinclude). `ids` are of type `source_type` for _include and of the
// referenced type(s) for _revinclude: `ids_type` says which.
SqlQuery build_include_sql(TenantId tenant, const Include& include, const std::string& ids_type,
                           const std::vector<std::string>& ids);

}  // namespace caduceus::resources
