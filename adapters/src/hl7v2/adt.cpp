// ADT events -> Patient, Encounter, RelatedPerson, Coverage (v2-to-FHIR IG: messages/ADT_A01..A11,
// segments PID[Patient], PV1[Encounter], PV2[Encounter], NK1[RelatedPerson], IN1[Coverage]; concept maps
// Event[EncounterStatus], PatientClass[EncounterClass], PatientClass[EncounterStatus], vendored in
// adapters/data/v2-to-fhir).
#include <string>
#include <utility>

#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "mapping_util.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using fhir::json::Value;
using util::codeable;
using util::CodeMap;
using util::lookup;
using util::push;
using util::reference;
using util::search_escape;
using util::set_string;

constexpr std::string_view kPatient = "urn:hl7v2:patient";
constexpr std::string_view kV2 = "http://terminology.hl7.org/CodeSystem/v2-";

// Event[EncounterStatus]: the trigger event -> Encounter.status. (A08 "unknown" is not used: an update keeps the
// status PV1 gives, see encounter_status.)
constexpr CodeMap kEventStatus[] = {{"A01", "in-progress"}, {"A02", "in-progress"}, {"A03", "finished"},
                                    {"A04", "planned"},     {"A05", "planned"},     {"A11", "cancelled"},
                                    {"A13", "in-progress"}};
// PatientClass[EncounterStatus]: PV1-2 -> Encounter.status when PV1-45 is empty.
constexpr CodeMap kClassStatus[] = {{"E", "in-progress"}, {"I", "in-progress"}, {"O", "in-progress"},
                                    {"P", "planned"},     {"R", "in-progress"}, {"B", "in-progress"},
                                    {"C", "in-progress"}, {"N", "in-progress"}, {"U", "unknown"}};
// PatientClass[EncounterClass]: PV1-2 -> Encounter.class (v3 ActCode); the other codes of table 0004 stay v2
// codes.
constexpr CodeMap kClassCode[] = {{"E", "EMER"}, {"I", "IMP"}, {"O", "AMB"}, {"P", "PRENC"}};
constexpr CodeMap kClassDisplay[] = {
    {"E", "emergency"}, {"I", "inpatient encounter"}, {"O", "ambulatory"}, {"P", "pre-admission"}};

// Events whose Encounter must be identified (they act on a visit that exists): PV1-19 is required.
bool needs_visit(std::string_view trigger) {
  return trigger == "A02" || trigger == "A03" || trigger == "A11" || trigger == "A13";
}

void required_missing(Mapping& out, const Segment& s, std::size_t field, std::string what) {
  out.problems.push_back(Problem{ErrorCode::kRequiredFieldMissing, s.at(field), std::move(what) + " is empty", false});
}

// A date or date/time field (first component of the first repetition) as FHIR; an unreadable one is a problem
// (AE). nullopt when empty or wrong.
std::optional<std::string> date_field(Mapping& out, const Segment& s, std::size_t field, const TimeZone& zone,
                                      bool with_time) {
  std::string t = component(s, field, 1, 1);
  if (t.empty()) return std::nullopt;
  auto d = with_time ? v2_datetime_to_fhir(t, zone) : v2_date_to_fhir_date(t);
  if (!d)
    out.problems.push_back(Problem{
        ErrorCode::kDataType, s.at(field),
        "'" + t + "' is not a date" + (with_time ? "/time" : "") + " (YYYY[MM[DD[HHMM[SS[.S]]]]][+/-ZZZZ])", false});
  return d;
}

// PL (a patient location) -> a Reference to the location by its name: "point room bed, facility".
std::optional<Value> location_ref(const Segment& s, std::size_t field) {
  std::string text;
  for (std::size_t c : {1, 2, 3}) {
    std::string part = component(s, field, 1, c);
    if (!part.empty()) text += (text.empty() ? "" : " ") + part;
  }
  std::string facility = component(s, field, 1, 4);
  if (!facility.empty()) text += (text.empty() ? "" : ", ") + facility;
  if (text.empty()) return std::nullopt;
  Value r = Value::object();
  r.set("display", Value::string(text));
  return r;
}

std::string criterion_of(const Value& identifier) {
  std::string c;
  if (const Value* sys = identifier.find("system")) c = search_escape(sys->text()) + "|";
  return c + search_escape(identifier.find("value")->text());
}

