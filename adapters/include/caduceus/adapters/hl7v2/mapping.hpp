#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/adapters/hl7v2/datatypes.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/fhir/json.hpp"

namespace caduceus::adapters::hl7v2 {

// One resource a message yields, written as a conditional update (`criteria`, a FHIR search such as
// identifier=urn:oid:1.2|123, as (name, value) pairs, values with FHIR search escapes) so that the same message or a
// later one updates it instead of adding another.
//
// A message's resources are written in their order (writer.cpp: write_mapping).
struct MappedResource {
  std::string type;
  fhir::json::Value resource;
  std::vector<std::pair<std::string, std::string>> criteria;
  // The name by which the message's other resources refer to this one, as {"reference": local} in their bodies or
  // as a criteria value (e.g. "urn:hl7v2:patient"): the writer replaces it with Type/id. "" when none does.
  std::string local;
  // kUpdate: a conditional update with `resource`. kAmend: the one resource that matches keeps its body, with the
  // members of `resource` merged in (arrays: the items it lacks are added; anything else: replaced); created from
  // `resource` when nothing matches (A40: the merged patient is only marked).
  enum class Write { kUpdate, kAmend } write = Write::kUpdate;
};

// What a message maps to. `problems` that are not warnings mean the message is not processed (AE).
struct Mapping {
  std::vector<MappedResource> resources;
  std::vector<Problem> problems;
  // When the event happened (EVN-2 or MSH-7, as a FHIR dateTime; "" when unknown): the Provenance's occurred.
  std::string occurred;
  // The interface's time zone (the message's), for the times without an offset that the mapper reads.
  TimeZone time_zone;
};

// A mapper for one kind of message, from its parsed form to resources.
using MessageMapper = Mapping (*)(const Message& message);

// The mapper for a message type and trigger event, or nullptr when this type is not processed (yet): the table
// that later mappers join.
MessageMapper find_mapper(std::string_view type, std::string_view trigger);
// Whether the type has any mapper (to tell an unsupported event from an unsupported type).
bool type_supported(std::string_view type);

// The data type maps (map_cx, map_xpn, map_xad, map_xtn, map_cwe, v2_date_to_fhir_date, ...) are in
// datatypes.hpp.

// PID -> Patient: PID-2, PID-3, PID-4 -> identifier, PID-5 -> name, PID-7 -> birthDate, PID-8 -> gender, PID-11 ->
// address, PID-13 and PID-14 -> telecom, PID-29/30 -> deceased. Criteria: the first PID-3. Local name
// urn:hl7v2:patient.
Mapping map_adt_patient(const Message& message);
// The Patient of one PID segment (as map_adt_patient), or nullopt with the reason in `problems`.
std::optional<MappedResource> map_pid(const Segment& pid, const TimeZone& zone, std::vector<Problem>& problems);
// AdministrativeSex (table 0001) -> administrative-gender; "" when not in the table.
std::string_view administrative_gender(std::string_view v2_sex);
// ADT A01, A02, A03, A04, A05, A08, A11, A13, A31 (adt.cpp): the Patient, the Encounter of PV1/PV2, a
// RelatedPerson per NK1 and a Coverage per IN1, in one transaction. A40 (merge): the survivor (PID) and the
// merged patient (MRG). See README "HL7 v2 ADT mapping".
Mapping map_adt(const Message& message);
Mapping map_adt_merge(const Message& message);

}  // namespace caduceus::adapters::hl7v2
