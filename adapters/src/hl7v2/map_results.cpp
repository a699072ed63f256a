// ORU^R01 -> Patient, ServiceRequest, Specimen, Observation, DiagnosticReport (IG segment maps OBR[DiagnosticReport],
// OBX[Observation], SPM[Specimen], OBR[Specimen], ORC/OBR[ServiceRequest]).
#include <map>
#include <set>
#include <utility>

#include "map_support.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using fhir::json::Value;
using namespace support;

// Our identifiers for what v2 gives no identifier of its own: an OBX (filler order number, OBX-3.1, OBX-4) and a
// specimen without SPM-2.
constexpr const char* kObservationSystem = "urn:caduceus:hl7v2:observation";
constexpr const char* kSpecimenSystem = "urn:caduceus:hl7v2:specimen";

struct CodeMap {
  const char* v2;
  const char* fhir;
};
// ObservationResultStatusCodesInterpretation (table 0085) -> observation-status: the IG's map, and ours for the
// codes it leaves open (I, O: registered; R, S: preliminary; B, V, U: final; N: cancelled, not asked).
constexpr CodeMap kObservationStatus[] = {
    {"A", "amended"},     {"B", "final"},     {"C", "corrected"},  {"D", "entered-in-error"}, {"F", "final"},
    {"I", "registered"},  {"N", "cancelled"}, {"O", "registered"}, {"P", "preliminary"},      {"R", "preliminary"},
    {"S", "preliminary"}, {"U", "final"},     {"V", "final"},      {"W", "entered-in-error"}, {"X", "cancelled"}};
// ResultStatus (table 0123) -> diagnostic-report-status: the IG's map, and ours for A (partial), M (corrected),
// N (registered). Y and Z are errors (the IG: "IF NOT MAPPED ERROR").
constexpr CodeMap kReportStatus[] = {{"O", "registered"},  {"I", "registered"}, {"S", "registered"}, {"A", "partial"},
                                     {"P", "preliminary"}, {"C", "corrected"},  {"R", "partial"},    {"F", "final"},
                                     {"X", "cancelled"},   {"M", "corrected"},  {"N", "registered"}};
// InterpretationCodes (table 0078) that v3-ObservationInterpretation has with the same code.
constexpr const char* kInterpretations[] = {"<",   ">",   "A",     "AA",    "B",   "CAR", "D",   "DET", "E",  "EX",
                                            "EXP", "H",   "HH",    "HU",    "I",   "IE",  "IND", "L",   "LL", "LU",
                                            "MS",  "N",   "NCL",   "ND",    "NEG", "NR",  "NS",  "POS", "R",  "RR",
                                            "S",   "SDD", "SYN-R", "SYN-S", "U",   "VS",  "UNE", "W",   "WR"};

template <std::size_t N>
std::string lookup(const CodeMap (&table)[N], std::string_view code) {
  for (const CodeMap& c : table)
    if (code == c.v2) return c.fhir;
  return {};
}