// PV1 (+ PV2) -> Encounter; nothing when the event needs no visit and PV1-19 is empty.
void map_encounter(const Message& m, const Segment* pv1, const Segment* pv2, Mapping& out) {
  const std::string& trigger = m.trigger;
  if (pv1 == nullptr) {
    if (needs_visit(trigger)) {
      Location l;
      l.segment = "PV1";
      out.problems.push_back(
          Problem{ErrorCode::kSegmentSequence, l, "ADT^" + trigger + " needs a PV1 segment (the visit)", false});
    }
    return;
  }
  auto visit = map_cx(*pv1, 19, 1);
  if (!visit) {
    if (needs_visit(trigger))
      required_missing(out, *pv1, 19, "PV1-19 (visit number), which identifies the encounter,");
    else
      out.problems.push_back(Problem{ErrorCode::kRequiredFieldMissing, pv1->at(19),
                                     "PV1-19 (visit number) is empty: no Encounter is made", true});
    return;
  }
  std::string patient_class = component(*pv1, 2, 1, 1);
  if (patient_class.empty()) return required_missing(out, *pv1, 2, "PV1-2 (patient class)");
  const TimeZone& zone = m.time_zone;

  Value e = Value::object();
  e.set("resourceType", Value::string("Encounter"));
  // identifier: PV1-19 (type VN unless it says), PV1-50.
  Value identifiers = Value::array();
  if (visit->find("type") == nullptr) visit->set("type", codeable(std::string(kV2) + "0203", "VN", "Visit number"));
  std::string criterion = criterion_of(*visit);
  identifiers.push_back(std::move(*visit));
  for (std::size_t r = 1, n = pv1->repetitions(50); r <= n; ++r)
    if (auto id = map_cx(*pv1, 50, r)) identifiers.push_back(std::move(*id));
  e.set("identifier", std::move(identifiers));

  auto start = date_field(out, *pv1, 44, zone, true);
  auto end = date_field(out, *pv1, 45, zone, true);
  if (trigger == "A13") end.reset();  // the discharge is cancelled
  if (trigger == "A03" && !end) {
    // The discharge time: PV1-45, else when the event happened (EVN-6, EVN-2).
    if (const Segment* evn = m.first("EVN")) {
      end = date_field(out, *evn, 6, zone, true);
      if (!end) end = date_field(out, *evn, 2, zone, true);
    }
  }

  std::string status(lookup(kEventStatus, trigger));
  if (status.empty()) {  // A08, A31: what PV1 says
    status = end ? "finished" : std::string(lookup(kClassStatus, patient_class));
    if (status.empty()) status = "unknown";
  }
  e.set("status", Value::string(status));

  std::string_view act = lookup(kClassCode, patient_class);
  Value cls = Value::object();
  if (!act.empty()) {
    cls.set("system", Value::string("http://terminology.hl7.org/CodeSystem/v3-ActCode"));
    cls.set("code", Value::string(std::string(act)));
    cls.set("display", Value::string(std::string(lookup(kClassDisplay, patient_class))));
  } else {
    cls.set("system", Value::string(std::string(kV2) + "0004"));
    cls.set("code", Value::string(patient_class));
  }
  e.set("class", std::move(cls));
  if (auto type = map_cwe(*pv1, 4, 1, std::string(kV2) + "0007")) push(e, "type", std::move(*type));
  if (auto service = map_cwe(*pv1, 10, 1, std::string(kV2) + "0069")) e.set("serviceType", std::move(*service));
  e.set("subject", reference(kPatient));

  // participant: PV1-7 attending, PV1-8 referring, PV1-9 consulting, PV1-17 admitting.
  struct Role {
    std::size_t field;
    const char* code;
    const char* display;
  };
  static constexpr Role kRoles[] = {
      {7, "ATND", "attender"}, {8, "REF", "referrer"}, {9, "CON", "consultant"}, {17, "ADM", "admitter"}};
  for (const Role& role : kRoles) {
    for (std::size_t r = 1, n = pv1->repetitions(role.field); r <= n; ++r) {
      auto who = map_xcn_reference(*pv1, role.field, r);
      if (!who) continue;
      Value p = Value::object();
      push(p, "type", codeable("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", role.code, role.display));
      p.set("individual", std::move(*who));
      push(e, "participant", std::move(p));
    }
  }

  if (start || end) {
    Value period = Value::object();
    if (start) period.set("start", Value::string(*start));
    if (end) period.set("end", Value::string(*end));
    e.set("period", std::move(period));
  }
  if (pv2 != nullptr)
    for (std::size_t r = 1, n = pv2->repetitions(3); r <= n; ++r)
      if (auto reason = map_cwe(*pv2, 3, r)) push(e, "reasonCode", std::move(*reason));

  Value hosp = Value::object();
  if (auto pre = map_cx(*pv1, 5, 1)) hosp.set("preAdmissionIdentifier", std::move(*pre));
  if (auto source = map_cwe(*pv1, 14, 1, std::string(kV2) + "0023")) hosp.set("admitSource", std::move(*source));
  if (auto readmit = map_cwe(*pv1, 13, 1, std::string(kV2) + "0092")) hosp.set("reAdmission", std::move(*readmit));
  if (auto vip = map_cwe(*pv1, 16, 1, std::string(kV2) + "0099")) push(hosp, "specialCourtesy", std::move(*vip));
  if (trigger != "A13")
    if (auto disposition = map_cwe(*pv1, 36, 1, std::string(kV2) + "0112"))
      hosp.set("dischargeDisposition", std::move(*disposition));
  if (!hosp.members().empty()) e.set("hospitalization", std::move(hosp));

  // location: PV1-3 the assigned one (planned for a preadmission, completed once the visit is over), PV1-6 the
  // prior one (A02: where the patient was transferred from), PV1-42 the pending one.
  if (auto loc = location_ref(*pv1, 3)) {
    Value l = Value::object();
    l.set("location", std::move(*loc));
    l.set("status", Value::string(status == "finished" || status == "cancelled" ? "completed"
                                  : patient_class == "P" || status == "planned" ? "planned"
                                                                                : "active"));
    push(e, "location", std::move(l));
  }
  if (auto loc = location_ref(*pv1, 6)) {
    Value l = Value::object();
    l.set("location", std::move(*loc));
    l.set("status", Value::string("completed"));
    push(e, "location", std::move(l));
  }
  if (auto loc = location_ref(*pv1, 42)) {
    Value l = Value::object();
    l.set("location", std::move(*loc));
    l.set("status", Value::string("planned"));
    push(e, "location", std::move(l));
  }

  MappedResource res;
  res.type = "Encounter";
  res.criteria.emplace_back("identifier", criterion);
  res.resource = std::move(e);
  res.local = "urn:hl7v2:encounter";
  out.resources.push_back(std::move(res));
}

