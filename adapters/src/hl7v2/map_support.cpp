// Data types and helpers of the order, result and schedule mappers (see clinical_mapping.hpp, map_support.hpp).
#include "map_support.hpp"

#include <cctype>
#include <utility>

namespace caduceus::adapters::hl7v2 {

using fhir::json::Value;

namespace {

bool all_digits(std::string_view s) {
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

std::string trimmed(std::string_view s) {
  std::size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  std::size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

// FHIR search escapes in a token part (\ , $ |).
std::string search_escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == ',' || c == '$' || c == '|') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::optional<std::string> v2_decimal(std::string_view raw) {
  std::string t = trimmed(raw);
  std::string_view s = t;
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  std::size_t dot = s.find('.');
  std::string_view whole = s.substr(0, dot), fraction = dot == std::string_view::npos ? "" : s.substr(dot + 1);
  if ((whole.empty() && fraction.empty()) || !all_digits(whole) || !all_digits(fraction)) return std::nullopt;
  while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
  std::string out = negative ? "-" : "";
  out += whole.empty() ? "0" : std::string(whole);
  if (!fraction.empty()) out += "." + std::string(fraction);
  return out;
}

std::string code_system_uri(std::string_view name) {
  static constexpr std::pair<const char*, const char*> kSystems[] = {
      {"LN", "http://loinc.org"},
      {"SCT", "http://snomed.info/sct"},
      {"SNOMEDCT", "http://snomed.info/sct"},
      {"UCUM", "http://unitsofmeasure.org"},
      {"NDC", "http://hl7.org/fhir/sid/ndc"},
      {"CVX", "http://hl7.org/fhir/sid/cvx"},
      {"RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"},
      {"RXN", "http://www.nlm.nih.gov/research/umls/rxnorm"},
      {"I10", "http://hl7.org/fhir/sid/icd-10"},
      {"I10C", "http://hl7.org/fhir/sid/icd-10-cm"},
      {"ICD10CM", "http://hl7.org/fhir/sid/icd-10-cm"},
      {"I9CM", "http://hl7.org/fhir/sid/icd-9-cm"},
      {"C4", "http://www.ama-assn.org/go/cpt"},
      {"CPT", "http://www.ama-assn.org/go/cpt"},
      {"CDCREC", "urn:oid:2.16.840.1.113883.6.238"},
  };
  for (const auto& [v2, uri] : kSystems)
    if (name == v2) return uri;
  if (name.size() == 7 && name.starts_with("HL7") && all_digits(name.substr(3)))
    return "http://terminology.hl7.org/CodeSystem/v2-" + std::string(name.substr(3));
  return {};
}

std::optional<Value> map_cwe_triplets(const Segment& s, std::size_t field, std::size_t rep) {
  using support::txt;
  Value cc = Value::object();
  Value codings = Value::array();
  struct Triplet {
    std::size_t code, display, system, version;
  };
  for (Triplet t : {Triplet{1, 2, 3, 7}, Triplet{4, 5, 6, 8}, Triplet{10, 11, 12, 13}}) {
    std::string code = txt(s, field, rep, t.code), display = txt(s, field, rep, t.display);
    if (code.empty()) continue;
    Value c = Value::object();
    support::set_str(c, "system", code_system_uri(txt(s, field, rep, t.system)));
    support::set_str(c, "version", txt(s, field, rep, t.version));
    c.set("code", Value::string(code));
    support::set_str(c, "display", display);
    codings.push_back(std::move(c));
  }
  if (!codings.items().empty()) cc.set("coding", std::move(codings));
  std::string text = txt(s, field, rep, 9);
  // A text without a code (CWE.2 alone) is the concept's text.
  if (text.empty() && cc.find("coding") == nullptr) text = txt(s, field, rep, 2);
  support::set_str(cc, "text", text);
  if (cc.members().empty()) return std::nullopt;
  return cc;
}

std::optional<Value> map_ei(const Segment& s, std::size_t field, std::size_t rep, std::size_t component,
                            std::string_view type_code) {
  using support::txt;
  auto part = [&](std::size_t n) { return component == 0 ? txt(s, field, rep, n) : txt(s, field, rep, component, n); };
  std::string value = part(1);
  if (value.empty()) return std::nullopt;
  Value id = Value::object();
  if (!type_code.empty())
    id.set("type", support::concept_of(support::coding(support::kV2_0203, std::string(type_code))));
  std::string ns = part(2), universal = part(3), kind = part(4);
  support::set_str(id, "system", hd_system(universal, kind));
  id.set("value", Value::string(value));
  if (!ns.empty()) {
    Value assigner = Value::object();
    assigner.set("display", Value::string(ns));
    id.set("assigner", std::move(assigner));
  }
  return id;
}

std::optional<Value> map_xcn_reference(const Segment& s, std::size_t field, std::size_t rep, std::string_view type) {
  using support::txt;
  std::string id = txt(s, field, rep, 1);
  std::string display;
  for (const std::string& part : {txt(s, field, rep, 3), txt(s, field, rep, 4), txt(s, field, rep, 2, 1)})
    if (!part.empty()) display += (display.empty() ? "" : " ") + part;
  if (id.empty() && display.empty()) return std::nullopt;
  Value ref = Value::object();
  if (!type.empty()) ref.set("type", Value::string(std::string(type)));
  if (!id.empty()) {
    Value identifier = Value::object();
    // XCN.9 (HD): a universal id of a known kind is the system.
    std::string universal = txt(s, field, rep, 9, 2), kind = txt(s, field, rep, 9, 3);
    if (kind == "ISO" || kind == "URI") support::set_str(identifier, "system", hd_system(universal, kind));
    identifier.set("value", Value::string(id));
    ref.set("identifier", std::move(identifier));
  }
  support::set_str(ref, "display", display);
  return ref;
}

namespace support {

std::string txt(const Segment& s, std::size_t field, std::size_t rep, std::size_t c, std::size_t sub) {
  std::string v = trimmed(s.get(field, c, sub, rep));
  return v == "\"\"" ? std::string() : v;
}

void set_str(Value& obj, std::string_view key, const std::string& v) {
  if (!v.empty()) obj.set(key, Value::string(v));
}

void push(Value& obj, std::string_view key, Value v) {
  Value* arr = obj.find(key);
  if (arr == nullptr) arr = &obj.set(key, Value::array());
  arr->push_back(std::move(v));
}

Value one(Value v) {
  Value a = Value::array();
  a.push_back(std::move(v));
  return a;
}

Value coding(const std::string& system, const std::string& code, const std::string& display) {
  Value c = Value::object();
  set_str(c, "system", system);
  set_str(c, "code", code);
  set_str(c, "display", display);
  return c;
}

Value concept_of(Value c) {
  Value cc = Value::object();
  cc.set("coding", one(std::move(c)));
  return cc;
}

Value reference(const std::string& ref) {
  Value r = Value::object();
  r.set("reference", Value::string(ref));
  return r;
}

std::string token(const Value& identifier) {
  std::string out;
  if (const Value* sys = identifier.find("system")) out = search_escape(sys->text()) + "|";
  if (const Value* v = identifier.find("value")) out += search_escape(v->text());
  return out;
}

Problem required(const Segment& s, std::size_t field, const std::string& what, std::size_t component) {
  return Problem{ErrorCode::kRequiredFieldMissing, s.at(field, 0, component), what, false};
}
Problem bad_value(const Segment& s, std::size_t field, const std::string& what, std::size_t component) {
  return Problem{ErrorCode::kDataType, s.at(field, 0, component), what, false};
}
Problem unknown_code(const Segment& s, std::size_t field, const std::string& what) {
  return Problem{ErrorCode::kTableValueNotFound, s.at(field), what, false};
}
Problem warning(const Segment& s, std::size_t field, const std::string& what) {
  return Problem{ErrorCode::kDataType, s.at(field), what, true};
}

std::string add(Mapping& out, std::string type, Value resource,
                std::vector<std::pair<std::string, std::string>> criteria) {
  MappedResource r;
  r.type = std::move(type);
  r.resource = std::move(resource);
  r.criteria = std::move(criteria);
  r.local = "urn:hl7v2:resource:" + std::to_string(out.resources.size() + 1);
  out.resources.push_back(std::move(r));
  return out.resources.back().local;
}

std::string add_patient(const Message& m, Mapping& out, bool required_pid) {
  out.time_zone = m.time_zone;
  if (m.first("PID") == nullptr) {
    if (required_pid) {
      Location l;
      l.segment = "PID";
      out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l, "the message has no PID segment", false});
    }
    return {};
  }
  // The ADT mapper's Patient (PID -> Patient); what else it maps from an ADT message is not ours to write here,
  // nor are its problems with segments other than PID.
  Mapping patient = map_adt_patient(m);
  bool failed = false;
  for (Problem& p : patient.problems) {
    if (p.where.segment != "PID" && !p.where.segment.empty()) continue;
    failed = failed || !p.warning;
    out.problems.push_back(std::move(p));
  }
  if (failed) return {};
  for (MappedResource& r : patient.resources)
    if (r.type == "Patient") return add(out, std::move(r.type), std::move(r.resource), std::move(r.criteria));
  const Segment& pid = *m.first("PID");
  out.problems.push_back(required(pid, 3, "PID gives no patient"));
  return {};
}

bool set_datetime(Value& obj, std::string_view key, const Segment& s, std::size_t field, std::size_t component,
                  Mapping& out, bool instant) {
  std::string raw = txt(s, field, 1, component);
  if (raw.empty()) return true;
  std::optional<std::string> dt = v2_datetime_to_fhir(raw, out.time_zone);
  bool fits = dt.has_value() && (!instant || dt->find('T') != std::string::npos);  // an instant needs a time
  if (!fits) {
    out.problems.push_back(bad_value(
        s, field,
        "'" + raw + "' is not a " + (instant ? "date and time" : "date/time") + " (YYYY[MM[DD[HH[MM[SS]]]]][+/-ZZZZ])",
        component > 1 ? component : 0));
    return false;
  }
  obj.set(key, Value::string(*dt));
  return true;
}

Value quantity(const std::string& decimal, const Segment* s, std::size_t unit_field, std::size_t unit_component) {
  Value q = Value::object();
  q.set("value", Value::number(decimal));
  if (s == nullptr) return q;
  std::string code, text, system;
  if (unit_component == 0) {
    code = txt(*s, unit_field, 1, 1), text = txt(*s, unit_field, 1, 2), system = txt(*s, unit_field, 1, 3);
  } else {  // units as subcomponents of a component (CQ.2)
    code = txt(*s, unit_field, 1, unit_component, 1), text = txt(*s, unit_field, 1, unit_component, 2),
    system = txt(*s, unit_field, 1, unit_component, 3);
  }
  if (code.empty() && text.empty()) return q;
  q.set("unit", Value::string(text.empty() ? code : text));
  if (system == "UCUM" && !code.empty()) {
    q.set("system", Value::string("http://unitsofmeasure.org"));
    q.set("code", Value::string(code));
  }
  return q;
}

std::optional<std::string> number(const Segment& s, std::size_t field, std::size_t component, Mapping& out, bool& ok) {
  std::string raw = txt(s, field, 1, component);
  if (raw.empty()) return std::nullopt;
  auto d = v2_decimal(raw);
  if (!d) {
    out.problems.push_back(bad_value(s, field, "'" + raw + "' is not a number", component > 1 ? component : 0));
    ok = false;
  }
  return d;
}

std::string add_patient_of(const Segment& pid, const Message& m, Mapping& out) {
  out.time_zone = m.time_zone;
  std::vector<Problem> problems;
  std::optional<MappedResource> patient = map_pid(pid, m.time_zone, problems);
  bool failed = false;
  for (Problem& p : problems) {
    failed = failed || !p.warning;
    out.problems.push_back(std::move(p));
  }
  if (failed || !patient) {
    if (!failed) out.problems.push_back(required(pid, 3, "PID gives no patient"));
    return {};
  }
  return add(out, std::move(patient->type), std::move(patient->resource), std::move(patient->criteria));
}

std::vector<OrderBlock> order_blocks(const Message& m) {
  std::vector<OrderBlock> out;
  const Segment* pid = nullptr;
  for (const Segment& s : m.segments) {
    const std::string& n = s.name;
    if (n == "PID") {
      pid = &s;
      continue;
    }
    if (n == "ORC") {
      out.emplace_back().orc = &s;
      out.back().pid = pid;
      continue;
    }
    if (n == "OBR") {
      if (out.empty() || out.back().obr != nullptr || out.back().orc == nullptr || out.back().rxe != nullptr ||
          out.back().pid != pid) {
        out.emplace_back();
        out.back().pid = pid;
      }
      out.back().obr = &s;
      continue;
    }
    if (out.empty()) continue;
    OrderBlock& o = out.back();
    if (n == "OBX") {
      if (o.obr == nullptr) continue;
      if (!o.specimens.empty())
        o.specimens.back().obx.push_back(&s);
      else
        o.obx.push_back(&s);
    } else if (n == "SPM") {
      if (o.obr != nullptr) o.specimens.push_back(SpecimenBlock{&s, {}});
    } else if (n == "TQ1") {
      (o.rxe != nullptr ? o.tq1_encoded : o.tq1).push_back(&s);
    } else if (n == "RXE") {
      if (o.rxe == nullptr) o.rxe = &s;
    } else if (n == "RXR") {
      if (o.rxe != nullptr)
        o.rxr.insert(o.rxr.begin(), &s);  // the RXE's routes come first
      else
        o.rxr.push_back(&s);
    }
  }
  return out;
}

namespace {

struct CodeMap {
  const char* v2;
  const char* fhir;
};
// OrderStatus (table 0038) -> request-status (IG concept map OrderStatus).
constexpr CodeMap kOrderStatus[] = {{"CA", "revoked"},          {"CM", "completed"}, {"DC", "revoked"},
                                    {"ER", "entered-in-error"}, {"HD", "on-hold"},   {"IP", "active"},
                                    {"RP", "revoked"},          {"SC", "active"}};
// OrderControlCode (table 0119) -> request-status (IG concept map OrderControlCode[ServiceRequest.status]).
constexpr CodeMap kOrderControl[] = {{"AF", "active"},  {"CA", "active"},  {"CR", "revoked"},   {"DC", "revoked"},
                                     {"DF", "revoked"}, {"DR", "revoked"}, {"FU", "completed"}, {"HD", "active"},
                                     {"HR", "on-hold"}, {"NW", "active"},  {"OC", "revoked"},   {"OD", "revoked"},
                                     {"OH", "on-hold"}, {"OK", "active"},  {"PR", "active"},    {"PY", "active"},
                                     {"RL", "active"},  {"RO", "active"},  {"RQ", "active"}};

template <std::size_t N>
std::string lookup(const CodeMap (&table)[N], std::string_view code) {
  for (const CodeMap& c : table)
    if (code == c.v2) return c.fhir;
  return {};
}

}  // namespace

std::string add_service_request(const OrderBlock& o, const std::string& patient, Mapping& out,
                                const std::string& fallback_status) {
  const Segment* orc = o.orc;
  const Segment* obr = o.obr;
  const Segment* any = orc != nullptr ? orc : obr;
  Value sr = Value::object();
  sr.set("resourceType", Value::string("ServiceRequest"));
  // Identifiers: placer ORC-2 (else OBR-2), filler ORC-3 (else OBR-3); the placer group number ORC-4 is the
  // requisition.
  Value identifiers = Value::array();
  std::optional<Value> placer, filler, group;
  if (orc != nullptr) placer = map_ei(*orc, 2, 1, 0, "PLAC");
  if (!placer && obr != nullptr) placer = map_ei(*obr, 2, 1, 0, "PLAC");
  if (orc != nullptr) filler = map_ei(*orc, 3, 1, 0, "FILL");
  if (!filler && obr != nullptr) filler = map_ei(*obr, 3, 1, 0, "FILL");
  if (orc != nullptr) group = map_ei(*orc, 4, 1, 0, "PGN");
  if (placer) identifiers.push_back(*placer);
  if (filler) identifiers.push_back(*filler);
  if (!identifiers.items().empty()) sr.set("identifier", std::move(identifiers));
  if (group) sr.set("requisition", *group);

  // Status: ORC-5 (order status), else ORC-1 (order control), else the caller's.
  std::string status;
  if (orc != nullptr) status = lookup(kOrderStatus, txt(*orc, 5));
  if (status.empty() && orc != nullptr) status = lookup(kOrderControl, txt(*orc, 1));
  if (status.empty()) status = fallback_status;
  sr.set("status", Value::string(status));
  std::string intent = "order";
  if (obr != nullptr && txt(*obr, 11) == "G") intent = "reflex-order";
  sr.set("intent", Value::string(intent));
  if (obr != nullptr) {
    if (auto code = map_cwe_triplets(*obr, 4)) sr.set("code", std::move(*code));
  }
  if (!patient.empty()) sr.set("subject", reference(patient));

  // Occurrence: OBR-6 (requested date/time), else the order's timing (TQ1-7/8, else ORC-7.4/7.5) as a period.
  bool ok = true;
  if (obr != nullptr && !txt(*obr, 6).empty()) {
    ok = set_datetime(sr, "occurrenceDateTime", *obr, 6, 1, out) && ok;
  } else {
    Value period = Value::object();
    if (!o.tq1.empty()) {
      ok = set_datetime(period, "start", *o.tq1.front(), 7, 1, out) && ok;
      ok = set_datetime(period, "end", *o.tq1.front(), 8, 1, out) && ok;
    } else if (orc != nullptr) {
      ok = set_datetime(period, "start", *orc, 7, 4, out) && ok;
      ok = set_datetime(period, "end", *orc, 7, 5, out) && ok;
    }
    if (!period.members().empty()) sr.set("occurrencePeriod", std::move(period));
  }
  if (orc != nullptr) ok = set_datetime(sr, "authoredOn", *orc, 9, 1, out) && ok;
  std::optional<Value> requester;
  if (orc != nullptr) requester = map_xcn_reference(*orc, 12, 1, "Practitioner");
  if (!requester && obr != nullptr) requester = map_xcn_reference(*obr, 16, 1, "Practitioner");
  if (requester) sr.set("requester", std::move(*requester));
  if (!ok) return {};

  // Matched by the placer order number, else the filler's, else the placer group number with the code.
  std::vector<std::pair<std::string, std::string>> criteria;
  if (placer) {
    criteria.emplace_back("identifier", token(*placer));
  } else if (filler) {
    criteria.emplace_back("identifier", token(*filler));
  } else if (group) {
    criteria.emplace_back("requisition", token(*group));
    if (const Value* code = sr.find("code"); code != nullptr && code->find("coding") != nullptr) {
      const Value& c = code->find("coding")->items().front();
      std::string t;
      if (const Value* sys = c.find("system")) t = search_escape(sys->text()) + "|";
      criteria.emplace_back("code", t + search_escape(c.find("code")->text()));
    }
  } else {
    out.problems.push_back(required(*any, 2,
                                    any->name + "-2 (placer order number), " + any->name +
                                        "-3 (filler order number) and ORC-4 are all empty: the order cannot be "
                                        "matched"));
    return {};
  }
  return add(out, "ServiceRequest", std::move(sr), std::move(criteria));
}

}  // namespace support
}  // namespace caduceus::adapters::hl7v2
