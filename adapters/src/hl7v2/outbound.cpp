#include "caduceus/adapters/hl7v2/outbound.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "caduceus/adapters/hl7v2/inbound.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/mllp_client.hpp"
#include "caduceus/fhir/thread_name.hpp"

namespace caduceus::adapters::hl7v2 {

using fhir::ErrorKind;
using fhir::Result;
using fhir::json::Value;

namespace {

std::string str(const Value* v) {
  return v != nullptr && v->is_string() ? v->text() : std::string();
}
std::string str(const Value& v, std::string_view key) {
  return str(v.find(key));
}
const Value* first(const Value& v, std::string_view key) {
  const Value* a = v.find(key);
  if (a == nullptr) return nullptr;
  if (a->is_array()) return a->items().empty() ? nullptr : &a->items().front();
  return a;
}

// A CodeableConcept as CWE components: code, text, coding system.
std::vector<std::string> cwe(const Value* cc) {
  if (cc == nullptr) return {};
  const Value* coding = first(*cc, "coding");
  if (coding == nullptr) return {"", str(*cc, "text")};
  std::string display = str(*coding, "display");
  if (display.empty()) display = str(*cc, "text");
  return {str(*coding, "code"), display, str(*coding, "system")};
}

bool has_code(const Value& resource, std::string_view key, std::initializer_list<std::string_view> codes) {
  const Value* list = resource.find(key);
  if (list == nullptr || !list->is_array()) return false;
  for (const Value& cc : list->items()) {
    const Value* codings = cc.find("coding");
    if (codings == nullptr || !codings->is_array()) continue;
    for (const Value& c : codings->items())
      if (std::find(codes.begin(), codes.end(), str(c, "code")) != codes.end()) return true;
  }
  return false;
}

// A reference's display or reference text, as an XCN's id.
std::vector<std::string> xcn(const Value* ref) {
  if (ref == nullptr) return {};
  std::string r = str(*ref, "reference");
  if (auto slash = r.rfind('/'); slash != std::string::npos) r = r.substr(slash + 1);
  return {r, str(*ref, "display")};
}

std::string decimal(const Value* v) {
  if (v == nullptr) return {};
  return v->is_number() || v->is_string() ? v->text() : std::string();
}

SegmentBuilder pid(const MessageBuilder& mb, const Value* patient) {
  SegmentBuilder s = mb.segment("PID");
  s.field(1, "1");
  if (patient == nullptr) return s;
  std::vector<std::vector<std::string>> ids;
  if (const Value* list = patient->find("identifier"); list != nullptr && list->is_array())
    for (const Value& id : list->items())
      if (!str(id, "value").empty()) ids.push_back({str(id, "value"), "", "", str(id, "system")});
  if (ids.empty() && !str(*patient, "id").empty()) ids.push_back({str(*patient, "id")});
  s.repetitions(3, ids);
  if (const Value* name = first(*patient, "name")) {
    std::vector<std::string> given;
    if (const Value* g = name->find("given"); g != nullptr && g->is_array())
      for (const Value& x : g->items()) given.push_back(str(&x));
    s.components(5, {str(*name, "family"), given.size() > 0 ? given[0] : "", given.size() > 1 ? given[1] : ""});
  }
  s.field(7, fhir_to_v2_datetime(str(*patient, "birthDate")));
  std::string g = str(*patient, "gender");
  s.field(8, g == "male" ? "M" : g == "female" ? "F" : g == "other" ? "O" : g.empty() ? "" : "U");
  return s;
}

// ORC and OBR of an order (the placer order number is the resource's id).
SegmentBuilder orc(const MessageBuilder& mb, const Value& resource) {
  SegmentBuilder s = mb.segment("ORC");
  s.field(1, "NW").components(2, {str(resource, "id"), "CADUCEUS"}).field(5, "SC");
  s.field(9, fhir_to_v2_datetime(str(resource, "authoredOn")));
  s.components(12, xcn(resource.find("requester")));
  return s;
}

std::string obx_status(std::string_view status) {
  if (status == "final") return "F";
  if (status == "preliminary" || status == "registered") return "P";
  if (status == "amended" || status == "corrected") return "C";
  if (status == "cancelled" || status == "entered-in-error") return "X";
  return "F";
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string fhir_to_v2_datetime(std::string_view t) {
  // YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|+hh:mm]]]]
  auto digits = [&](std::size_t at, std::size_t n) {
    if (at + n > t.size()) return false;
    for (std::size_t i = at; i < at + n; ++i)
      if (!std::isdigit(static_cast<unsigned char>(t[i]))) return false;
    return true;
  };
  if (!digits(0, 4)) return {};
  std::string out(t.substr(0, 4));
  std::size_t i = 4;
  if (i == t.size()) return out;
  if (t[i] != '-' || !digits(i + 1, 2)) return {};
  out += t.substr(i + 1, 2);
  i += 3;
  if (i == t.size()) return out;
  if (t[i] != '-' || !digits(i + 1, 2)) return {};
  out += t.substr(i + 1, 2);
  i += 3;
  if (i == t.size()) return out;
  if (t[i] != 'T' || !digits(i + 1, 2) || i + 3 >= t.size() || t[i + 3] != ':' || !digits(i + 4, 2)) return {};
  out += t.substr(i + 1, 2);
  out += t.substr(i + 4, 2);
  i += 6;
  if (i < t.size() && t[i] == ':') {
    if (!digits(i + 1, 2)) return {};
    out += t.substr(i + 1, 2);
    i += 3;
    if (i < t.size() && t[i] == '.') {
      std::size_t j = i + 1;
      while (j < t.size() && std::isdigit(static_cast<unsigned char>(t[j]))) ++j;
      if (j == i + 1) return {};
      out += t.substr(i, std::min<std::size_t>(j - i, 5));  // DTM keeps at most 4 fraction digits
      i = j;
    }
  }
  if (i == t.size()) return out;
  if (t[i] == 'Z' && i + 1 == t.size()) return out + "+0000";
  if ((t[i] == '+' || t[i] == '-') && digits(i + 1, 2) && i + 3 < t.size() && t[i + 3] == ':' && digits(i + 4, 2) &&
      i + 6 == t.size())
    return out + t[i] + std::string(t.substr(i + 1, 2)) + std::string(t.substr(i + 4, 2));
  return {};
}

std::optional<std::string> outbound_message_type(const Destination& d, const Value& resource) {
  std::string type = str(resource, "resourceType");
  std::string status = str(resource, "status");
  if (type == "ServiceRequest" && d.orders && status == "active" &&
      has_code(resource, "category", {"108252007", "laboratory", "LAB"}))
    return d.order_message;
  if (type == "MedicationRequest" && d.pharmacy && status == "active") return "RDE^O11";
  if (type == "DiagnosticReport" && d.results && status == "final") return "ORU^R01";
  return std::nullopt;
}

Result<std::string> build_outbound(std::string_view message_type, const Value& r, OutboundContext context) {
  MessageHeader& h = context.header;
  std::string type = str(r, "resourceType");
  auto invalid = [](const std::string& what, const std::string& expression) {
    return fhir::fail(ErrorKind::kInvalid, "invalid", what, expression);
  };
  if (message_type == "ORM^O01" || message_type == "OML^O21") {
    if (type != "ServiceRequest") return invalid(std::string(message_type) + " is built from a ServiceRequest", "");
    if (r.find("code") == nullptr) return invalid("the ServiceRequest has no code", "ServiceRequest.code");
    bool orm = message_type == "ORM^O01";
    h.type = orm ? "ORM" : "OML";
    h.trigger = orm ? "O01" : "O21";
    h.structure = orm ? "ORM_O01" : "OML_O21";
    MessageBuilder mb(h);
    mb.add(pid(mb, context.patient)).add(orc(mb, r));
    SegmentBuilder obr = mb.segment("OBR");
    obr.field(1, "1").components(2, {str(r, "id"), "CADUCEUS"}).components(4, cwe(r.find("code")));
    obr.field(7, fhir_to_v2_datetime(str(r, "occurrenceDateTime")));
    obr.components(16, xcn(r.find("requester")));
    mb.add(obr);
    return mb.str();
  }
  if (message_type == "RDE^O11") {
    if (type != "MedicationRequest") return invalid("RDE^O11 is built from a MedicationRequest", "");
    const Value* med = r.find("medicationCodeableConcept");
    if (med == nullptr)
      return invalid("the MedicationRequest has no medicationCodeableConcept",
                     "MedicationRequest.medicationCodeableConcept");
    h.type = "RDE";
    h.trigger = "O11";
    h.structure = "RDE_O11";
    MessageBuilder mb(h);
    mb.add(pid(mb, context.patient)).add(orc(mb, r));
    SegmentBuilder rxe = mb.segment("RXE");
    const Value* dosage = first(r, "dosageInstruction");
    const Value* dose = nullptr;
    if (dosage != nullptr)
      if (const Value* dr = first(*dosage, "doseAndRate")) dose = dr->find("doseQuantity");
    rxe.components(2, cwe(med));
    if (dose != nullptr) {
      rxe.field(3, decimal(dose->find("value")));
      std::string unit = str(*dose, "code");
      if (unit.empty()) unit = str(*dose, "unit");
      rxe.components(5, {unit, str(*dose, "unit"), str(*dose, "system")});
    }
    if (dosage != nullptr) rxe.components(21, {"", str(*dosage, "text")});
    mb.add(rxe);
    if (dosage != nullptr && dosage->find("route") != nullptr) {
      SegmentBuilder rxr = mb.segment("RXR");
      rxr.components(1, cwe(dosage->find("route")));
      mb.add(rxr);
    }
    return mb.str();
  }
  if (message_type == "ORU^R01") {
    if (type != "DiagnosticReport") return invalid("ORU^R01 is built from a DiagnosticReport", "");
    if (r.find("code") == nullptr) return invalid("the DiagnosticReport has no code", "DiagnosticReport.code");
    h.type = "ORU";
    h.trigger = "R01";
    h.structure = "ORU_R01";
    MessageBuilder mb(h);
    mb.add(pid(mb, context.patient));
    SegmentBuilder obr = mb.segment("OBR");
    obr.field(1, "1").components(3, {str(r, "id"), "CADUCEUS"}).components(4, cwe(r.find("code")));
    obr.field(7, fhir_to_v2_datetime(str(r, "effectiveDateTime")));
    obr.field(22, fhir_to_v2_datetime(str(r, "issued")));
    obr.field(25, obx_status(str(r, "status")));
    mb.add(obr);
    std::size_t n = 0;
    for (const Value& o : context.observations) {
      SegmentBuilder obx = mb.segment("OBX");
      obx.field(1, std::to_string(++n));
      if (const Value* q = o.find("valueQuantity")) {
        std::string unit = str(*q, "code");
        if (unit.empty()) unit = str(*q, "unit");
        obx.field(2, "NM")
            .field(5, decimal(q->find("value")))
            .components(6, {unit, str(*q, "unit"), str(*q, "system")});
      } else if (const Value* c = o.find("valueCodeableConcept")) {
        obx.field(2, "CWE").components(5, cwe(c));
      } else if (const Value* s = o.find("valueString")) {
        obx.field(2, "ST").field(5, str(s));
      }
      obx.components(3, cwe(o.find("code")));
      if (const Value* range = first(o, "referenceRange")) {
        std::string text = str(*range, "text");
        if (text.empty()) {
          std::string low = range->find("low") ? decimal(range->find("low")->find("value")) : "";
          std::string high = range->find("high") ? decimal(range->find("high")->find("value")) : "";
          if (!low.empty() || !high.empty()) text = low + "-" + high;
        }
        obx.field(7, text);
      }
      obx.field(11, obx_status(str(o, "status")));
      obx.field(14, fhir_to_v2_datetime(str(o, "effectiveDateTime")));
      mb.add(obx);
    }
    return mb.str();
  }
  return fhir::fail(ErrorKind::kNotSupported, "not-supported",
                    "outbound message type " + std::string(message_type) + " is not supported");
}

// --- the queue in memory

Result<std::int64_t> MemoryOutboundQueue::enqueue(OutboundItem item) {
  std::lock_guard lock(mutex_);
  item.id = next_id_++;
  item.status = "pending";
  items_[item.id] = std::move(item);
  return items_.rbegin()->first;
}

Result<std::optional<OutboundItem>> MemoryOutboundQueue::head(std::string_view destination) {
  std::lock_guard lock(mutex_);
  for (const auto& [id, item] : items_)
    if (item.destination == destination && item.status == "pending") return std::optional<OutboundItem>(item);
  return std::optional<OutboundItem>();
}

Result<void> MemoryOutboundQueue::update(const OutboundItem& item) {
  std::lock_guard lock(mutex_);
  auto it = items_.find(item.id);
  if (it == items_.end())
    return fhir::fail(ErrorKind::kNotFound, "not-found", "no outbound message " + std::to_string(item.id));
  OutboundItem& x = it->second;
  x.status = item.status;
  x.attempts = item.attempts;
  x.last_error = item.last_error;
  x.ack = item.ack;
  x.updated_ms = item.updated_ms;
  x.next_attempt_ms = item.next_attempt_ms;
  return {};
}

Result<std::vector<OutboundItem>> MemoryOutboundQueue::list(std::string_view destination) {
  std::lock_guard lock(mutex_);
  std::vector<OutboundItem> out;
  for (const auto& [id, item] : items_)
    if (destination.empty() || item.destination == destination) out.push_back(item);
  return out;
}

// --- the sender

OutboundSender::OutboundSender(std::vector<Destination> destinations, OutboundQueue& queue, SenderOptions options,
                               Observer observer)
    : destinations_(std::move(destinations)), queue_(queue), options_(options), observer_(std::move(observer)) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "O%llX", static_cast<unsigned long long>(now_ms()));
  prefix_ = buf;
}

std::string OutboundSender::next_control_id() {
  char buf[24];
  std::snprintf(buf, sizeof buf, ".%llX", static_cast<unsigned long long>(++counter_));
  return prefix_ + buf;
}

Result<std::vector<OutboundItem>> OutboundSender::prepare(const Value& resource, std::string source,
                                                          const Resolver& resolve) {
  std::vector<OutboundItem> out;
  std::optional<Value> patient;
  bool patient_read = false;
  std::optional<std::vector<Value>> observations;
  for (const Destination& d : destinations_) {
    auto type = outbound_message_type(d, resource);
    if (!type) continue;
    if (!patient_read) {
      patient_read = true;
      if (const Value* subject = resource.find("subject")) {
        std::string ref = str(*subject, "reference");
        if (ref.starts_with("Patient/") && resolve) patient = resolve(ref);
      }
    }
    OutboundContext ctx;
    ctx.header.receiving_application = d.receiving_application;
    ctx.header.receiving_facility = d.receiving_facility;
    ctx.header.timestamp = InboundProcessor::timestamp();
    ctx.header.control_id = next_control_id();
    ctx.patient = patient ? &*patient : nullptr;
    if (*type == "ORU^R01") {
      if (!observations) {
        observations.emplace();
        if (const Value* results = resource.find("result"); results != nullptr && results->is_array() && resolve)
          for (const Value& r : results->items())
            if (auto o = resolve(str(r, "reference"))) observations->push_back(std::move(*o));
      }
      ctx.observations = *observations;
    }
    OutboundItem item;
    item.destination = d.name;
    item.message_type = *type;
    item.control_id = ctx.header.control_id;
    auto message = build_outbound(*type, resource, std::move(ctx));
    if (!message) return std::unexpected(message.error());
    item.message = std::move(*message);
    item.source = source;
    item.created_ms = item.updated_ms = now_ms();
    out.push_back(std::move(item));
  }
  return out;
}

Result<std::vector<std::int64_t>> OutboundSender::dispatch(const Value& resource, std::string source,
                                                           const Resolver& resolve) {
  auto items = prepare(resource, std::move(source), resolve);
  if (!items) return std::unexpected(items.error());
  std::vector<std::int64_t> out;
  for (OutboundItem& item : *items) {
    auto id = submit(item.destination, std::move(item.message_type), std::move(item.control_id),
                     std::move(item.message), std::move(item.source));
    if (!id) return std::unexpected(id.error());
    out.push_back(*id);
  }
  return out;
}

OutboundSender::~OutboundSender() {
  stop();
}

void OutboundSender::start() {
  std::lock_guard lock(mutex_);
  if (!threads_.empty()) return;
  stopping_ = false;
  for (const Destination& d : destinations_)
    threads_.emplace_back([this, &d] {
      name_this_thread("cad-hl7-out");
      run(d);
    });
}

void OutboundSender::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void OutboundSender::notify() {
  {
    std::lock_guard lock(mutex_);
    ++generation_;
  }
  wake_.notify_all();
}

Result<std::int64_t> OutboundSender::submit(std::string_view destination, std::string message_type,
                                            std::string control_id, std::string message, std::string source) {
  if (std::none_of(destinations_.begin(), destinations_.end(),
                   [&](const Destination& d) { return d.name == destination; }))
    return fhir::fail(ErrorKind::kInvalid, "invalid", "no outbound destination '" + std::string(destination) + "'");
  OutboundItem item;
  item.destination = destination;
  item.message_type = std::move(message_type);
  item.control_id = std::move(control_id);
  item.message = std::move(message);
  item.source = std::move(source);
  item.created_ms = item.updated_ms = now_ms();
  auto id = queue_.enqueue(std::move(item));
  if (id) notify();
  return id;
}

std::chrono::milliseconds OutboundSender::backoff(int attempts) const {
  auto wait = options_.backoff_initial;
  for (int i = 1; i < attempts && wait < options_.backoff_max; ++i) wait *= 2;
  return std::min(wait, options_.backoff_max);
}

void OutboundSender::run(const Destination& d) {
  MllpClient client(options_.max_frame);
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      seen = generation_;
    }
    auto head = queue_.head(d.name);
    std::optional<std::chrono::milliseconds> wait;  // nothing to do now: how long until something may be
    if (!head) {
      wait = options_.backoff_initial;  // the queue failed: try again later
    } else if (!*head) {
      wait = std::chrono::hours(1);  // until notified
    } else if ((*head)->next_attempt_ms > now_ms()) {
      wait = std::chrono::milliseconds((*head)->next_attempt_ms - now_ms());
    }
    if (wait) {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, *wait, [&] { return stopping_ || generation_ != seen; });
      continue;
    }
    OutboundItem item = std::move(**head);
    std::string error;
    std::string ack;
    if (!client.connected()) {
      auto c = client.connect(d.host, d.port, options_.connect_timeout);
      if (!c) error = c.error().issues.empty() ? "cannot connect" : c.error().issues.front().diagnostics;
    }
    if (error.empty()) {
      auto answer = client.exchange(item.message, options_.ack_timeout);
      if (!answer) {
        error = answer.error().issues.empty() ? "no answer" : answer.error().issues.front().diagnostics;
      } else {
        ack = std::move(*answer);
        auto parsed = parse(ack);
        const Segment* msa = parsed ? parsed->first("MSA") : nullptr;
        if (msa == nullptr) {
          error = "the answer is not an acknowledgement (no MSA)";
          client.close();
        } else if (msa->get(2) != item.control_id) {
          error = "the acknowledgement is for control id '" + msa->get(2) + "', not '" + item.control_id + "'";
          client.close();  // out of step with the receiver: start afresh
        } else if (msa->get(1) != "AA" && msa->get(1) != "CA") {
          std::string text = msa->get(3);
          if (const Segment* err = parsed->first("ERR"); err != nullptr && !err->get(8).empty()) text = err->get(8);
          error = "answered " + msa->get(1) + (text.empty() ? "" : ": " + text);
        }
      }
    }
    item.updated_ms = now_ms();
    item.ack = ack;
    if (error.empty()) {
      item.status = "sent";
      item.last_error.clear();
    } else {
      ++item.attempts;
      item.last_error = error;
      if (item.attempts >= options_.max_attempts) {
        item.status = "dead";
      } else {
        item.next_attempt_ms = item.updated_ms + backoff(item.attempts).count();
      }
    }
    if (auto u = queue_.update(item); !u) {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, options_.backoff_initial, [&] { return stopping_; });
      continue;
    }
    if (observer_) observer_(item);
  }
}

}  // namespace caduceus::adapters::hl7v2