// NK1 -> RelatedPerson of the patient. Matched by the patient and NK1-33 (or NK1-12), else by the patient and the
// family and first given name (NK1-2, else NK1-30); an NK1 with neither is left out (a warning).
void map_related_person(const Message& m, const Segment& nk1, Mapping& out) {
  Value rp = Value::object();
  rp.set("resourceType", Value::string("RelatedPerson"));
  Value identifiers = Value::array();
  for (std::size_t f : {std::size_t{33}, std::size_t{12}})
    for (std::size_t r = 1, n = nk1.repetitions(f); r <= n; ++r)
      if (auto id = map_cx(nk1, f, r)) identifiers.push_back(std::move(*id));
  std::vector<std::pair<std::string, std::string>> criteria{{"patient", std::string(kPatient)}};
  if (!identifiers.items().empty()) criteria.emplace_back("identifier", criterion_of(identifiers.items().front()));
  if (!identifiers.items().empty()) rp.set("identifier", std::move(identifiers));
  rp.set("active", Value::boolean(true));
  rp.set("patient", reference(kPatient));
  for (std::size_t f : {std::size_t{3}, std::size_t{7}})
    if (auto rel = map_cwe(nk1, f, 1, std::string(kV2) + (f == 3 ? "0063" : "0131"))) push(rp, "relationship", *rel);
  Value names = Value::array();
  for (std::size_t f : {std::size_t{2}, std::size_t{30}})
    for (std::size_t r = 1, n = nk1.repetitions(f); r <= n; ++r)
      if (auto x = map_xpn(nk1, f, r)) names.push_back(std::move(*x));
  if (criteria.size() == 1) {
    const Value* first = names.items().empty() ? nullptr : &names.items().front();
    const Value* family = first != nullptr ? first->find("family") : nullptr;
    const Value* given = first != nullptr ? first->find("given") : nullptr;
    if (family == nullptr && given == nullptr) {
      out.problems.push_back(Problem{ErrorCode::kRequiredFieldMissing, nk1.at(2),
                                     "NK1 has neither a name (NK1-2) nor an identifier (NK1-33): no RelatedPerson "
                                     "is made for it",
                                     true});
      return;
    }
    if (family != nullptr) criteria.emplace_back("name:exact", search_escape(family->text()));
    if (given != nullptr) criteria.emplace_back("name:exact", search_escape(given->items().front().text()));
  }
  if (!names.items().empty()) rp.set("name", std::move(names));
  Value telecom = Value::array();
  for (auto [f, use] : {std::pair<std::size_t, const char*>{5, "home"}, {6, "work"}, {31, ""}, {40, ""}})
    for (std::size_t r = 1, n = nk1.repetitions(f); r <= n; ++r)
      if (auto x = map_xtn(nk1, f, r, use)) telecom.push_back(std::move(*x));
  if (!telecom.items().empty()) rp.set("telecom", std::move(telecom));
  if (std::string sex = component(nk1, 15, 1, 1); !sex.empty())
    if (auto g = administrative_gender(sex); !g.empty()) rp.set("gender", Value::string(std::string(g)));
  if (auto birth = date_field(out, nk1, 16, m.time_zone, false)) rp.set("birthDate", Value::string(*birth));
  Value addresses = Value::array();
  for (std::size_t f : {std::size_t{4}, std::size_t{32}})
    for (std::size_t r = 1, n = nk1.repetitions(f); r <= n; ++r)
      if (auto x = map_xad(nk1, f, r)) addresses.push_back(std::move(*x));
  if (!addresses.items().empty()) rp.set("address", std::move(addresses));
  auto start = date_field(out, nk1, 8, m.time_zone, false), end = date_field(out, nk1, 9, m.time_zone, false);
  if (start || end) {
    Value period = Value::object();
    if (start) period.set("start", Value::string(*start));
    if (end) period.set("end", Value::string(*end));
    rp.set("period", std::move(period));
  }
  MappedResource res;
  res.type = "RelatedPerson";
  res.criteria = std::move(criteria);
  res.resource = std::move(rp);
  out.resources.push_back(std::move(res));
}

