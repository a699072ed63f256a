// SIU^S12, S13, S14, S15, S26 -> Patient, Appointment (IG SCH[Appointment], AIS/AIG/AIL/AIP[Appointment],
// PID[Appointment]).
#include <cctype>
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
// FillerStatusCodes (table 0278) -> appointmentstatus (IG concept map FillerStatusCodes[Appointment]).
constexpr CodeMap kAppointmentStatus[] = {
    {"Pending", "pending"},          {"Waitlist", "waitlist"},  {"Booked", "booked"},
    {"Started", "checked-in"},       {"Complete", "fulfilled"}, {"Cancelled", "cancelled"},
    {"Deleted", "entered-in-error"}, {"Noshow", "noshow"}};
// FillerStatusCodes (table 0278) of a resource -> participationstatus (ours).
constexpr CodeMap kParticipationStatus[] = {
    {"Booked", "accepted"},    {"Started", "accepted"},   {"Complete", "accepted"},     {"Cancelled", "declined"},
    {"Deleted", "declined"},   {"Noshow", "declined"},    {"Discontinued", "declined"}, {"Pending", "tentative"},
    {"Waitlist", "tentative"}, {"Overbook", "tentative"}, {"Blocked", "tentative"}};

template <std::size_t N>
std::string lookup(const CodeMap (&table)[N], std::string_view code) {
  for (const CodeMap& c : table)
    if (code == c.v2) return c.fhir;
  return {};
}

Value participant(Value actor, std::optional<Value> type, const std::string& status_code) {
  Value p = Value::object();
  if (type) p.set("type", one(std::move(*type)));
  p.set("actor", std::move(actor));
  std::string status = lookup(kParticipationStatus, status_code);
  p.set("status", Value::string(status.empty() ? "needs-action" : status));
  return p;
}

}  // namespace

