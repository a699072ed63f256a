// ORM^O01, OML^O21 -> Patient, ServiceRequest (IG ORC[ServiceRequest], OBR[ServiceRequest]); RDE^O11 ->
// Patient, MedicationRequest (our map: the IG has none finished for RXE; README "HL7 v2: orders, results,
// prescriptions, appointments").
#include <utility>

#include "map_support.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using fhir::json::Value;
using namespace support;

struct CodeMap {
  const char* v2;
  const char* fhir;
};
// OrderStatus (table 0038) -> medicationrequest-status.
constexpr CodeMap kMedicationOrderStatus[] = {{"CA", "cancelled"},        {"CM", "completed"}, {"DC", "stopped"},
                                              {"ER", "entered-in-error"}, {"HD", "on-hold"},   {"IP", "active"},
                                              {"RP", "stopped"},          {"SC", "active"}};
// OrderControlCode (table 0119) -> medicationrequest-status.
constexpr CodeMap kMedicationOrderControl[] = {
    {"NW", "active"},    {"OK", "active"},  {"RL", "active"},   {"RO", "active"},    {"XO", "active"},
    {"XX", "active"},    {"SC", "active"},  {"AF", "active"},   {"CA", "cancelled"}, {"OC", "cancelled"},
    {"CR", "cancelled"}, {"DC", "stopped"}, {"OD", "stopped"},  {"DR", "stopped"},   {"HD", "on-hold"},
    {"OH", "on-hold"},   {"HR", "on-hold"}, {"FU", "completed"}};
// Repeat patterns (table 0335) that v3-GTSAbbreviation has with the same code.
constexpr const char* kTimingCodes[] = {"BID", "TID", "QID", "AM",  "PM", "QD", "QOD", "Q1H", "Q2H", "Q3H",
                                        "Q4H", "Q6H", "Q8H", "BED", "WK", "MO", "QAM", "QPM", "QHS", "QWK"};

template <std::size_t N>
std::string lookup(const CodeMap (&table)[N], std::string_view code) {
  for (const CodeMap& c : table)
    if (code == c.v2) return c.fhir;
  return {};
}

std::vector<std::pair<std::string, std::string>> order_criteria(const std::optional<Value>& placer,
                                                                const std::optional<Value>& filler) {
  return {{"identifier", token(placer ? *placer : *filler)}};
}

}  // namespace

Mapping map_orm_o01(const Message& m) {
  Mapping out;
  std::string patient = add_patient(m, out, true);
  if (patient.empty()) return out;
  std::vector<OrderBlock> orders = order_blocks(m);
  if (orders.empty()) {
    Location l;
    l.segment = "ORC";
    out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l, "the message has no order (ORC or OBR)", false});
    return out;
  }
  for (const OrderBlock& o : orders)
    if (add_service_request(o, patient, out, "active").empty()) return out;
  return out;
}

