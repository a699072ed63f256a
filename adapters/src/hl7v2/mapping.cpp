#include "caduceus/adapters/hl7v2/mapping.hpp"

#include <utility>

#include "caduceus/adapters/hl7v2/clinical_mapping.hpp"
#include "mapping_util.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using fhir::json::Value;
using util::CodeMap;
using util::lookup;
using util::search_escape;

// AdministrativeSex (HL7 table 0001) -> administrative-gender (codesystems/AdministrativeSex.csv).
constexpr CodeMap kSex[] = {{"F", "female"},  {"M", "male"},  {"O", "other"},
                            {"U", "unknown"}, {"A", "other"}, {"N", "other"}};

}  // namespace

std::string_view administrative_gender(std::string_view v2_sex) {
  return lookup(kSex, v2_sex);
}

std::optional<MappedResource> map_pid(const Segment& pid, const TimeZone& zone, std::vector<Problem>& problems) {
  Value p = Value::object();
  p.set("resourceType", Value::string("Patient"));
  Value identifiers = Value::array();
  std::optional<Value> key;
  for (std::size_t f : {std::size_t{3}, std::size_t{2}, std::size_t{4}}) {
    for (std::size_t r = 1, n = pid.repetitions(f); r <= n; ++r) {
      auto id = map_cx(pid, f, r);
      if (!id) continue;
      if (f == 3 && !key) key = *id;
      identifiers.push_back(std::move(*id));
    }
  }
  if (!key) {
    problems.push_back(Problem{ErrorCode::kRequiredFieldMissing, pid.at(3, 1, 1),
                               "PID-3 (patient identifier list) has no identifier: the patient cannot be matched",
                               false});
    return std::nullopt;
  }
  p.set("identifier", std::move(identifiers));
  p.set("active", Value::boolean(true));
  Value names = Value::array();
  for (std::size_t r = 1, n = pid.repetitions(5); r <= n; ++r)
    if (auto x = map_xpn(pid, 5, r)) names.push_back(std::move(*x));
  if (!names.items().empty()) p.set("name", std::move(names));
  Value telecom = Value::array();
  for (std::size_t r = 1, n = pid.repetitions(13); r <= n; ++r)
    if (auto x = map_xtn(pid, 13, r, "home")) telecom.push_back(std::move(*x));
  for (std::size_t r = 1, n = pid.repetitions(14); r <= n; ++r)
    if (auto x = map_xtn(pid, 14, r, "work")) telecom.push_back(std::move(*x));
  if (!telecom.items().empty()) p.set("telecom", std::move(telecom));
  if (std::string sex = component(pid, 8, 1, 1); !sex.empty()) {
    std::string_view g = lookup(kSex, sex);
    if (g.empty())
      problems.push_back(Problem{ErrorCode::kTableValueNotFound, pid.at(8),
                                 "'" + sex + "' is not an administrative sex of table 0001; left out", true});
    else
      p.set("gender", Value::string(std::string(g)));
  }
  if (std::string dob = component(pid, 7, 1, 1); !dob.empty()) {
    auto d = v2_date_to_fhir_date(dob);
    if (!d) {
      problems.push_back(Problem{ErrorCode::kDataType, pid.at(7),
                                 "'" + dob + "' is not a date (YYYY[MM[DD[HHMM[SS]]]][+/-ZZZZ])", false});
      return std::nullopt;
    }
    p.set("birthDate", Value::string(*d));
  }
  // PID-29 death date and time, else PID-30 death indicator.
  if (std::string death = component(pid, 29, 1, 1); !death.empty()) {
    auto d = v2_datetime_to_fhir(death, zone);
    if (!d) {
      problems.push_back(Problem{ErrorCode::kDataType, pid.at(29),
                                 "'" + death + "' is not a date/time (YYYY[MM[DD[HHMM[SS]]]][+/-ZZZZ])", false});
      return std::nullopt;
    }
    p.set("deceasedDateTime", Value::string(*d));
  } else if (std::string dead = component(pid, 30, 1, 1); dead == "Y" || dead == "N") {
    p.set("deceasedBoolean", Value::boolean(dead == "Y"));
  }
  Value addresses = Value::array();
  for (std::size_t r = 1, n = pid.repetitions(11); r <= n; ++r)
    if (auto x = map_xad(pid, 11, r)) addresses.push_back(std::move(*x));
  if (!addresses.items().empty()) p.set("address", std::move(addresses));
  if (auto marital = map_cwe(pid, 16, 1, "http://terminology.hl7.org/CodeSystem/v2-0002"))
    p.set("maritalStatus", std::move(*marital));

  MappedResource res;
  res.type = "Patient";
  std::string criterion;
  if (const Value* sys = key->find("system")) criterion = search_escape(sys->text()) + "|";
  criterion += search_escape(key->find("value")->text());
  res.criteria.emplace_back("identifier", criterion);
  res.resource = std::move(p);
  res.local = "urn:hl7v2:patient";
  return res;
}

Mapping map_adt_patient(const Message& m) {
  Mapping out;
  const Segment* pid = m.structure_known ? m.find("PID") : m.first("PID");
  if (pid == nullptr) pid = m.first("PID");
  if (pid == nullptr) {
    Location l;
    l.segment = "PID";
    out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l, "the message has no PID segment", false});
    return out;
  }
  if (auto patient = map_pid(*pid, m.time_zone, out.problems)) out.resources.push_back(std::move(*patient));
  return out;
}

MessageMapper find_mapper(std::string_view type, std::string_view trigger) {
  struct Entry {
    const char* type;
    const char* trigger;
    MessageMapper mapper;
  };
  static constexpr Entry kMappers[] = {
      {"ADT", "A01", &map_adt},
      {"ADT", "A02", &map_adt},
      {"ADT", "A03", &map_adt},
      {"ADT", "A04", &map_adt},
      {"ADT", "A05", &map_adt},
      {"ADT", "A08", &map_adt},
      {"ADT", "A11", &map_adt},
      {"ADT", "A13", &map_adt},
      {"ADT", "A31", &map_adt},
      {"ADT", "A40", &map_adt_merge},
      // orders, results, prescriptions, appointments (clinical_mapping.hpp)
      {"ORU", "R01", &map_oru_r01},
      {"ORM", "O01", &map_orm_o01},
      {"OML", "O21", &map_orm_o01},
      {"RDE", "O11", &map_rde_o11},
      {"SIU", "S12", &map_siu},
      {"SIU", "S13", &map_siu},
      {"SIU", "S14", &map_siu},
      {"SIU", "S15", &map_siu},
      {"SIU", "S26", &map_siu},
  };
  for (const Entry& e : kMappers)
    if (type == e.type && trigger == e.trigger) return e.mapper;
  return nullptr;
}

bool type_supported(std::string_view type) {
  return type == "ADT" || type == "ORU" || type == "ORM" || type == "OML" || type == "RDE" || type == "SIU";
}

}  // namespace caduceus::adapters::hl7v2
