#include "postgres_explain.hpp"

#include <algorithm>
#include <charconv>

#include "caduceus/fhir/json.hpp"

namespace caduceus::resources::pg {

namespace {

namespace json = fhir::json;

std::string text_of(const json::Value& node, std::string_view key) {
  const json::Value* v = node.find(key);
  return v != nullptr ? v->text() : std::string();
}

std::int64_t rows_of(const json::Value& node) {
  const std::string t = text_of(node, "Plan Rows");
  double d = 0;
  std::from_chars(t.data(), t.data() + t.size(), d);
  return static_cast<std::int64_t>(d);
}

// "Index Scan using idx_token_value on idx_token t1 (estimated rows 12)"
std::string detail_of(const json::Value& node) {
  std::string d = text_of(node, "Node Type");
  if (const std::string strategy = text_of(node, "Strategy"); !strategy.empty() && strategy != "Plain")
    d = strategy + " " + d;
  if (const std::string index = text_of(node, "Index Name"); !index.empty()) d += " using " + index;
  if (const std::string rel = text_of(node, "Relation Name"); !rel.empty()) {
    d += " on " + rel;
    if (const std::string alias = text_of(node, "Alias"); !alias.empty() && alias != rel) d += " " + alias;
  }
  if (const std::string cond = text_of(node, "Index Cond"); !cond.empty()) d += " (" + cond + ")";
  d += " (estimated rows " + std::to_string(rows_of(node)) + ")";
  return d;
}

void walk(const json::Value& node, std::int64_t parent, ExplainedStatement& out) {
  PlanStep step;
  step.id = static_cast<std::int64_t>(out.steps.size()) + 1;
  step.parent = parent;
  step.detail = detail_of(node);
  out.steps.push_back(step);
  const std::string type = text_of(node, "Node Type");
  if (type == "Seq Scan") out.sequential_scan = true;
  if (const std::string index = text_of(node, "Index Name"); !index.empty())
    if (std::find(out.indexes.begin(), out.indexes.end(), index) == out.indexes.end()) out.indexes.push_back(index);
  if (const json::Value* plans = node.find("Plans"); plans != nullptr && plans->is_array())
    for (const json::Value& child : plans->items()) walk(child, step.id, out);
}

}  // namespace

fhir::Result<ExplainedStatement> explain(Connection& c, const std::string& sql, const std::vector<Param>& params) {
  auto r = c.exec("EXPLAIN (FORMAT JSON) " + sql, params);
  if (!r) return std::unexpected(to_error(r.error(), "explain"));
  if (r->rows() < 1) return fhir::fail(fhir::ErrorKind::kInternal, "exception", "EXPLAIN returned no plan");
  auto doc = json::parse(r->view(0, 0));
  if (!doc || !doc->is_array() || doc->items().empty() || doc->items()[0].find("Plan") == nullptr)
    return fhir::fail(fhir::ErrorKind::kInternal, "exception", "EXPLAIN returned a plan that is not JSON");
  const json::Value& top = *doc->items()[0].find("Plan");
  ExplainedStatement out;
  walk(top, 0, out);
  // The matches: below what only limits, counts, orders or removes duplicates.
  const json::Value* node = &top;
  for (;;) {
    const std::string type = text_of(*node, "Node Type");
    const json::Value* plans = node->find("Plans");
    if ((type == "Limit" || type == "Aggregate" || type == "Sort" || type == "Incremental Sort" || type == "Unique" ||
         type == "Subquery Scan") &&
        plans != nullptr && plans->is_array() && !plans->items().empty()) {
      node = &plans->items()[0];
      continue;
    }
    break;
  }
  out.estimated_rows = rows_of(*node);
  return out;
}

}  // namespace caduceus::resources::pg
