#include "hl7_monitor.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "caduceus/adapters/hl7v2/inbound.hpp"
#include "caduceus/adapters/hl7v2/outbound_store.hpp"
#include "caduceus/fhir/datetime.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/server/errors.hpp"
#include "url.hpp"

namespace caduceus::server {

namespace {

using fhir::ErrorKind;
using fhir::Result;
using fhir::json::Value;
using resources::Hl7MessageQuery;
using resources::InboundMessageRecord;
using resources::OutboundMessageRecord;

constexpr std::string_view kBase = "/admin/hl7/messages";

Value str(std::string s) {
  return Value::string(std::move(s));
}
Value num(std::int64_t n) {
  return Value::number(std::to_string(n));
}

Response json_reply(int status, const Value& body, std::string interaction) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = fhir::json::write(body, true);
  r.interaction = std::move(interaction);
  return r;
}

Response failure(const fhir::Error& e, std::string interaction) {
  Response r = error_response(e);
  r.interaction = std::move(interaction);
  return r;
}

Response failure(ErrorKind kind, std::string code, std::string message, std::string expression,
                 std::string interaction) {
  Response r = error_response(kind, std::move(code), std::move(message), std::move(expression));
  r.interaction = std::move(interaction);
  return r;
}

std::optional<std::int64_t> to_int(std::string_view text) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

// "in-12" / "out-3" (a bare number: inbound, as the Provenance's entity names it).
struct MessageId {
  bool inbound = true;
  std::int64_t id = 0;
};
std::optional<MessageId> parse_id(std::string_view text) {
  MessageId m;
  if (text.starts_with("in-")) {
    text.remove_prefix(3);
  } else if (text.starts_with("out-")) {
    m.inbound = false;
    text.remove_prefix(4);
  }
  auto n = to_int(text);
  if (!n || *n <= 0) return std::nullopt;
  m.id = *n;
  return m;
}

// The segments of a message, each with its fields as written (escape sequences kept): fields[n-1] is SEG-n (for
// MSH, MSH-1 is the field separator). Segments end at CR, LF or CRLF.
Value segments_of(std::string_view raw) {
  Value out = Value::array();
  char sep = raw.size() > 3 && raw.starts_with("MSH") ? raw[3] : '|';
  std::size_t at = 0;
  while (at < raw.size()) {
    std::size_t end = raw.find_first_of("\r\n", at);
    if (end == std::string_view::npos) end = raw.size();
    std::string_view line = raw.substr(at, end - at);
    at = end + 1;
    if (line.empty()) continue;
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (true) {
      std::size_t bar = line.find(sep, start);
      parts.emplace_back(line.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start));
      if (bar == std::string_view::npos) break;
      start = bar + 1;
    }
    Value seg = Value::object();
    seg.set("name", str(parts.front()));
    Value fields = Value::array();
    if (parts.front() == "MSH") fields.push_back(str(std::string(1, sep)));
    for (std::size_t i = 1; i < parts.size(); ++i) fields.push_back(str(std::move(parts[i])));
    seg.set("fields", std::move(fields));
    out.push_back(std::move(seg));
  }
  return out;
}

// The field of a segment as segments_of shows it ("" when absent).
std::string field(const Value& segment, std::size_t n) {
  const Value* fields = segment.find("fields");
  if (fields == nullptr || n == 0 || n > fields->items().size()) return {};
  return fields->items()[n - 1].text();
}

// An acknowledgement: its text, MSA-1, MSA-3 and its ERR segments (location ERR-2, code ERR-3, severity ERR-4,
// diagnostics ERR-8, or ERR-1 in a version before 2.5).
Value ack_of(const std::string& raw) {
  Value ack = Value::object();
  ack.set("raw", str(raw));
  Value segments = segments_of(raw);
  Value errors = Value::array();
  for (const Value& seg : segments.items()) {
    const std::string name = seg.find("name")->text();
    if (name == "MSA") {
      ack.set("code", str(field(seg, 1)));
      if (std::string text = field(seg, 3); !text.empty()) ack.set("text", str(text));
    } else if (name == "ERR") {
      Value e = Value::object();
      if (std::string v = field(seg, 1); !v.empty()) e.set("errorCodeAndLocation", str(v));
      if (std::string v = field(seg, 2); !v.empty()) e.set("location", str(v));
      if (std::string v = field(seg, 3); !v.empty()) e.set("code", str(v));
      if (std::string v = field(seg, 4); !v.empty()) e.set("severity", str(v));
      if (std::string v = field(seg, 8); !v.empty()) e.set("diagnostics", str(v));
      errors.push_back(std::move(e));
    }
  }
  ack.set("errors", std::move(errors));
  return ack;
}