Mapping map_siu(const Message& m) {
  Mapping out;
  const Segment* sch = m.first("SCH");
  if (sch == nullptr) {
    Location l;
    l.segment = "SCH";
    out.problems.push_back(Problem{ErrorCode::kSegmentSequence, l, "the message has no SCH segment", false});
    return out;
  }
  std::string patient = add_patient(m, out, false);
  for (const Problem& p : out.problems)
    if (!p.warning) return out;

  Value ap = Value::object();
  ap.set("resourceType", Value::string("Appointment"));
  std::optional<Value> placer = map_ei(*sch, 1, 1, 0, "PLAC"), filler = map_ei(*sch, 2, 1, 0, "FILL");
  if (!placer && !filler) {
    out.problems.push_back(
        required(*sch, 2,
                 "SCH-2 (filler appointment id) and SCH-1 (placer appointment id) are both empty: the appointment "
                 "cannot be matched"));
    return out;
  }
  Value ids = Value::array();
  if (placer) ids.push_back(*placer);
  if (filler) ids.push_back(*filler);
  ap.set("identifier", std::move(ids));

  // Status: the event says it for S15 (cancelled) and S26 (no-show); else SCH-25 (filler status), else booked.
  std::string status;
  if (m.trigger == "S15") {
    status = "cancelled";
  } else if (m.trigger == "S26") {
    status = "noshow";
  } else {
    std::string code = txt(*sch, 25);
    status = lookup(kAppointmentStatus, code);
    if (!code.empty() && status.empty()) {
      if (lookup(kParticipationStatus, code).empty()) {
        out.problems.push_back(unknown_code(*sch, 25, "'" + code + "' is not a filler status of table 0278"));
        return out;
      }
      // (Discontinued, Blocked, Overbook: the IG maps them to nothing)
      out.problems.push_back(warning(*sch, 25, "filler status '" + code + "' has no FHIR status: booked"));
    }
    if (status.empty()) status = "booked";
  }
  ap.set("status", Value::string(status));
  if (auto reason = map_cwe_triplets(*sch, 7)) ap.set("reasonCode", one(std::move(*reason)));
  for (const Segment& s : m.segments)
    if (s.name == "AIS")
      if (auto service = map_cwe_triplets(s, 3)) push(ap, "serviceType", std::move(*service));

  // Start and end: TQ1-7/8, else SCH-11.4/11.5 (TQ), else the first AIS-4 (start).
  const Segment* tq1 = m.first("TQ1");
  bool ok = true;
  if (tq1 != nullptr && !txt(*tq1, 7).empty()) {
    ok = set_datetime(ap, "start", *tq1, 7, 1, out, true) && ok;
    ok = set_datetime(ap, "end", *tq1, 8, 1, out, true) && ok;
  } else if (!txt(*sch, 11, 1, 4).empty()) {
    ok = set_datetime(ap, "start", *sch, 11, 4, out, true) && ok;
    ok = set_datetime(ap, "end", *sch, 11, 5, out, true) && ok;
  } else if (const Segment* ais = m.first("AIS"); ais != nullptr) {
    ok = set_datetime(ap, "start", *ais, 4, 1, out, true) && ok;
  }
  if (!ok) return out;
  // SCH-9 duration in SCH-10 units (minutes when empty).
  if (std::string d = txt(*sch, 9); !d.empty()) {
    auto n = v2_decimal(d);
    if (!n || n->find('.') != std::string::npos || n->front() == '-' || n->size() > 9) {
      out.problems.push_back(bad_value(*sch, 9, "'" + d + "' is not a whole duration"));
      return out;
    }
    long long v = std::stoll(*n);
    std::string unit = txt(*sch, 10, 1, 1);
    for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    long long minutes = -1;
    if (unit.empty() || unit == "min" || unit == "minute" || unit == "minutes")
      minutes = v;
    else if (unit == "h" || unit == "hr" || unit == "hour" || unit == "hours")
      minutes = v * 60;
    else if ((unit == "s" || unit == "sec") && v % 60 == 0)
      minutes = v / 60;
    if (minutes > 0) ap.set("minutesDuration", Value::number(std::to_string(minutes)));
  }

  // Participants: the patient, then each AIP (person), AIL (location), AIG (general resource).
  if (!patient.empty()) {
    Value actor = reference(patient);
    actor.set("type", Value::string("Patient"));
    Value p = Value::object();
    p.set("actor", std::move(actor));
    p.set("status", Value::string(status == "cancelled" || status == "noshow" ? "declined" : "accepted"));
    push(ap, "participant", std::move(p));
  }
  for (const Segment& s : m.segments) {
    if (s.name == "AIP") {
      for (std::size_t r = 1, n = s.repetitions(3); r <= n; ++r)
        if (auto actor = map_xcn_reference(s, 3, r, "Practitioner"))
          push(ap, "participant", participant(std::move(*actor), map_cwe_triplets(s, 4), txt(s, 12)));
    } else if (s.name == "AIL") {
      std::string display;
      for (std::size_t c : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{4}})
        if (std::string part = txt(s, 3, 1, c, 1); !part.empty()) display += (display.empty() ? "" : " ") + part;
      if (display.empty()) continue;
      Value actor = Value::object();
      actor.set("type", Value::string("Location"));
      actor.set("display", Value::string(display));
      push(ap, "participant", participant(std::move(actor), map_cwe_triplets(s, 4), txt(s, 12)));
    } else if (s.name == "AIG") {
      std::string id = txt(s, 3, 1, 1), name = txt(s, 3, 1, 2);
      if (id.empty() && name.empty()) continue;
      Value actor = Value::object();
      if (!id.empty()) {
        Value identifier = Value::object();
        set_str(identifier, "system", code_system_uri(txt(s, 3, 1, 3)));
        identifier.set("value", Value::string(id));
        actor.set("identifier", std::move(identifier));
      }
      set_str(actor, "display", name);
      push(ap, "participant", participant(std::move(actor), map_cwe_triplets(s, 4), txt(s, 14)));
    }
  }
  if (ap.find("participant") == nullptr) {
    out.problems.push_back(required(*sch, 0, "the appointment has no participant (PID, AIP, AIL or AIG)"));
    return out;
  }
  add(out, "Appointment", std::move(ap), {{"identifier", token(filler ? *filler : *placer)}});
  return out;
}

}  // namespace caduceus::adapters::hl7v2