// IN1 -> Coverage of the patient, matched by the patient and the health plan (IN1-2, required). A Coverage needs
// a payor: the insurance company (IN1-3 or IN1-4); real senders leave both out (the shared samples do), so an IN1
// without them is left out with a warning rather than refused.
void map_coverage(const Message& m, const Segment& in1, Mapping& out) {
  std::string plan = component(in1, 2, 1, 1);
  if (plan.empty()) return required_missing(out, in1, 2, "IN1-2 (health plan id)");
  auto company_id = map_cx(in1, 3, 1);
  std::string company = component(in1, 4, 1, 1);
  if (!company_id && company.empty()) {
    out.problems.push_back(Problem{ErrorCode::kRequiredFieldMissing, in1.at(3),
                                   "IN1-3 (insurance company id) and IN1-4 (its name) are empty: no Coverage is "
                                   "made for this IN1 (a Coverage needs its payor)",
                                   true});
    return;
  }

  Value c = Value::object();
  c.set("resourceType", Value::string("Coverage"));
  // IN1-2 (CWE[Identifier]): the plan's code, in its coding system.
  Value id = Value::object();
  std::string system = coding_system_uri(component(in1, 2, 1, 3));
  set_string(id, "system", system);
  id.set("value", Value::string(plan));
  std::string criterion = criterion_of(id);
  push(c, "identifier", std::move(id));
  c.set("status", Value::string("active"));
  if (auto type = map_cwe(in1, 15, 1, std::string(kV2) + "0086")) c.set("type", std::move(*type));
  c.set("beneficiary", reference(kPatient));
  if (auto rel = map_cwe(in1, 17, 1, std::string(kV2) + "0063")) {
    c.set("relationship", std::move(*rel));
    if (component(in1, 17, 1, 1) == "SEL") c.set("subscriber", reference(kPatient));
  }
  auto start = date_field(out, in1, 12, m.time_zone, false), end = date_field(out, in1, 13, m.time_zone, false);
  if (start || end) {
    Value period = Value::object();
    if (start) period.set("start", Value::string(*start));
    if (end) period.set("end", Value::string(*end));
    c.set("period", std::move(period));
  }
  Value payor = Value::object();
  if (company_id) {
    company_id->erase("assigner");
    company_id->erase("period");
    payor.set("identifier", std::move(*company_id));
  }
  set_string(payor, "display", company);
  push(c, "payor", std::move(payor));
  if (std::string plan_name = component(in1, 2, 1, 2); !plan_name.empty()) {
    Value cls = Value::object();
    cls.set("type", codeable("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"));
    cls.set("value", Value::string(plan));
    cls.set("name", Value::string(plan_name));
    push(c, "class", std::move(cls));
  }
  MappedResource res;
  res.type = "Coverage";
  res.criteria = {{"beneficiary", std::string(kPatient)}, {"identifier", criterion}};
  res.resource = std::move(c);
  out.resources.push_back(std::move(res));
}

