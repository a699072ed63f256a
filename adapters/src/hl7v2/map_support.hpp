#pragma once

// Helpers shared by the order, result and schedule mappers (map_results.cpp, map_orders.cpp, map_schedule.cpp).

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/adapters/hl7v2/clinical_mapping.hpp"

namespace caduceus::adapters::hl7v2::support {

using fhir::json::Value;

inline constexpr const char* kV2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203";

// A (sub)component's text, trimmed; "" for absent and for the v2 null `""`.
std::string txt(const Segment& s, std::size_t field, std::size_t rep = 1, std::size_t c = 1, std::size_t sub = 1);

void set_str(Value& obj, std::string_view key, const std::string& v);
// Appends `v` to the array `key` of obj (made when missing).
void push(Value& obj, std::string_view key, Value v);
Value one(Value v);  // [v]
Value coding(const std::string& system, const std::string& code, const std::string& display = "");
Value concept_of(Value coding);  // {"coding":[coding]}
Value reference(const std::string& ref);

// "system|value" (FHIR search escapes) of an Identifier, or "value" when it has no system.
std::string token(const Value& identifier);

// Problems: a required field is empty (101), a value does not fit its type (102), a code is not in its table (103).
Problem required(const Segment& s, std::size_t field, const std::string& what, std::size_t component = 0);
Problem bad_value(const Segment& s, std::size_t field, const std::string& what, std::size_t component = 0);
Problem unknown_code(const Segment& s, std::size_t field, const std::string& what);
Problem warning(const Segment& s, std::size_t field, const std::string& what);

// The message's resources as they are added: each gets a placeholder (its local name), returned, that later
// resources reference it by.
std::string add(Mapping& out, std::string type, Value resource,
                std::vector<std::pair<std::string, std::string>> criteria);

// The Patient from the message's (first) PID, added first; its placeholder, or "" when there is no PID (a problem
// is added when `required`) or the PID has problems (added to out.problems).
std::string add_patient(const Message& m, Mapping& out, bool required);
// The Patient of one PID segment of the message (a message about several patients: ORU^R01's PATIENT_RESULT
// groups): its placeholder, or "" with the PID's problems.
std::string add_patient_of(const Segment& pid, const Message& m, Mapping& out);

// Sets obj[key] to the dateTime of s-field.component when it is valued; false (and a problem) when it is not a
// date. `instant`: the value must have a time (FHIR instant), seconds are filled in.
bool set_datetime(Value& obj, std::string_view key, const Segment& s, std::size_t field, std::size_t component,
                  Mapping& out, bool instant = false);

// A Quantity {value, unit, system, code} from a decimal literal and the units in s-field (CWE: a UCUM system
// gives system and code; else the unit's text only).
Value quantity(const std::string& decimal, const Segment* s, std::size_t unit_field, std::size_t unit_component = 0);

// A numeric field: its decimal, nullopt when empty; a problem when it is not a number (then `ok` is false).
std::optional<std::string> number(const Segment& s, std::size_t field, std::size_t component, Mapping& out, bool& ok);

// The segments of a message cut into orders, in order: an ORC starts one (an OBR right after it joins it; an OBR
// without an ORC before it starts its own); OBX, SPM, TQ1, RXE, RXR and the like go to the current order. OBX
// before an order's OBR, and segments before the first order, are not part of any.
struct SpecimenBlock {
  const Segment* spm = nullptr;
  std::vector<const Segment*> obx;
};
struct OrderBlock {
  const Segment* orc = nullptr;
  const Segment* obr = nullptr;
  std::vector<const Segment*> obx;
  std::vector<SpecimenBlock> specimens;
  std::vector<const Segment*> tq1;  // after ORC (before RXE)
  const Segment* rxe = nullptr;
  std::vector<const Segment*> tq1_encoded;  // after RXE
  std::vector<const Segment*> rxr;          // after RXE first, then those of RXO
  const Segment* pid = nullptr;             // the last PID before the order (its patient), if any
};
std::vector<OrderBlock> order_blocks(const Message& m);

// A ServiceRequest from an order's ORC and/or OBR (IG ORC[ServiceRequest], OBR[ServiceRequest]): its placeholder,
// or "" with problems. `fallback_status` when neither ORC-5 nor ORC-1 gives one.
std::string add_service_request(const OrderBlock& order, const std::string& patient, Mapping& out,
                                const std::string& fallback_status);

}  // namespace caduceus::adapters::hl7v2::support