// OBX-5 by OBX-2 into obs (value[x]); false with a problem when the value does not fit its type.
bool set_value(Value& obs, const Segment& obx, Mapping& out) {
  std::string type = txt(obx, 2);
  if (txt(obx, 5).empty() && obx.components(5) <= 1) return true;  // no value
  if (type.empty()) {
    out.problems.push_back(required(obx, 2, "OBX-2 (value type) is empty but OBX-5 has a value"));
    return false;
  }
  if (obx.repetitions(5) > 1 && type != "TX" && type != "FT" && type != "ST")
    out.problems.push_back(warning(obx, 5, "OBX-5 repeats: only its first value is kept"));
  bool ok = true;
  if (type == "NM") {
    auto d = number(obx, 5, 1, out, ok);
    if (d) obs.set("valueQuantity", quantity(*d, &obx, 6));
  } else if (type == "ST" || type == "TX" || type == "FT") {
    std::string text;
    for (std::size_t r = 1, n = obx.repetitions(5); r <= n; ++r) {
      std::string line = obx.get(5, 1, 1, r);
      if (type == "FT")
        for (std::size_t at; (at = line.find("\\.br\\")) != std::string::npos;) line.replace(at, 5, "\n");
      text += (r > 1 ? "\n" : "") + line;
    }
    if (!text.empty()) obs.set("valueString", Value::string(text));
  } else if (type == "CWE" || type == "CE" || type == "CNE" || type == "CF") {
    if (auto cc = map_cwe_triplets(obx, 5)) obs.set("valueCodeableConcept", std::move(*cc));
  } else if (type == "SN") {
    // SN: comparator ^ number ^ separator/suffix ^ number.
    std::string comparator = txt(obx, 5, 1, 1), separator = txt(obx, 5, 1, 3);
    auto first = number(obx, 5, 2, out, ok);
    auto second = number(obx, 5, 4, out, ok);
    if (!ok) return false;
    if (comparator == "<>" || separator == "+" || separator == ".") {
      // (not a quantity: kept as the text, as the IG does for "<>")
      std::string text = comparator + txt(obx, 5, 1, 2) + separator + txt(obx, 5, 1, 4);
      obs.set("valueString", Value::string(text));
    } else if (!separator.empty() && second) {
      if (!first) {
        out.problems.push_back(required(obx, 5, "OBX-5.2 (the first number of SN) is empty", 2));
        return false;
      }
      if (separator == "-") {
        Value range = Value::object();
        range.set("low", quantity(*first, &obx, 6));
        range.set("high", quantity(*second, &obx, 6));
        obs.set("valueRange", std::move(range));
      } else if (separator == ":" || separator == "/") {
        Value ratio = Value::object();
        ratio.set("numerator", quantity(*first, nullptr, 0));
        ratio.set("denominator", quantity(*second, nullptr, 0));
        obs.set("valueRatio", std::move(ratio));
      } else {
        out.problems.push_back(bad_value(obx, 5, "'" + separator + "' is not an SN separator (-, :, /, +, .)", 3));
        return false;
      }
    } else if (first) {
      Value q = quantity(*first, &obx, 6);
      if (comparator == "<" || comparator == ">" || comparator == "<=" || comparator == ">=") {
        Value with = Value::object();
        with.set("value", *q.find("value"));
        with.set("comparator", Value::string(comparator));
        for (const auto& [k, v] : q.members())
          if (k != "value") with.set(k, v);
        q = std::move(with);
      } else if (!comparator.empty() && comparator != "=") {
        out.problems.push_back(bad_value(obx, 5, "'" + comparator + "' is not an SN comparator", 1));
        return false;
      }
      obs.set("valueQuantity", std::move(q));
    }
  } else if (type == "DT" || type == "TS" || type == "DTM") {
    ok = set_datetime(obs, "valueDateTime", obx, 5, 1, out);
  } else if (type == "NR") {
    Value range = Value::object();
    auto low = number(obx, 5, 1, out, ok);
    auto high = number(obx, 5, 2, out, ok);
    if (low) range.set("low", quantity(*low, &obx, 6));
    if (high) range.set("high", quantity(*high, &obx, 6));
    if (ok && !range.members().empty()) obs.set("valueRange", std::move(range));
  } else {
    out.problems.push_back(warning(obx, 5, "value type " + type + " is not mapped: the value is left out"));
  }
  return ok;
}

}  // namespace