// "Patient/1/_history/2" as {reference, version, versioned}.
Value resource_refs(const std::vector<std::string>& versions) {
  Value out = Value::array();
  for (const std::string& v : versions) {
    Value r = Value::object();
    auto at = v.find("/_history/");
    r.set("reference", str(v.substr(0, at)));
    if (at != std::string::npos) r.set("version", str(v.substr(at + 10)));
    r.set("versioned", str(v));
    out.push_back(std::move(r));
  }
  return out;
}

Value summary(const InboundMessageRecord& m) {
  Value v = Value::object();
  v.set("id", str("in-" + std::to_string(m.id)));
  v.set("direction", str("in"));
  v.set("type", str(m.message_type));
  v.set("controlId", str(m.control_id));
  v.set("sendingApplication", str(m.sending_application));
  v.set("sendingFacility", str(m.sending_facility));
  v.set("received", str(fhir::format_instant(m.received_ms)));
  v.set("status", str(m.status));
  if (!m.error.empty()) v.set("error", str(m.error));
  if (m.replays > 0) {
    v.set("replays", num(m.replays));
    v.set("replayed", str(fhir::format_instant(m.replayed_ms)));
  }
  return v;
}

Value summary(const OutboundMessageRecord& m) {
  Value v = Value::object();
  v.set("id", str("out-" + std::to_string(m.id)));
  v.set("direction", str("out"));
  v.set("type", str(m.message_type));
  v.set("controlId", str(m.control_id));
  v.set("destination", str(m.destination));
  v.set("created", str(fhir::format_instant(m.created_ms)));
  v.set("status", str(m.status));
  v.set("attempts", num(m.attempts));
  if (!m.last_error.empty()) v.set("error", str(m.last_error));
  return v;
}

Value detail(const InboundMessageRecord& m) {
  Value v = summary(m);
  v.set("updated", str(fhir::format_instant(m.updated_ms)));
  v.set("raw", str(m.raw));
  v.set("segments", segments_of(m.raw));
  if (!m.ack.empty()) v.set("ack", ack_of(m.ack));
  v.set("resources", resource_refs(m.resources));
  for (const std::string& r : m.resources)
    if (r.starts_with("Provenance/")) v.set("provenance", str(r.substr(0, r.find("/_history/"))));
  return v;
}

Value detail(const OutboundMessageRecord& m) {
  Value v = summary(m);
  v.set("updated", str(fhir::format_instant(m.updated_ms)));
  if (!m.source.empty()) v.set("source", str(m.source));
  if (m.status == "pending") v.set("nextAttempt", str(fhir::format_instant(m.next_attempt_ms)));
  v.set("raw", str(m.message));
  v.set("segments", segments_of(m.message));
  if (!m.ack.empty()) v.set("ack", ack_of(m.ack));
  return v;
}

// The paging position after a message: "<time>.<in|out>.<id>" (opaque to clients).
struct Cursor {
  std::int64_t time = 0;
  bool inbound = true;
  std::int64_t id = 0;
};
std::string cursor_text(const Cursor& c) {
  return std::to_string(c.time) + "." + (c.inbound ? "in" : "out") + "." + std::to_string(c.id);
}
std::optional<Cursor> parse_cursor(std::string_view text) {
  auto dot1 = text.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : text.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos) return std::nullopt;
  auto time = to_int(text.substr(0, dot1));
  auto id = to_int(text.substr(dot2 + 1));
  std::string_view dir = text.substr(dot1 + 1, dot2 - dot1 - 1);
  if (!time || !id || (dir != "in" && dir != "out")) return std::nullopt;
  return Cursor{*time, dir == "in", *id};
}

}  // namespace

Hl7Monitor::Hl7Monitor(resources::Store& store, Hl7MonitorOptions options) : store_(store), options_(options) {}

bool Hl7Monitor::serves(std::string_view path) noexcept {
  return path == kBase || (path.starts_with(kBase) && path.size() > kBase.size() && path[kBase.size()] == '/');
}

void Hl7Monitor::handle_async(const Request& request, std::function<void(Response)> done) const {
  std::string_view target = request.target;
  auto q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  if (authorizer_ != nullptr)
    if (auto refused = authorizer_->check_admin(request)) return done(std::move(*refused));
  auto not_allowed = [&](std::string allow) {
    Response r = failure(ErrorKind::kMethodNotAllowed, "not-supported",
                         request.method + " is not allowed on " + std::string(path), "", "hl7-monitor");
    r.headers.emplace_back("Allow", std::move(allow));
    return done(std::move(r));
  };
  bool get = request.method == "GET" || request.method == "HEAD";
  if (path == kBase) {
    if (!get) return not_allowed("GET");
    return list(request, query, std::move(done));
  }
  std::string_view rest = path.substr(kBase.size() + 1);
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    if (rest.substr(slash + 1) != "$replay" && rest.substr(slash + 1) != "%24replay")
      return done(failure(ErrorKind::kNotFound, "not-found", "no such monitor endpoint: " + std::string(path), "",
                          "hl7-monitor"));
    if (request.method != "POST") return not_allowed("POST");
    return replay(rest.substr(0, slash), std::move(done));
  }
  if (!get) return not_allowed("GET");
  show(rest, std::move(done));
}

