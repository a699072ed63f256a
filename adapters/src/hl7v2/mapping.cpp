#include "caduceus/adapters/hl7v2/mapping.hpp"

#include <cctype>
#include <utility>

#include "caduceus/adapters/hl7v2/clinical_mapping.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using fhir::json::Value;

// Code maps from the v2-to-FHIR IG's concept maps (codesystems/*.csv): a v2 code and the FHIR code ("" = none).
struct CodeMap {
  const char* v2;
  const char* fhir;
};
// AdministrativeSex (HL7 table 0001) -> administrative-gender.
constexpr CodeMap kSex[] = {{"F", "female"},  {"M", "male"},  {"O", "other"},
                            {"U", "unknown"}, {"A", "other"}, {"N", "other"}};
// NameType (0200) -> name-use.
constexpr CodeMap kNameUse[] = {{"BAD", "old"},  {"D", "usual"},       {"L", "official"},
                                {"M", "maiden"}, {"MSK", "anonymous"}, {"N", "nickname"},
                                {"NAV", "temp"}, {"R", "official"},    {"TEMP", "temp"}};
// AddressType (0190) -> address-use, and -> address-type.
constexpr CodeMap kAddressUse[] = {{"BA", "old"}, {"BI", "billing"}, {"C", "temp"},
                                   {"B", "work"}, {"H", "home"},     {"O", "work"}};
constexpr CodeMap kAddressType[] = {{"M", "postal"}, {"SH", "postal"}};
// TelecommunicationEquipmentType (0202) -> contact-point-system (CP also makes the use "mobile").
constexpr CodeMap kTelecomSystem[] = {{"PH", "phone"},  {"FX", "fax"},   {"MD", "other"},       {"CP", "phone"},
                                      {"SAT", "other"}, {"BP", "pager"}, {"Internet", "email"}, {"X.400", "email"},
                                      {"TDD", "other"}, {"TTY", "other"}};
// TelecommunicationUseCode (0201) -> contact-point-use.
constexpr CodeMap kTelecomUse[] = {{"PRN", "home"}, {"WPN", "work"}, {"PRS", "mobile"}};

template <std::size_t N>
std::string_view lookup(const CodeMap (&table)[N], std::string_view code) {
  for (const CodeMap& c : table)
    if (code == c.v2) return c.fhir;
  return {};
}

