#pragma once

// Full text (_text, _content) on PostgreSQL: the text kept in idx_text, and the FTS5 match expression that the
// shared search SQL binds (search_sql.cpp) turned into a tsquery.
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::resources::pg {

// The text stored in idx_text.narrative or .content: folded as string search folds it (case, accents, width:
// fhir::search::normalize_for_search, as SQLite's unicode61 remove_diacritics does), at most kMaxFullTextBytes
// (cut at a space or a character boundary), so that its tsvector stays under PostgreSQL's 1 MB limit.
inline constexpr std::size_t kMaxFullTextBytes = 192 * 1024;
std::string full_text_document(std::string_view text);

// An FTS5 expression as full_text.hpp's fts5_match_expression writes it ("quoted" terms, AND, OR, NOT,
// parentheses) as a PostgreSQL tsquery expression over bound values: each term becomes
// `phraseto_tsquery('simple', $n)` with its folded text appended to `terms`, $n numbered from first_param on;
// AND is &&, OR ||, and `a NOT b` is `a && !!b`. kInvalid for what is not of that form.
fhir::Result<std::string> tsquery_sql(std::string_view fts5, int first_param, std::vector<std::string>& terms);

}  // namespace caduceus::resources::pg
