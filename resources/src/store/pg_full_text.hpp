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

// The words of a resource's text as idx_text.tsv holds them, in tsvector's input form: the folded narrative's and
// content's words (unicode61's words, as FTS5 on SQLite cuts them: runs of letters, digits and combining marks)
// numbered on from the narrative into the content, the narrative's with weight A (what _text searches). Made here
// rather than by to_tsvector() in PostgreSQL, whose parser costs it about three times as much CPU per resource as
// reading this form (and reads some tokens, an e-mail or 3.5, whole where FTS5 splits them).
std::string tsvector_literal(std::string_view narrative, std::string_view content);
// The same tsvector in PostgreSQL's binary form (what tsvectorrecv reads: the count of lexemes, then each lexeme's
// text, NUL, its count of positions and each position with its weight, big-endian): for a binary parameter, which
// PostgreSQL reads in a fraction of the time it parses the text form.
std::string tsvector_binary(std::string_view narrative, std::string_view content);

// A term's folded text as a tsquery of the same words: `'a' <-> 'b'` (a phrase keeps its order), each word `:A`
// when narrative_only (_text); empty when the text has no word (an empty tsquery, which matches nothing).
std::string tsquery_literal(std::string_view folded, bool narrative_only);

// An FTS5 expression as full_text.hpp's fts5_match_expression writes it ("quoted" terms, AND, OR, NOT,
// parentheses) as a PostgreSQL tsquery expression over bound values: each term becomes `$n::tsquery` with its
// tsquery_literal appended to `terms`, $n numbered from first_param on; AND is &&, OR ||, and `a NOT b` is
// `a && !!b`. kInvalid for what is not of that form.
fhir::Result<std::string> tsquery_sql(std::string_view fts5, int first_param, std::vector<std::string>& terms,
                                      bool narrative_only);

}  // namespace caduceus::resources::pg