std::string occurred(const Message& m, Mapping& out) {
  if (const Segment* evn = m.first("EVN"))
    if (auto t = date_field(out, *evn, 2, m.time_zone, true)) return *t;
  std::string msh7 = component(m.msh(), 7, 1, 1);
  if (auto t = v2_datetime_to_fhir(msh7, m.time_zone)) return *t;
  return {};
}

// The segments named `name` of the message, in order, wherever they are (the groups differ by structure and
// version: IN1 sits in an INSURANCE group, NK1 at the top).
std::vector<const Segment*> all_named(const Message& m, std::string_view name) {
  std::vector<const Segment*> out;
  for (const Segment& s : m.segments)
    if (s.name == name) out.push_back(&s);
  return out;
}

}  // namespace

Mapping map_adt(const Message& m) {
  Mapping out = map_adt_patient(m);
  if (out.resources.empty()) return out;  // no patient: the problem is said
  out.occurred = occurred(m, out);
  map_encounter(m, m.first("PV1"), m.first("PV2"), out);
  for (const Segment* nk1 : all_named(m, "NK1")) map_related_person(m, *nk1, out);
  for (const Segment* in1 : all_named(m, "IN1")) map_coverage(m, *in1, out);
  return out;
}

Mapping map_adt_merge(const Message& m) {
  Mapping out;
  out.occurred = occurred(m, out);
  // Each PID is followed by the MRG that names the patient merged into it (ADT_A39: {PID, [PD1], MRG, [PV1]}).
  std::size_t pairs = 0;
  for (std::size_t i = 0; i < m.segments.size(); ++i) {
    if (m.segments[i].name != "PID") continue;
    const Segment& pid = m.segments[i];
    const Segment* mrg = nullptr;
    for (std::size_t j = i + 1; j < m.segments.size() && m.segments[j].name != "PID"; ++j)
      if (m.segments[j].name == "MRG") mrg = &m.segments[j];
    if (mrg == nullptr) {
      Location l;
      l.segment = "MRG";
      out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l,
                                     "PID " + std::to_string(pid.occurrence) + " has no MRG (the merged patient)",
                                     false});
      return out;
    }
    auto survivor = map_pid(pid, m.time_zone, out.problems);
    if (!survivor) return out;
    Value merged_ids = Value::array();
    for (std::size_t r = 1, n = mrg->repetitions(1); r <= n; ++r)
      if (auto id = map_cx(*mrg, 1, r)) merged_ids.push_back(std::move(*id));
    if (merged_ids.items().empty()) {
      required_missing(out, *mrg, 1, "MRG-1 (prior patient identifier list)");
      return out;
    }
    ++pairs;
    std::string suffix = pairs == 1 ? "" : "-" + std::to_string(pairs);
    std::string survivor_local = std::string(kPatient) + suffix, merged_local = "urn:hl7v2:merged" + suffix;
    survivor->local = survivor_local;

    // The survivor keeps the merged patient's identifiers (as old ones) and replaces it.
    Value& body = survivor->resource;
    for (const Value& id : merged_ids.items()) {
      Value old = id;
      old.set("use", Value::string("old"));
      body.find("identifier")->push_back(std::move(old));
    }
    Value link = Value::object();
    link.set("other", reference(merged_local));
    link.set("type", Value::string("replaces"));
    push(body, "link", std::move(link));

    // The merged one: inactive, replaced-by the survivor (its other elements are kept).
    Value merged = Value::object();
    merged.set("resourceType", Value::string("Patient"));
    merged.set("identifier", merged_ids);
    merged.set("active", Value::boolean(false));
    Value back = Value::object();
    back.set("other", reference(survivor_local));
    back.set("type", Value::string("replaced-by"));
    push(merged, "link", std::move(back));
    MappedResource other;
    other.type = "Patient";
    other.criteria.emplace_back("identifier", criterion_of(merged_ids.items().front()));
    other.resource = std::move(merged);
    other.local = merged_local;
    other.write = MappedResource::Write::kAmend;
    out.resources.push_back(std::move(*survivor));
    out.resources.push_back(std::move(other));
  }
  if (pairs == 0) {
    Location l;
    l.segment = "PID";
    out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l, "the message has no PID segment", false});
  }
  return out;
}

}  // namespace caduceus::adapters::hl7v2