Mapping map_oru_r01(const Message& m) {
  Mapping out;
  // The message's first PID (required); the results of a later PATIENT_RESULT group belong to that group's PID.
  const std::string first_patient = add_patient(m, out, true);
  if (first_patient.empty()) return out;
  std::map<const Segment*, std::string> patients{{m.first("PID"), first_patient}};
  std::vector<OrderBlock> orders = order_blocks(m);
  if (orders.empty() || orders.front().obr == nullptr) {
    Location l;
    l.segment = "OBR";
    out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l, "the message has no OBR segment", false});
    return out;
  }
  for (std::size_t k = 0; k < orders.size(); ++k) {
    const OrderBlock& o = orders[k];
    if (o.obr == nullptr) continue;  // an ORC without OBR: nothing was observed
    const Segment& obr = *o.obr;
    std::string patient = first_patient;
    if (o.pid != nullptr) {
      auto [it, fresh] = patients.try_emplace(o.pid);
      if (fresh) it->second = add_patient_of(*o.pid, m, out);
      if (it->second.empty()) return out;
      patient = it->second;
    }
    // The report: matched by the filler order number (OBR-3, else ORC-3), else the placer's.
    std::optional<Value> placer = map_ei(obr, 2, 1, 0, "PLAC");
    if (!placer && o.orc != nullptr) placer = map_ei(*o.orc, 2, 1, 0, "PLAC");
    std::optional<Value> filler = map_ei(obr, 3, 1, 0, "FILL");
    if (!filler && o.orc != nullptr) filler = map_ei(*o.orc, 3, 1, 0, "FILL");
    if (!placer && !filler) {
      out.problems.push_back(
          required(obr, 3, "OBR-3 (filler order number) and OBR-2 (placer order number) are both empty"));
      return out;
    }
    const Value& key = filler ? *filler : *placer;
    std::string key_text = key.find("value")->text();
    if (const Value* sys = key.find("system")) key_text = sys->text() + "/" + key_text;

    auto code = map_cwe_triplets(obr, 4);
    if (!code) {
      out.problems.push_back(required(obr, 4, "OBR-4 (universal service identifier) is empty"));
      return out;
    }
    std::string report_status = "unknown";
    if (std::string s = txt(obr, 25); !s.empty()) {
      report_status = lookup(kReportStatus, s);
      if (report_status.empty()) {
        out.problems.push_back(unknown_code(obr, 25, "'" + s + "' is not a result status of table 0123 we take"));
        return out;
      }
    }
    std::string order_status = report_status == "final" || report_status == "corrected" ? "completed"
                               : report_status == "cancelled"                           ? "revoked"
                                                                                        : "active";
    std::string request = add_service_request(o, patient, out, order_status);
    if (request.empty()) return out;

    // Specimens: each SPM, else OBR-15 (specimen source).
    std::vector<std::string> specimens;
    auto add_specimen = [&](Value spec, std::optional<Value> id, std::size_t n) {
      spec.set("subject", reference(patient));
      if (!id) {
        Value ours = Value::object();
        ours.set("system", Value::string(kSpecimenSystem));
        ours.set("value", Value::string(key_text + "/" + std::to_string(n)));
        id = std::move(ours);
      }
      std::string criterion = token(*id);
      Value* ids = spec.find("identifier");
      if (ids == nullptr || ids->items().empty()) spec.set("identifier", one(*id));
      // (members in FHIR's order do not matter to the store; resourceType stays first)
      specimens.push_back(add(out, "Specimen", std::move(spec), {{"identifier", criterion}}));
    };
    bool ok = true;
    for (std::size_t i = 0; i < o.specimens.size(); ++i) {
      const Segment& spm = *o.specimens[i].spm;
      Value spec = Value::object();
      spec.set("resourceType", Value::string("Specimen"));
      Value ids = Value::array();
      std::optional<Value> key_id;
      for (std::size_t c : {std::size_t{1}, std::size_t{2}})
        if (auto id = map_ei(spm, 2, 1, c, c == 1 ? "PLAC" : "FILL")) {
          if (!key_id) key_id = *id;
          ids.push_back(std::move(*id));
        }
      if (!ids.items().empty()) spec.set("identifier", std::move(ids));
      if (auto type = map_cwe_triplets(spm, 4)) spec.set("type", std::move(*type));
      Value collection = Value::object();
      if (!txt(spm, 17, 1, 2).empty()) {
        Value period = Value::object();
        ok = set_datetime(period, "start", spm, 17, 1, out) && ok;
        ok = set_datetime(period, "end", spm, 17, 2, out) && ok;
        collection.set("collectedPeriod", std::move(period));
      } else {
        ok = set_datetime(collection, "collectedDateTime", spm, 17, 1, out) && ok;
      }
      if (!collection.members().empty()) spec.set("collection", std::move(collection));
      ok = set_datetime(spec, "receivedTime", spm, 18, 1, out) && ok;
      if (!ok) return out;
      add_specimen(std::move(spec), key_id, i + 1);
    }
    if (o.specimens.empty() && !txt(obr, 15, 1, 1, 1).empty()) {
      // OBR-15 (SPS): its first component is a CWE in subcomponents.
      Value spec = Value::object();
      spec.set("resourceType", Value::string("Specimen"));
      Value type = Value::object();
      std::string code1 = txt(obr, 15, 1, 1, 1), display = txt(obr, 15, 1, 1, 2), sys = txt(obr, 15, 1, 1, 3);
      type.set("coding", one(coding(code_system_uri(sys), code1, display)));
      spec.set("type", std::move(type));
      Value collection = Value::object();
      if (!set_datetime(collection, "collectedDateTime", obr, 7, 1, out)) return out;
      if (!collection.members().empty()) spec.set("collection", std::move(collection));
      add_specimen(std::move(spec), std::nullopt, 1);
    }

    // Observations.
    std::vector<std::string> results;
    std::set<std::string> keys;
    auto add_observation = [&](const Segment& obx, const std::string& specimen) -> bool {
      auto obs_code = map_cwe_triplets(obx, 3);
      if (!obs_code) {
        out.problems.push_back(required(obx, 3, "OBX-3 (observation identifier) is empty"));
        return false;
      }
      std::string status_code = txt(obx, 11);
      if (status_code.empty()) {
        out.problems.push_back(required(obx, 11, "OBX-11 (observation result status) is empty"));
        return false;
      }
      std::string status = lookup(kObservationStatus, status_code);
      if (status.empty()) {
        out.problems.push_back(
            unknown_code(obx, 11, "'" + status_code + "' is not an observation result status of table 0085"));
        return false;
      }
      std::string id_value = key_text + "/" + txt(obx, 3, 1, 1) + "/" + txt(obx, 4);
      std::string unique = id_value;
      for (int n = 2; !keys.insert(unique).second; ++n) unique = id_value + "/" + std::to_string(n);
      Value identifier = Value::object();
      identifier.set("system", Value::string(kObservationSystem));
      identifier.set("value", Value::string(unique));

      Value obs = Value::object();
      obs.set("resourceType", Value::string("Observation"));
      Value ids = one(identifier);
      if (auto oii = map_ei(obx, 21, 1, 0, "")) ids.push_back(std::move(*oii));
      obs.set("identifier", std::move(ids));
      obs.set("basedOn", one(reference(request)));
      obs.set("status", Value::string(status));
      obs.set("code", std::move(*obs_code));
      obs.set("subject", reference(patient));
      bool fine = true;
      if (!txt(obx, 14).empty())
        fine = set_datetime(obs, "effectiveDateTime", obx, 14, 1, out);
      else
        fine = set_datetime(obs, "effectiveDateTime", obr, 7, 1, out);
      fine = set_value(obs, obx, out) && fine;
      if (!fine) return false;
      for (std::size_t r = 1, n = obx.repetitions(8); r <= n; ++r) {
        std::string c = txt(obx, 8, r, 1);
        if (c.empty()) continue;
        bool known = false;
        for (const char* k : kInterpretations) known = known || c == k;
        Value interp = known ? concept_of(coding("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                                 c, txt(obx, 8, r, 2)))
                             : map_cwe_triplets(obx, 8, r).value_or(concept_of(coding("", c)));
        push(obs, "interpretation", std::move(interp));
      }
      if (std::string range = txt(obx, 7); !range.empty()) {
        Value rr = Value::object();
        rr.set("text", Value::string(range));
        obs.set("referenceRange", one(std::move(rr)));
      }
      if (!specimen.empty()) obs.set("specimen", reference(specimen));
      results.push_back(add(out, "Observation", std::move(obs), {{"identifier", token(identifier)}}));
      return true;
    };
    std::string first_specimen = specimens.empty() ? std::string() : specimens.front();
    for (const Segment* obx : o.obx)
      if (!add_observation(*obx, first_specimen)) return out;
    for (std::size_t i = 0; i < o.specimens.size(); ++i)
      for (const Segment* obx : o.specimens[i].obx)
        if (!add_observation(*obx, specimens[i])) return out;

    // The report.
    Value dr = Value::object();
    dr.set("resourceType", Value::string("DiagnosticReport"));
    Value ids = Value::array();
    if (placer) ids.push_back(*placer);
    if (filler) ids.push_back(*filler);
    dr.set("identifier", std::move(ids));
    dr.set("basedOn", one(reference(request)));
    dr.set("status", Value::string(report_status));
    dr.set("code", std::move(*code));
    dr.set("subject", reference(patient));
    if (!txt(obr, 8).empty()) {
      Value period = Value::object();
      if (!set_datetime(period, "start", obr, 7, 1, out) || !set_datetime(period, "end", obr, 8, 1, out)) return out;
      dr.set("effectivePeriod", std::move(period));
    } else if (!set_datetime(dr, "effectiveDateTime", obr, 7, 1, out)) {
      return out;
    }
    if (!set_datetime(dr, "issued", obr, 22, 1, out, true)) return out;
    for (const std::string& s : specimens) push(dr, "specimen", reference(s));
    for (const std::string& r : results) push(dr, "result", reference(r));
    add(out, "DiagnosticReport", std::move(dr), {{"identifier", token(key)}});
  }
  return out;
}

}  // namespace caduceus::adapters::hl7v2
