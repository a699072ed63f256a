#include "caduceus/fhir/search_text.hpp"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

namespace caduceus::fhir::search {

std::string normalize_for_search(std::string_view utf8) {
  // ASCII alone (most codes, names and displays) needs none of ICU: NFKD and NFC leave it as it is, it has no
  // combining marks, its white space is \t \n \v \f \r and space, and case folding maps A-Z to a-z.
  std::string out;
  out.reserve(utf8.size());
  bool pending_space = false;
  for (char ch : utf8) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) return detail::normalize_for_search_unicode(utf8);
    if (c == ' ' || (c >= '\t' && c <= '\r')) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) {
      out.push_back(' ');
      pending_space = false;
    }
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : ch);
  }
  return out;
}

namespace detail {

std::string normalize_for_search_unicode(std::string_view utf8) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfkd = icu::Normalizer2::getNFKDInstance(status);
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return std::string(utf8);  // ICU's data missing: compare as written
  icu::UnicodeString text =
      icu::UnicodeString::fromUTF8(icu::StringPiece(utf8.data(), static_cast<int32_t>(utf8.size())));
  icu::UnicodeString decomposed = nfkd->normalize(text, status);
  if (U_FAILURE(status)) return std::string(utf8);
  icu::UnicodeString kept;
  bool pending_space = false;
  for (int32_t i = 0; i < decomposed.length();) {
    UChar32 c = decomposed.char32At(i);
    i += U16_LENGTH(c);
    if (u_charType(c) == U_NON_SPACING_MARK) continue;
    if (u_isUWhiteSpace(c)) {
      pending_space = !kept.isEmpty();
      continue;
    }
    if (pending_space) {
      kept.append(static_cast<UChar>(' '));
      pending_space = false;
    }
    kept.append(c);
  }
  kept.foldCase();
  icu::UnicodeString composed = nfc->normalize(kept, status);
  if (U_FAILURE(status)) composed = kept;
  std::string out;
  composed.toUTF8String(out);
  return out;
}

}  // namespace detail

}  // namespace caduceus::fhir::search