std::string trim(std::string s) {
  std::size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  std::size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// A component's text (trimmed); "" for absent and for the v2 null `""`.
std::string text(const Segment& s, std::size_t field, std::size_t rep, std::size_t c, std::size_t sub = 1) {
  std::string v = trim(s.get(field, c, sub, rep));
  return v == "\"\"" ? std::string() : v;
}

void set_string(Value& obj, std::string_view key, const std::string& v) {
  if (!v.empty()) obj.set(key, Value::string(v));
}

void push_string(Value& obj, std::string_view key, const std::string& v) {
  if (v.empty()) return;
  Value* arr = obj.find(key);
  if (arr == nullptr) arr = &obj.set(key, Value::array());
  arr->push_back(Value::string(v));
}

std::optional<Value> period(const Segment& s, std::size_t field, std::size_t rep, std::size_t start_c,
                            std::size_t end_c) {
  Value p = Value::object();
  if (auto d = v2_date_to_fhir_date(text(s, field, rep, start_c))) p.set("start", Value::string(*d));
  if (auto d = v2_date_to_fhir_date(text(s, field, rep, end_c))) p.set("end", Value::string(*d));
  if (p.find("start") == nullptr && p.find("end") == nullptr) return std::nullopt;
  return p;
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

bool digits(std::string_view s) {
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

std::optional<std::string> v2_date_to_fhir_date(std::string_view t) {
  // The date part; what follows must be a time, fraction and/or offset.
  std::size_t n = 0;
  while (n < t.size() && std::isdigit(static_cast<unsigned char>(t[n]))) ++n;
  std::string_view d = t.substr(0, n), rest = t.substr(n);
  if (!(d.size() == 4 || d.size() == 6 || d.size() == 8 || d.size() == 10 || d.size() == 12 || d.size() == 14))
    return std::nullopt;
  if (!rest.empty()) {
    if (rest.front() == '.') {
      if (d.size() != 14) return std::nullopt;
      std::size_t k = 1;
      while (k < rest.size() && std::isdigit(static_cast<unsigned char>(rest[k]))) ++k;
      if (k == 1 || k > 5) return std::nullopt;
      rest.remove_prefix(k);
    }
    if (!rest.empty()) {
      if ((rest.front() != '+' && rest.front() != '-') || rest.size() != 5 || !digits(rest.substr(1)))
        return std::nullopt;
    }
  }
  auto num = [&](std::size_t at, std::size_t len) { return std::stoi(std::string(d.substr(at, len))); };
  int year = num(0, 4);
  if (year < 1) return std::nullopt;
  std::string out(d.substr(0, 4));
  if (d.size() >= 6) {
    int month = num(4, 2);
    if (month < 1 || month > 12) return std::nullopt;
    out += "-" + std::string(d.substr(4, 2));
    if (d.size() >= 8) {
      int day = num(6, 2);
      static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
      bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
      int max = month == 2 && !leap ? 28 : kDays[month - 1];
      if (day < 1 || day > max) return std::nullopt;
      out += "-" + std::string(d.substr(6, 2));
    }
  }
  if (d.size() >= 10 && num(8, 2) > 23) return std::nullopt;
  if (d.size() >= 12 && num(10, 2) > 59) return std::nullopt;
  if (d.size() >= 14 && num(12, 2) > 59) return std::nullopt;
  return out;
}

std::optional<Value> map_cx(const Segment& s, std::size_t field, std::size_t rep) {
  std::string value = text(s, field, rep, 1);
  if (value.empty()) return std::nullopt;
  Value id = Value::object();
  std::string type_code = text(s, field, rep, 5);
  if (!type_code.empty()) {
    Value coding = Value::object();
    coding.set("system", Value::string("http://terminology.hl7.org/CodeSystem/v2-0203"));
    coding.set("code", Value::string(type_code));
    Value codings = Value::array();
    codings.push_back(std::move(coding));
    Value type = Value::object();
    type.set("coding", std::move(codings));
    id.set("type", std::move(type));
  }
  // CX.4 (HD): a universal id of a known kind is the system; the namespace id names the assigner.
  std::string ns = text(s, field, rep, 4, 1), universal = text(s, field, rep, 4, 2), kind = text(s, field, rep, 4, 3);
  if (!universal.empty()) {
    if (kind == "ISO")
      id.set("system", Value::string("urn:oid:" + universal));
    else if (kind == "UUID")
      id.set("system", Value::string("urn:uuid:" + universal));
    else if (kind == "URI")
      id.set("system", Value::string(universal));
  }
  id.set("value", Value::string(value));
  if (auto p = period(s, field, rep, 7, 8)) id.set("period", std::move(*p));
  if (!ns.empty()) {
    Value assigner = Value::object();
    assigner.set("display", Value::string(ns));
    id.set("assigner", std::move(assigner));
  }
  return id;
}

std::optional<Value> map_xpn(const Segment& s, std::size_t field, std::size_t rep) {
  Value name = Value::object();
  std::string use(lookup(kNameUse, text(s, field, rep, 7)));
  set_string(name, "use", use);
  set_string(name, "family", text(s, field, rep, 1, 1));
  push_string(name, "given", text(s, field, rep, 2));
  push_string(name, "given", text(s, field, rep, 3));
  push_string(name, "prefix", text(s, field, rep, 5));
  push_string(name, "suffix", text(s, field, rep, 4));
  push_string(name, "suffix", text(s, field, rep, 6));
  if (auto p = period(s, field, rep, 12, 13)) name.set("period", std::move(*p));
  if (name.find("family") == nullptr && name.find("given") == nullptr) return std::nullopt;
  return name;
}

std::optional<Value> map_xad(const Segment& s, std::size_t field, std::size_t rep) {
  Value a = Value::object();
  std::string type = text(s, field, rep, 7);
  set_string(a, "use", std::string(lookup(kAddressUse, type)));
  set_string(a, "type", std::string(lookup(kAddressType, type)));
  push_string(a, "line", text(s, field, rep, 1, 1));
  push_string(a, "line", text(s, field, rep, 2));
  set_string(a, "city", text(s, field, rep, 3));
  set_string(a, "district", text(s, field, rep, 9));
  set_string(a, "state", text(s, field, rep, 4));
  set_string(a, "postalCode", text(s, field, rep, 5));
  set_string(a, "country", text(s, field, rep, 6));
  if (auto p = period(s, field, rep, 13, 14)) a.set("period", std::move(*p));
  for (const char* k : {"line", "city", "district", "state", "postalCode", "country"})
    if (a.find(k) != nullptr) return a;
  return std::nullopt;
}

std::optional<Value> map_xtn(const Segment& s, std::size_t field, std::size_t rep, std::string_view default_use) {
  std::string use_code = text(s, field, rep, 2), equipment = text(s, field, rep, 3);
  std::string system(lookup(kTelecomSystem, equipment));
  if (system.empty() && use_code == "NET") system = "email";
  std::string value;
  if (system == "email") {
    value = text(s, field, rep, 4);
    if (value.empty()) value = text(s, field, rep, 1);
  } else {
    value = text(s, field, rep, 12);
    if (value.empty()) {
      std::string country = text(s, field, rep, 5), area = text(s, field, rep, 6), local = text(s, field, rep, 7),
                  ext = text(s, field, rep, 8);
      if (!local.empty()) {
        if (!country.empty()) value += "+" + country + " ";
        if (!area.empty()) value += "(" + area + ") ";
        value += local;
        if (!ext.empty()) value += " ext. " + ext;
      }
    }
    if (value.empty()) value = text(s, field, rep, 1);
    if (system.empty() && !value.empty()) system = "phone";
  }
  if (value.empty()) return std::nullopt;
  Value cp = Value::object();
  cp.set("system", Value::string(system));
  cp.set("value", Value::string(value));
  std::string use(lookup(kTelecomUse, use_code));
  if (equipment == "CP") use = "mobile";
  if (use.empty()) use = std::string(default_use);
  set_string(cp, "use", use);
  return cp;
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
  Value p = Value::object();
  p.set("resourceType", Value::string("Patient"));
  Value identifiers = Value::array();
  std::optional<Value> key;
  for (std::size_t f : {std::size_t{3}, std::size_t{2}, std::size_t{4}}) {
    for (std::size_t r = 1, n = pid->repetitions(f); r <= n; ++r) {
      auto id = map_cx(*pid, f, r);
      if (!id) continue;
      if (f == 3 && !key) key = *id;
      identifiers.push_back(std::move(*id));
    }
  }
  if (!key) {
    out.problems.push_back(Problem{ErrorCode::kRequiredFieldMissing, pid->at(3, 1, 1),
                                   "PID-3 (patient identifier list) has no identifier: the patient cannot be matched",
                                   false});
    return out;
  }
  p.set("identifier", std::move(identifiers));
  Value names = Value::array();
  for (std::size_t r = 1, n = pid->repetitions(5); r <= n; ++r)
    if (auto x = map_xpn(*pid, 5, r)) names.push_back(std::move(*x));
  if (!names.items().empty()) p.set("name", std::move(names));
  Value telecom = Value::array();
  for (std::size_t r = 1, n = pid->repetitions(13); r <= n; ++r)
    if (auto x = map_xtn(*pid, 13, r, "home")) telecom.push_back(std::move(*x));
  for (std::size_t r = 1, n = pid->repetitions(14); r <= n; ++r)
    if (auto x = map_xtn(*pid, 14, r, "work")) telecom.push_back(std::move(*x));
  if (!telecom.items().empty()) p.set("telecom", std::move(telecom));
  if (std::string sex = text(*pid, 8, 1, 1); !sex.empty()) {
    std::string_view g = lookup(kSex, sex);
    if (g.empty())
      out.problems.push_back(Problem{ErrorCode::kTableValueNotFound, pid->at(8),
                                     "'" + sex + "' is not an administrative sex of table 0001; left out", true});
    else
      p.set("gender", Value::string(std::string(g)));
  }
  if (std::string dob = text(*pid, 7, 1, 1); !dob.empty()) {
    auto d = v2_date_to_fhir_date(dob);
    if (!d) {
      out.problems.push_back(Problem{ErrorCode::kDataType, pid->at(7),
                                     "'" + dob + "' is not a date (YYYY[MM[DD[HHMM[SS]]]][+/-ZZZZ])", false});
      return out;
    }
    p.set("birthDate", Value::string(*d));
  }
  Value addresses = Value::array();
  for (std::size_t r = 1, n = pid->repetitions(11); r <= n; ++r)
    if (auto x = map_xad(*pid, 11, r)) addresses.push_back(std::move(*x));
  if (!addresses.items().empty()) p.set("address", std::move(addresses));

  MappedResource res;
  res.type = "Patient";
  std::string criterion;
  if (const Value* sys = key->find("system")) criterion = search_escape(sys->text()) + "|";
  criterion += search_escape(key->find("value")->text());
  res.criteria.emplace_back("identifier", criterion);
  res.resource = std::move(p);
  out.resources.push_back(std::move(res));
  return out;
}

MessageMapper find_mapper(std::string_view type, std::string_view trigger) {
  struct Entry {
    const char* type;
    const char* trigger;
    MessageMapper mapper;
  };
  static constexpr Entry kMappers[] = {
      {"ADT", "A01", &map_adt_patient},
      {"ADT", "A04", &map_adt_patient},
      {"ADT", "A08", &map_adt_patient},
      {"ADT", "A31", &map_adt_patient},
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
