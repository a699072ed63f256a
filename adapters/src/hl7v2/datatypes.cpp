#include "caduceus/adapters/hl7v2/datatypes.hpp"

#include <cctype>
#include <cstdio>
#include <utility>

#include "mapping_util.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using fhir::json::Value;
using util::CodeMap;
using util::lookup;
using util::push_string;
using util::set_string;

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

std::string trim(std::string s) {
  std::size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  std::size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

std::string text(const Segment& s, std::size_t field, std::size_t rep, std::size_t c, std::size_t sub = 1) {
  return component(s, field, rep, c, sub);
}

std::optional<Value> period(const Segment& s, std::size_t field, std::size_t rep, std::size_t start_c,
                            std::size_t end_c) {
  Value p = Value::object();
  if (auto d = v2_date_to_fhir_date(text(s, field, rep, start_c))) p.set("start", Value::string(*d));
  if (auto d = v2_date_to_fhir_date(text(s, field, rep, end_c))) p.set("end", Value::string(*d));
  if (p.find("start") == nullptr && p.find("end") == nullptr) return std::nullopt;
  return p;
}

bool digits(std::string_view s) {
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

std::string component(const Segment& s, std::size_t field, std::size_t rep, std::size_t c, std::size_t sub) {
  std::string v = trim(s.get(field, c, sub, rep));
  return v == "\"\"" ? std::string() : v;
}

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
  set_string(id, "system", hd_system(universal, kind));
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

std::optional<std::string> v2_datetime_to_fhir(std::string_view t, const TimeZone& zone) {
  auto date = v2_date_to_fhir_date(t);  // checks the whole text
  if (!date) return std::nullopt;
  std::size_t n = 0;
  while (n < t.size() && std::isdigit(static_cast<unsigned char>(t[n]))) ++n;
  if (n <= 8) return date;  // a date alone (an offset after it says nothing a date can keep)
  std::string_view d = t.substr(0, n), rest = t.substr(n);
  auto num = [&](std::size_t at) { return std::stoi(std::string(d.substr(at, 2))); };
  int hour = num(8), minute = n >= 12 ? num(10) : 0, second = n >= 14 ? num(12) : 0;
  std::string fraction;
  if (!rest.empty() && rest.front() == '.') {
    std::size_t k = 1;
    while (k < rest.size() && std::isdigit(static_cast<unsigned char>(rest[k]))) ++k;
    fraction = std::string(rest.substr(0, k));
    rest.remove_prefix(k);
  }
  int offset = 0;
  if (!rest.empty()) {
    int hh = std::stoi(std::string(rest.substr(1, 2))), mm = std::stoi(std::string(rest.substr(3, 2)));
    if (mm > 59 || hh * 60 + mm > 14 * 60) return std::nullopt;  // (FHIR's offsets go to 14:00)
    offset = (hh * 60 + mm) * (rest.front() == '-' ? -1 : 1);
  } else {
    offset = zone.offset_minutes(std::stoi(std::string(d.substr(0, 4))), static_cast<unsigned>(num(4)),
                                 static_cast<unsigned>(num(6)), hour, minute, second);
  }
  char buf[64];
  int abs_offset = offset < 0 ? -offset : offset;
  std::snprintf(buf, sizeof buf, "T%02d:%02d:%02d%s%c%02d:%02d", hour, minute, second, fraction.c_str(),
                offset < 0 ? '-' : '+', abs_offset / 60, abs_offset % 60);
  return *date + buf;
}

std::string coding_system_uri(std::string_view name) {
  static constexpr CodeMap kSystems[] = {
      {"LN", "http://loinc.org"},
      {"SCT", "http://snomed.info/sct"},
      {"SNM", "http://snomed.info/sct"},
      {"I10", "http://hl7.org/fhir/sid/icd-10"},
      {"I10C", "http://hl7.org/fhir/sid/icd-10-cm"},
      {"ICD10CM", "http://hl7.org/fhir/sid/icd-10-cm"},
      {"I9", "http://hl7.org/fhir/sid/icd-9-cm"},
      {"I9C", "http://hl7.org/fhir/sid/icd-9-cm"},
      {"UCUM", "http://unitsofmeasure.org"},
      {"CVX", "http://hl7.org/fhir/sid/cvx"},
      {"RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"},
      {"NDC", "http://hl7.org/fhir/sid/ndc"},
      {"ISO3166_1", "urn:iso:std:iso:3166"},
  };
  if (name.empty()) return {};
  if (auto uri = lookup(kSystems, name); !uri.empty()) return std::string(uri);
  // HL7nnnn / HL7-nnnn: an HL7 table.
  if (name.size() >= 7 && name.starts_with("HL7")) {
    std::string_view digits_part = name.substr(name[3] == '-' ? 4 : 3);
    if (digits_part.size() == 4 && digits(digits_part))
      return "http://terminology.hl7.org/CodeSystem/v2-" + std::string(digits_part);
  }
  if (name.starts_with("http://") || name.starts_with("https://") || name.starts_with("urn:")) return std::string(name);
  return {};
}

std::optional<Value> map_cwe_coding(const Segment& s, std::size_t field, std::size_t rep,
                                    std::string_view default_system, bool alternate) {
  std::size_t base = alternate ? 4 : 1;
  std::string code = text(s, field, rep, base), display = text(s, field, rep, base + 1),
              system_name = text(s, field, rep, base + 2);
  if (code.empty()) return std::nullopt;
  Value coding = Value::object();
  std::string system = coding_system_uri(system_name);
  if (system.empty() && system_name.empty()) system = std::string(default_system);
  set_string(coding, "system", system);
  coding.set("code", Value::string(code));
  set_string(coding, "display", display);
  return coding;
}

std::optional<Value> map_cwe(const Segment& s, std::size_t field, std::size_t rep, std::string_view default_system) {
  Value cc = Value::object();
  for (bool alternate : {false, true})
    if (auto c = map_cwe_coding(s, field, rep, default_system, alternate)) util::push(cc, "coding", std::move(*c));
  std::string original = text(s, field, rep, 9);
  if (original.empty() && cc.find("coding") == nullptr) original = text(s, field, rep, 2);
  set_string(cc, "text", original);
  if (cc.members().empty()) return std::nullopt;
  return cc;
}

std::string hd_system(std::string_view universal_id, std::string_view type) {
  if (universal_id.empty()) return {};
  if (type == "ISO") return "urn:oid:" + std::string(universal_id);
  if (type == "UUID") return "urn:uuid:" + std::string(universal_id);
  if (type == "URI") return std::string(universal_id);
  return {};
}

std::optional<Value> map_xcn_reference(const Segment& s, std::size_t field, std::size_t rep) {
  std::string id = text(s, field, rep, 1), family = text(s, field, rep, 2, 1), given = text(s, field, rep, 3);
  std::string display = given.empty() ? family : family.empty() ? given : given + " " + family;
  if (id.empty() && display.empty()) return std::nullopt;
  Value ref = Value::object();
  if (!id.empty()) {
    Value identifier = Value::object();
    std::string universal = text(s, field, rep, 9, 2), kind = text(s, field, rep, 9, 3);
    if (kind == "ISO") set_string(identifier, "system", hd_system(universal, kind));
    identifier.set("value", Value::string(id));
    ref.set("identifier", std::move(identifier));
  }
  set_string(ref, "display", display);
  return ref;
}

}  // namespace caduceus::adapters::hl7v2
