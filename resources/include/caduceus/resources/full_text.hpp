#pragma once

#include <string>
#include <string_view>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_parameters.hpp"

namespace caduceus::resources {

// Full-text search: `_text` (the narrative) and `_content` (all the resource's text), search.html#text and
// search.html#content, over an SQLite FTS5 index (unicode61, case and accents folded).

// Whether p is `_text` or `_content`, which the full-text index serves.
bool is_full_text(const SearchParameter& p) noexcept;

// The text of a resource for the full-text index, from one walk of its JSON with its R4 definition: `narrative`
// gets the top-level text.div with its markup removed (XHTML tags and comments dropped, character references
// decoded); `content` gets the values of its `string` and `markdown` elements (names, addresses, displays, texts,
// notes, identifier values, extensions' valueString...) and the narratives of contained resources, space-separated.
// Left out, as HAPI FHIR leaves them out of _content: codes, ids, URIs, dates and times, numbers, booleans and
// Reference.reference (an address: the reference parameters search it). Both are appended to.
void extract_full_text(const fhir::json::Value& resource, const Definitions& definitions, std::string& narrative,
                       std::string& content);

// Appends the text of an XHTML fragment (tags and comments become spaces, entities are decoded).
void append_xhtml_text(std::string_view xhtml, std::string& out);

// Turns a FHIR full-text value into an FTS5 MATCH expression. Words and "quoted phrases" are terms (each becomes
// an FTS5 string, so user text is never FTS5 syntax); AND, OR and NOT (upper case) combine them, parentheses
// group, and adjacent terms are ANDed. NOT is binary (`cancer NOT benign`). A value that is not of this form (an
// operator without an operand, an unclosed quote or parenthesis, a term without a letter or digit) is kInvalid,
// with a message for the parameter's 400.
fhir::Result<std::string> fts5_match_expression(std::string_view value);

}  // namespace caduceus::resources
