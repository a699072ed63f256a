#pragma once

// The explainer on PostgreSQL: EXPLAIN (FORMAT JSON) of a statement with its parameters bound, read into the plan
// steps the explainer shows (caduceus/resources/store/store.hpp StatementPlan).
#include <cstdint>
#include <string>
#include <vector>

#include "caduceus/resources/store/store.hpp"
#include "pg_connection.hpp"

namespace caduceus::resources::pg {

struct ExplainedStatement {
  // One step per plan node, depth first: "Index Scan using idx_token_value on idx_token t1 (estimated rows 12)",
  // parent = the id of the node it feeds (0 for the top one).
  std::vector<PlanStep> steps;
  // The indexes the plan reads (Index Scan, Index Only Scan, Bitmap Index Scan), in order of first use.
  std::vector<std::string> indexes;
  // PostgreSQL's estimate of the rows the statement works through: the estimate of the top node below any Limit,
  // Aggregate, Sort or Unique (so for a page or a count: the matches it expects).
  std::int64_t estimated_rows = 0;
  // Whether some node reads a whole table (Seq Scan).
  bool sequential_scan = false;
};

// Runs EXPLAIN (FORMAT JSON) `sql` with `params` on the connection. Errors: the database's (kUnavailable).
fhir::Result<ExplainedStatement> explain(Connection& c, const std::string& sql, const std::vector<Param>& params);

}  // namespace caduceus::resources::pg