void Hl7Monitor::list(const Request& request, std::string_view query, std::function<void(Response)> done) const {
  (void)request;
  auto params = parse_query(query);
  if (!params)
    return done(failure(ErrorKind::kInvalid, "invalid", "the query string is malformed", "", "hl7-monitor-list"));
  auto bad = [&](const std::string& name, const std::string& why) {
    return done(failure(ErrorKind::kInvalid, "invalid", why, name, "hl7-monitor-list"));
  };
  Hl7MessageQuery q;
  std::size_t count = options_.default_count;
  bool want_in = true, want_out = true;
  std::optional<Cursor> cursor;
  for (const auto& [name, value] : *params) {
    if (name == "type") {
      q.message_type = value;
    } else if (name == "status") {
      std::size_t start = 0;
      while (start <= value.size()) {
        std::size_t comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        std::string s = value.substr(start, comma - start);
        static constexpr std::string_view kStatuses[] = {"received", "processed", "error", "rejected",
                                                         "pending",  "sent",      "dead"};
        if (std::find(std::begin(kStatuses), std::end(kStatuses), s) == std::end(kStatuses))
          return bad("status", "unknown status '" + s +
                                   "' (inbound: received, processed, error, rejected; outbound: pending, sent, dead)");
        q.statuses.push_back(std::move(s));
        start = comma + 1;
      }
    } else if (name == "control-id") {
      q.control_id = value;
    } else if (name == "since" || name == "until") {
      auto range = fhir::datetime_range(value);
      if (!range) return bad(name, "'" + value + "' is not a FHIR date, dateTime or instant");
      if (name == "since")
        q.since_ms = range->first;
      else
        q.until_ms = range->second;
    } else if (name == "patient") {
      std::string id = value.starts_with("Patient/") ? value.substr(8) : value;
      if (id.empty() || id.find('/') != std::string::npos) return bad("patient", "'" + value + "' is not a Patient id");
      q.resource = "Patient/" + id;
    } else if (name == "direction") {
      if (value != "in" && value != "out") return bad("direction", "direction is 'in' or 'out'");
      want_in = value == "in";
      want_out = value == "out";
    } else if (name == "_count") {
      auto n = to_int(value);
      if (!n || *n < 1) return bad("_count", "_count must be a positive integer");
      count = std::min<std::size_t>(static_cast<std::size_t>(*n), options_.max_count);
    } else if (name == "cursor") {
      cursor = parse_cursor(value);
      if (!cursor) return bad("cursor", "'" + value + "' is not a cursor of this list");
    } else {
      return bad(name, "unknown parameter '" + name +
                           "' (type, status, since, until, control-id, patient, direction, _count, cursor)");
    }
  }
  if (!q.resource.empty()) {
    // Outbound messages carry no Provenance: a patient search lists inbound ones only.
    if (!want_in)
      return done(failure(ErrorKind::kNotSupported, "not-supported",
                          "outbound messages cannot be searched by patient yet", "patient", "hl7-monitor-list"));
    want_out = false;
  }
  q.limit = count + 1;
  // Order: time descending, then inbound before outbound, then id descending. After a cursor, each table starts
  // where that order puts it.
  Hl7MessageQuery in_q = q, out_q = q;
  if (cursor) {
    in_q.before = std::pair{cursor->time, cursor->inbound ? cursor->id : std::int64_t{0}};
    out_q.before = std::pair{cursor->time, cursor->inbound ? std::numeric_limits<std::int64_t>::max() : cursor->id};
  }
  auto in_rows = std::make_shared<std::vector<InboundMessageRecord>>();
  auto out_rows = std::make_shared<std::vector<OutboundMessageRecord>>();
  auto tenant = options_.tenant;
  // The link to the next page keeps the filters.
  std::string next_query;
  for (const auto& [name, value] : *params)
    if (name != "cursor")
      next_query += (next_query.empty() ? "" : "&") + percent_encode(name) + "=" + percent_encode(value);
  store_.write_async(
      [=](resources::Transaction& txn) -> Result<void> {
        in_rows->clear();
        out_rows->clear();
        if (want_in) {
          auto r = txn.list_inbound_messages(tenant, in_q);
          if (!r) return std::unexpected(r.error());
          *in_rows = std::move(*r);
        }
        if (want_out) {
          auto r = txn.list_outbound_messages(tenant, out_q);
          if (!r) return std::unexpected(r.error());
          *out_rows = std::move(*r);
        }
        return {};
      },
      [=, done = std::move(done)](Result<void> r) {
        if (!r) return done(failure(r.error(), "hl7-monitor-list"));
        Value messages = Value::array();
        std::size_t i = 0, o = 0, n = 0;
        std::optional<Cursor> last;
        bool more = false;
        while (i < in_rows->size() || o < out_rows->size()) {
          bool take_in =
              o == out_rows->size() || (i < in_rows->size() && (*in_rows)[i].received_ms >= (*out_rows)[o].created_ms);
          if (n == count) {
            more = true;
            break;
          }
          if (take_in) {
            const InboundMessageRecord& m = (*in_rows)[i++];
            messages.push_back(summary(m));
            last = Cursor{m.received_ms, true, m.id};
          } else {
            const OutboundMessageRecord& m = (*out_rows)[o++];
            messages.push_back(summary(m));
            last = Cursor{m.created_ms, false, m.id};
          }
          ++n;
        }
        Value body = Value::object();
        body.set("messages", std::move(messages));
        if (more && last) {
          std::string c = cursor_text(*last);
          body.set("cursor", str(c));
          body.set("next", str(std::string(kBase) + "?" + next_query + (next_query.empty() ? "" : "&") +
                               "cursor=" + percent_encode(c)));
        }
        done(json_reply(200, body, "hl7-monitor-list"));
      });
}

