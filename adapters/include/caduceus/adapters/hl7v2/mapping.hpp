#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/fhir/json.hpp"

namespace caduceus::adapters::hl7v2 {

// One resource a message yields, written as a conditional update (`criteria`, a FHIR search such as
// identifier=urn:oid:1.2|123, as (name, value) pairs, values with FHIR search escapes) so that the same message or a
// later one updates it instead of adding another.
//
// `local_ref`, when not empty, is a placeholder (such as "urn:hl7v2:1") that resources later in the same Mapping
// use as a Reference.reference to this one: once this resource is written, those references become its
// "Type/id" (resolve_local_references). A message's resources are written in their order.
struct MappedResource {
  std::string type;
  fhir::json::Value resource;
  std::vector<std::pair<std::string, std::string>> criteria;
  std::string local_ref;
};

// Replaces every Reference.reference in `resource` that is a key of `written` (a placeholder) by its value.
void resolve_local_references(fhir::json::Value& resource, const std::map<std::string, std::string>& written);

// What a message maps to. `problems` that are not warnings mean the message is not processed (AE).
struct Mapping {
  std::vector<MappedResource> resources;
  std::vector<Problem> problems;
};

// A mapper for one kind of message, from its parsed form to resources.
using MessageMapper = Mapping (*)(const Message& message);

// The mapper for a message type and trigger event, or nullptr when this type is not processed (yet): the table
// that later mappers join.
MessageMapper find_mapper(std::string_view type, std::string_view trigger);
// Whether the type has any mapper (to tell an unsupported event from an unsupported type).
bool type_supported(std::string_view type);

// Data types (v2-to-FHIR IG data type maps), each from one repetition of a field. nullopt when it yields nothing.
std::optional<fhir::json::Value> map_cx(const Segment& s, std::size_t field, std::size_t rep);   // Identifier
std::optional<fhir::json::Value> map_xpn(const Segment& s, std::size_t field, std::size_t rep);  // HumanName
std::optional<fhir::json::Value> map_xad(const Segment& s, std::size_t field, std::size_t rep);  // Address
std::optional<fhir::json::Value> map_xtn(const Segment& s, std::size_t field, std::size_t rep,
                                         std::string_view default_use);  // ContactPoint

// A v2 date/time (DT, DTM, TS.1: YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]) as a FHIR date with the same precision
// (YYYY, YYYY-MM, YYYY-MM-DD; a time part is dropped). nullopt when the text is not such a date.
std::optional<std::string> v2_date_to_fhir_date(std::string_view text);

// PID -> Patient (ADT A01, A04, A08, A31 for now): PID-2, PID-3, PID-4 -> identifier, PID-5 -> name, PID-7 ->
// birthDate, PID-8 -> gender, PID-11 -> address, PID-13 and PID-14 -> telecom. Criteria: the first PID-3.
Mapping map_adt_patient(const Message& message);

}  // namespace caduceus::adapters::hl7v2
