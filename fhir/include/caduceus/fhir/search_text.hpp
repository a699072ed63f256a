#pragma once

#include <string>
#include <string_view>

namespace caduceus::fhir::search {

// The form in which string search parameters compare text (search.html#string: case- and accent-insensitive):
// compatibility-decomposed (NFKD), combining marks removed, case-folded (ß -> ss), runs of white space made one
// space and trimmed, back to UTF-8 (NFC). "  Élodie  MÜLLER " -> "elodie muller". Invalid UTF-8 sequences become
// U+FFFD. Uses ICU.
std::string normalize_for_search(std::string_view utf8);

namespace detail {
// normalize_for_search through ICU for any text; normalize_for_search itself takes a shorter way for ASCII.
std::string normalize_for_search_unicode(std::string_view utf8);
}  // namespace detail

}  // namespace caduceus::fhir::search
