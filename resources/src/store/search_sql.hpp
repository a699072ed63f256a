#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
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
// matches. With query.sort, the rows are `rid, id, type, key1, ..., keyN` in the sort's order (then rid) and
// `after_rid` must be empty: use the overload with a SortPosition. Errors: kNotSupported for what the query builder
// does not do yet (special parameters, terminology modifiers), kInvalid for a value that does not parse.
fhir::Result<SqlQuery> build_search_sql(TenantId tenant, const SearchQuery& query,
                                        std::optional<std::int64_t> after_rid, std::size_t limit, bool count_only);

// The token parameters whose rows idx_patient_token repeats under the resource's patient: all but `identifier`
// (found by its value alone), `status` (a handful of values, which narrow a patient's resources little, and a row
// at a place of its own in the patient's range for every write) and the common ones (`_tag`, ...). Rows with no
// code are left out too.
inline bool patient_token_param(std::string_view code) noexcept {
  return code != "identifier" && code != "status" && !code.starts_with('_');
}
// The same as an SQL condition on the token rows aliased `t`.
inline constexpr const char* kPatientTokenParamSql =
    "t.param NOT IN ('identifier', 'status') AND substr(t.param, 1, 1) <> '_'";

// For the chart's search alone (`patient` and a code of its type, nothing else: no sort, _has, compartment or
// access filter), the page as `SELECT DISTINCT x.rid ... ORDER BY x.rid LIMIT n` from idx_patient_token only:
// the same matches as build_search_sql's page, in the same order, without a probe of the resource table per
// match (idx_patient_token holds rows only for the current, not deleted version of a resource of that tenant and
// type). For a store that finds a match's type and id without the database; nullopt for any other search.
std::optional<SqlQuery> build_patient_token_rids_sql(TenantId tenant, const SearchQuery& query,
                                                     std::optional<std::int64_t> after_rid, std::size_t limit);

// Where a page of a sorted search ends: the sort key values of its last row (nullopt where the row has no value
// for the key) and its rid. The next page starts after it (keyset paging), so writes elsewhere do not shift it.
struct SortPosition {
  std::vector<std::optional<SqlQuery::Bind>> keys;
  std::int64_t rid = 0;
};

// The page after `after` (nullptr: the first page) of a search with query.sort.
fhir::Result<SqlQuery> build_sorted_search_sql(TenantId tenant, const SearchQuery& query, const SortPosition* after,
                                               std::size_t limit);

// `_sort` as a canonical string ("status,-date"), what a sorted cursor is bound to.
std::string sort_spec(const SearchQuery& query);

// The opaque `_cursor` of a sorted search (base64url of the sort spec, the position and a check sum), and back.
// decode_sort_cursor checks it strictly against the query's sort: kInvalid naming `_cursor` when it is malformed,
// altered, or made for another `_sort`.
std::string encode_sort_cursor(const SearchQuery& query, const SortPosition& position);
fhir::Result<SortPosition> decode_sort_cursor(const SearchQuery& query, std::string_view cursor);

// From the count_only query of build_search_sql: the number of matches, counting no further than `bound`
// (`SELECT COUNT(*) FROM (SELECT 1 ... LIMIT bound)`), for the explainer's row figures.
SqlQuery bounded_match_count_sql(const SqlQuery& count_sql, std::size_t bound);

// The (type, id) of the resources that `include` adds for the given resources of its source type: referenced
// by them (_include) or referring to them (_revinclude). `ids` are of type `source_type` for _include and of the
// referenced type(s) for _revinclude: `ids_type` says which.
// With `access`, only the resources that it lets see are answered.
SqlQuery build_include_sql(TenantId tenant, const Include& include, const std::string& ids_type,
                           const std::vector<std::string>& ids, const AccessFilter* access = nullptr);

// The tenant under which a deleted resource keeps the index rows of its last live version (a deletion sets them
// aside rather than removing them; writing the resource again removes them): no query of the tenant's resources
// sees them, since every one filters on the tenant. History under an access filter decides by them.
constexpr TenantId set_aside_tenant(TenantId tenant) noexcept {
  return -1 - tenant;
}

// For history under an access filter: the condition "v.rid IN (SELECT r.rid FROM resource r WHERE ...)" that keeps
// the versions (aliased v) of the resources (of `type`, when not empty) whose current version is visible, or,
// for a deleted resource, whose last live version was (by its index rows set aside, set_aside_tenant).
fhir::Result<SqlQuery> build_access_condition(TenantId tenant, const AccessFilter& access, const std::string& type);

// Adds to page.included what the query's _include and _revinclude reach from page.entries (and, for :iterate, from
// what they add, 8 rounds at most): each resource once, none of the matches, at most `max_included` (then
// page.include_limit_reached). The backend runs the SQL and reads the versions: `targets` answers the (type, id)
// of build_include_sql's rows for (include, ids_type, ids); `load` the current version of one (nullopt: gone, or
// not to be shown). A deleted version is left out.
using IncludeTargets = std::function<fhir::Result<std::vector<std::pair<std::string, std::string>>>(
    const Include& include, const std::string& ids_type, const std::vector<std::string>& ids)>;
using IncludeLoad =
    std::function<fhir::Result<std::optional<VersionRecord>>(const std::string& type, const std::string& id)>;
fhir::Result<void> collect_includes(const SearchQuery& query, std::size_t max_included, SearchPage& page,
                                    const IncludeTargets& targets, const IncludeLoad& load);

}  // namespace caduceus::resources
