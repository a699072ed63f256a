#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "caduceus/fhir/json.hpp"

namespace caduceus::fhir {

// The FHIR R4 primitive types (http://hl7.org/fhir/R4/datatypes.html#primitive).
enum class Primitive {
  kBoolean,
  kInteger,
  kString,
  kDecimal,
  kUri,
  kUrl,
  kCanonical,
  kBase64Binary,
  kInstant,
  kDate,
  kDateTime,
  kTime,
  kCode,
  kOid,
  kId,
  kMarkdown,
  kUnsignedInt,
  kPositiveInt,
  kUuid,
  kXhtml,
};

// "dateTime" -> kDateTime; nullopt for a name that is not a primitive type.
std::optional<Primitive> primitive_from_name(std::string_view name) noexcept;
std::string_view primitive_name(Primitive p) noexcept;

// Checks a JSON value against a primitive's definition: the JSON type (string, number, boolean) and the lexical
// form (the regex and value space the spec gives: a real calendar date, integer ranges, ...).
// Returns nullopt when valid, otherwise a diagnostic sentence such as
// "'1970-13-45' is not a valid date (month 13)".
std::optional<std::string> check_primitive(Primitive p, const json::Value& value);

}  // namespace caduceus::fhir