void Hl7Monitor::show(std::string_view id_text, std::function<void(Response)> done) const {
  auto id = parse_id(id_text);
  if (!id)
    return done(failure(ErrorKind::kNotFound, "not-found", "no HL7 v2 message '" + std::string(id_text) + "'", "",
                        "hl7-monitor-show"));
  auto in = std::make_shared<std::optional<InboundMessageRecord>>();
  auto out = std::make_shared<std::optional<OutboundMessageRecord>>();
  auto tenant = options_.tenant;
  MessageId m = *id;
  store_.write_async(
      [=](resources::Transaction& txn) -> Result<void> {
        if (m.inbound) {
          auto r = txn.inbound_message(tenant, m.id);
          if (!r) return std::unexpected(r.error());
          *in = std::move(*r);
        } else {
          auto r = txn.outbound_message(tenant, m.id);
          if (!r) return std::unexpected(r.error());
          *out = std::move(*r);
        }
        return {};
      },
      [=, text = std::string(id_text), done = std::move(done)](Result<void> r) {
        if (!r) return done(failure(r.error(), "hl7-monitor-show"));
        if (*in) return done(json_reply(200, detail(**in), "hl7-monitor-show"));
        if (*out) return done(json_reply(200, detail(**out), "hl7-monitor-show"));
        done(failure(ErrorKind::kNotFound, "not-found", "no HL7 v2 message '" + text + "'", "", "hl7-monitor-show"));
      });
}

void Hl7Monitor::replay(std::string_view id_text, std::function<void(Response)> done) const {
  auto id = parse_id(id_text);
  if (!id)
    return done(failure(ErrorKind::kNotFound, "not-found", "no HL7 v2 message '" + std::string(id_text) + "'", "",
                        "hl7-monitor-replay"));
  if (!id->inbound) {
    if (outbound_ == nullptr)
      return done(failure(ErrorKind::kNotSupported, "not-supported",
                          "outbound messages are replayed by a server with --hl7-out", "", "hl7-monitor-replay"));
    auto r = outbound_->requeue(id->id);
    if (!r) return done(failure(r.error(), "hl7-monitor-replay"));
    Value body = detail(*r);
    body.set("previousStatus", str("dead"));
    return done(json_reply(200, body, "hl7-monitor-replay"));
  }
  if (inbound_ == nullptr)
    return done(failure(ErrorKind::kNotSupported, "not-supported", "this server does not process HL7 v2 messages", "",
                        "hl7-monitor-replay"));
  inbound_->replay(id->id, [done = std::move(done)](Result<adapters::hl7v2::InboundProcessor::Replay> r) {
    if (!r) return done(failure(r.error(), "hl7-monitor-replay"));
    Value body = detail(r->after);
    body.set("previousStatus", str(r->before.status));
    done(json_reply(200, body, "hl7-monitor-replay"));
  });
}

}  // namespace caduceus::server