Mapping map_rde_o11(const Message& m) {
  Mapping out;
  std::string patient = add_patient(m, out, true);
  if (patient.empty()) return out;
  std::vector<OrderBlock> orders = order_blocks(m);
  bool any = false;
  for (const OrderBlock& o : orders) {
    if (o.orc == nullptr) continue;
    const Segment& orc = *o.orc;
    if (o.rxe == nullptr) {
      Location l;
      l.segment = "RXE";
      out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l,
                                     "the order of ORC segment " + std::to_string(orc.position) + " has no RXE segment",
                                     false});
      return out;
    }
    any = true;
    const Segment& rxe = *o.rxe;
    Value mr = Value::object();
    mr.set("resourceType", Value::string("MedicationRequest"));
    std::optional<Value> placer = map_ei(orc, 2, 1, 0, "PLAC"), filler = map_ei(orc, 3, 1, 0, "FILL");
    if (!placer && !filler) {
      out.problems.push_back(
          required(orc, 2, "ORC-2 (placer order number) and ORC-3 (filler order number) are both empty"));
      return out;
    }
    Value ids = Value::array();
    if (placer) ids.push_back(*placer);
    if (filler) ids.push_back(*filler);
    mr.set("identifier", std::move(ids));
    std::string status = lookup(kMedicationOrderStatus, txt(orc, 5));
    if (status.empty()) status = lookup(kMedicationOrderControl, txt(orc, 1));
    if (status.empty()) status = "unknown";
    mr.set("status", Value::string(status));
    mr.set("intent", Value::string("order"));
    auto medication = map_cwe_triplets(rxe, 2);
    if (!medication) {
      out.problems.push_back(required(rxe, 2, "RXE-2 (give code) is empty"));
      return out;
    }
    mr.set("medicationCodeableConcept", std::move(*medication));
    mr.set("subject", reference(patient));
    bool ok = set_datetime(mr, "authoredOn", orc, 9, 1, out);
    std::optional<Value> requester = map_xcn_reference(orc, 12, 1, "Practitioner");
    if (!requester) requester = map_xcn_reference(rxe, 13, 1, "Practitioner");
    if (requester) mr.set("requester", std::move(*requester));

    // Dosage: RXE-7 text, RXE-1 or TQ1 timing, RXR route and site, RXE-3/4/5 dose.
    Value dosage = Value::object();
    std::string instructions = txt(rxe, 7, 1, 2);
    if (instructions.empty()) instructions = txt(rxe, 7, 1, 9);
    if (instructions.empty()) instructions = txt(rxe, 7, 1, 1);
    set_str(dosage, "text", instructions);
    Value timing = Value::object();
    Value bounds = Value::object();
    std::string pattern;
    if (!txt(rxe, 1).empty() || rxe.components(1) > 1) {  // RXE-1 (TQ): .2.1 repeat pattern, .4 start, .5 end
      pattern = txt(rxe, 1, 1, 2, 1);
      ok = set_datetime(bounds, "start", rxe, 1, 4, out) && ok;
      ok = set_datetime(bounds, "end", rxe, 1, 5, out) && ok;
    } else {
      const Segment* tq1 = !o.tq1_encoded.empty() ? o.tq1_encoded.front() : !o.tq1.empty() ? o.tq1.front() : nullptr;
      if (tq1 != nullptr) {  // TQ1-3 (RPT) .1 repeat pattern, TQ1-7 start, TQ1-8 end
        pattern = txt(*tq1, 3, 1, 1);
        ok = set_datetime(bounds, "start", *tq1, 7, 1, out) && ok;
        ok = set_datetime(bounds, "end", *tq1, 8, 1, out) && ok;
      }
    }
    if (!ok) return out;
    if (!pattern.empty()) {
      bool known = false;
      for (const char* k : kTimingCodes) known = known || pattern == k;
      Value code = known ? concept_of(coding("http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", pattern))
                         : Value::object();
      code.set("text", Value::string(pattern));
      timing.set("code", std::move(code));
    }
    if (!bounds.members().empty()) {
      Value repeat = Value::object();
      repeat.set("boundsPeriod", std::move(bounds));
      timing.set("repeat", std::move(repeat));
    }
    if (!timing.members().empty()) dosage.set("timing", std::move(timing));
    if (!o.rxr.empty()) {
      if (auto site = map_cwe_triplets(*o.rxr.front(), 2)) dosage.set("site", std::move(*site));
      if (auto route = map_cwe_triplets(*o.rxr.front(), 1)) dosage.set("route", std::move(*route));
      if (auto method = map_cwe_triplets(*o.rxr.front(), 4)) dosage.set("method", std::move(*method));
    }
    auto low = number(rxe, 3, 1, out, ok);
    auto high = number(rxe, 4, 1, out, ok);
    if (!ok) return out;
    if (low || high) {
      Value dose = Value::object();
      if (low && high && *low != *high) {
        Value range = Value::object();
        range.set("low", quantity(*low, &rxe, 5));
        range.set("high", quantity(*high, &rxe, 5));
        dose.set("doseRange", std::move(range));
      } else {
        dose.set("doseQuantity", quantity(low ? *low : *high, &rxe, 5));
      }
      dosage.set("doseAndRate", one(std::move(dose)));
    }
    if (!dosage.members().empty()) mr.set("dosageInstruction", one(std::move(dosage)));

    // Dispense: RXE-10 amount in RXE-11 units, RXE-12 refills.
    Value dispense = Value::object();
    auto amount = number(rxe, 10, 1, out, ok);
    if (!ok) return out;
    if (amount) dispense.set("quantity", quantity(*amount, &rxe, 11));
    if (std::string refills = txt(rxe, 12); !refills.empty()) {
      auto n = v2_decimal(refills);
      if (!n || n->find('.') != std::string::npos || n->front() == '-') {
        out.problems.push_back(bad_value(rxe, 12, "'" + refills + "' is not a number of refills"));
        return out;
      }
      dispense.set("numberOfRepeatsAllowed", Value::number(*n));
    }
    if (!dispense.members().empty()) mr.set("dispenseRequest", std::move(dispense));
    add(out, "MedicationRequest", std::move(mr), order_criteria(placer, filler));
  }
  if (!any) {
    Location l;
    l.segment = "ORC";
    out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l, "the message has no order (ORC, RXE)", false});
  }
  return out;
}

}  // namespace caduceus::adapters::hl7v2
