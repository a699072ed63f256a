#include "caduceus/adapters/hl7v2/outbound_store.hpp"

#include <charconv>
#include <memory>
#include <utility>

namespace caduceus::adapters::hl7v2 {

namespace {

using fhir::Result;
using resources::OutboundMessageRecord;
using resources::TenantId;
using resources::Transaction;

OutboundMessageRecord to_record(const OutboundItem& i) {
  OutboundMessageRecord r;
  r.id = i.id;
  r.destination = i.destination;
  r.message_type = i.message_type;
  r.control_id = i.control_id;
  r.message = i.message;
  r.source = i.source;
  r.status = i.status;
  r.attempts = i.attempts;
  r.last_error = i.last_error;
  r.ack = i.ack;
  r.created_ms = i.created_ms;
  r.updated_ms = i.updated_ms;
  r.next_attempt_ms = i.next_attempt_ms;
  return r;
}

OutboundItem to_item(OutboundMessageRecord r) {
  OutboundItem i;
  i.id = r.id;
  i.destination = std::move(r.destination);
  i.message_type = std::move(r.message_type);
  i.control_id = std::move(r.control_id);
  i.message = std::move(r.message);
  i.source = std::move(r.source);
  i.status = std::move(r.status);
  i.attempts = static_cast<int>(r.attempts);
  i.last_error = std::move(r.last_error);
  i.ack = std::move(r.ack);
  i.created_ms = r.created_ms;
  i.updated_ms = r.updated_ms;
  i.next_attempt_ms = r.next_attempt_ms;
  return i;
}

// Forwards everything to the backend's transaction and remembers the versions appended.
class RecordingTransaction : public Transaction {
 public:
  explicit RecordingTransaction(Transaction& inner) : inner_(inner) {}

  struct Appended {
    TenantId tenant;
    std::string type, id, body;
    std::int64_t version;
  };
  std::vector<Appended> appended;

  Result<std::optional<resources::CurrentInfo>> current(TenantId tenant, std::string_view type,
                                                        std::string_view id) override {
    return inner_.current(tenant, type, id);
  }
  Result<std::int64_t> append(TenantId tenant, const resources::VersionRecord& record,
                              const resources::IndexValues* index) override {
    auto seq = inner_.append(tenant, record, index);
    if (seq && !record.deleted && !record.body.empty())
      appended.push_back({tenant, record.type, record.id, record.body, record.version});
    return seq;
  }
  std::int64_t now_ms() override { return inner_.now_ms(); }
  Result<std::optional<resources::VersionRecord>> current_record(TenantId tenant, std::string_view type,
                                                                 std::string_view id) override {
    return inner_.current_record(tenant, type, id);
  }
  Result<std::vector<std::pair<std::string, std::string>>> search_ids(TenantId tenant,
                                                                      const resources::SearchQuery& query,
                                                                      std::size_t limit) override {
    return inner_.search_ids(tenant, query, limit);
  }
  Result<resources::IndexExtent> index_extent(TenantId tenant, const std::vector<std::string>& types,
                                              std::int64_t after_rid, std::int64_t max_rid) override {
    return inner_.index_extent(tenant, types, after_rid, max_rid);
  }
  Result<std::vector<resources::IndexTarget>> index_targets(TenantId tenant, const std::vector<std::string>& types,
                                                            std::int64_t after_rid, std::int64_t max_rid,
                                                            std::size_t limit) override {
    return inner_.index_targets(tenant, types, after_rid, max_rid, limit);
  }
  Result<void> replace_index(TenantId tenant, std::int64_t rid, std::string_view type,
                             const std::vector<std::string>& params, const resources::IndexValues& values) override {
    return inner_.replace_index(tenant, rid, type, params, values);
  }
  Result<void> save_reindex_job(TenantId tenant, const resources::ReindexJobRecord& job) override {
    return inner_.save_reindex_job(tenant, job);
  }
  Result<std::vector<resources::ReindexJobRecord>> reindex_jobs(TenantId tenant) override {
    return inner_.reindex_jobs(tenant);
  }
  resources::OAuthTables* oauth_tables() override { return inner_.oauth_tables(); }
  Result<resources::UserRows*> users() override { return inner_.users(); }
  Result<std::optional<resources::InboundMessageRecord>> find_inbound_message(TenantId tenant, std::string_view app,
                                                                              std::string_view facility,
                                                                              std::string_view control_id) override {
    return inner_.find_inbound_message(tenant, app, facility, control_id);
  }
  Result<std::int64_t> insert_inbound_message(TenantId tenant, const resources::InboundMessageRecord& r) override {
    return inner_.insert_inbound_message(tenant, r);
  }
  Result<void> update_inbound_message(TenantId tenant, const resources::InboundMessageRecord& r) override {
    return inner_.update_inbound_message(tenant, r);
  }
  Result<std::optional<resources::InboundMessageRecord>> inbound_message(TenantId tenant, std::int64_t id) override {
    return inner_.inbound_message(tenant, id);
  }
  Result<std::int64_t> insert_outbound_message(TenantId tenant, const OutboundMessageRecord& r) override {
    return inner_.insert_outbound_message(tenant, r);
  }
  Result<void> update_outbound_message(TenantId tenant, const OutboundMessageRecord& r) override {
    return inner_.update_outbound_message(tenant, r);
  }
  Result<std::vector<OutboundMessageRecord>> outbound_messages(TenantId tenant,
                                                               const resources::OutboundQuery& q) override {
    return inner_.outbound_messages(tenant, q);
  }
  Result<std::vector<resources::InboundMessageRecord>> list_inbound_messages(
      TenantId tenant, const resources::Hl7MessageQuery& q) override {
    return inner_.list_inbound_messages(tenant, q);
  }
  Result<std::optional<OutboundMessageRecord>> outbound_message(TenantId tenant, std::int64_t id) override {
    return inner_.outbound_message(tenant, id);
  }
  Result<std::vector<OutboundMessageRecord>> list_outbound_messages(TenantId tenant,
                                                                    const resources::Hl7MessageQuery& q) override {
    return inner_.list_outbound_messages(tenant, q);
  }

 private:
  Transaction& inner_;
};

bool may_trigger(std::string_view type) {
  return type == "ServiceRequest" || type == "MedicationRequest" || type == "DiagnosticReport";
}

}  // namespace

// --- StoreOutboundQueue

Result<std::int64_t> StoreOutboundQueue::enqueue(OutboundItem item) {
  std::int64_t id = 0;
  auto record = to_record(item);
  record.status = "pending";
  auto w = store_.write([&](Transaction& txn) -> Result<void> {
    auto r = txn.insert_outbound_message(tenant_, record);
    if (!r) return std::unexpected(r.error());
    id = *r;
    return {};
  });
  if (!w) return std::unexpected(w.error());
  return id;
}

Result<std::optional<OutboundItem>> StoreOutboundQueue::head(std::string_view destination) {
  std::vector<OutboundMessageRecord> rows;
  resources::OutboundQuery q;
  q.destination = destination;
  q.status = "pending";
  q.limit = 1;
  auto w = store_.write([&](Transaction& txn) -> Result<void> {
    auto r = txn.outbound_messages(tenant_, q);
    if (!r) return std::unexpected(r.error());
    rows = std::move(*r);
    return {};
  });
  if (!w) return std::unexpected(w.error());
  if (rows.empty()) return std::optional<OutboundItem>{};
  return std::optional<OutboundItem>{to_item(std::move(rows.front()))};
}

Result<void> StoreOutboundQueue::update(const OutboundItem& item) {
  auto record = to_record(item);
  return store_.write([&](Transaction& txn) { return txn.update_outbound_message(tenant_, record); });
}

Result<std::vector<OutboundItem>> StoreOutboundQueue::list(std::string_view destination) {
  std::vector<OutboundMessageRecord> rows;
  resources::OutboundQuery q;
  q.destination = destination;
  auto w = store_.write([&](Transaction& txn) -> Result<void> {
    auto r = txn.outbound_messages(tenant_, q);
    if (!r) return std::unexpected(r.error());
    rows = std::move(*r);
    return {};
  });
  if (!w) return std::unexpected(w.error());
  std::vector<OutboundItem> out;
  for (auto& r : rows) out.push_back(to_item(std::move(r)));
  return out;
}

// --- OutboundTriggerStore

void OutboundTriggerStore::write_async(Work work, Done done) {
  // How many messages the last run of the work queued (a run rolled back and run again overwrites it).
  auto queued = std::make_shared<std::size_t>(0);
  Work wrapped = [this, work = std::move(work), queued](Transaction& txn) -> Result<void> {
    *queued = 0;
    RecordingTransaction recording(txn);
    if (auto r = work(recording); !r) return r;
    for (const auto& a : recording.appended) {
      if (!may_trigger(a.type)) continue;
      auto resource = fhir::json::parse(a.body);
      if (!resource) continue;  // not ours to judge: the write stored it
      auto resolve = [&](std::string_view reference) -> std::optional<fhir::json::Value> {
        auto slash = reference.find('/');
        if (slash == std::string_view::npos) return std::nullopt;
        auto rec = txn.current_record(a.tenant, reference.substr(0, slash), reference.substr(slash + 1));
        if (!rec || !*rec || (*rec)->deleted || (*rec)->body.empty()) return std::nullopt;
        auto v = fhir::json::parse((*rec)->body);
        if (!v) return std::nullopt;
        return std::move(*v);
      };
      auto items = sender_.prepare(*resource, a.type + "/" + a.id + "/_history/" + std::to_string(a.version), resolve);
      if (!items) return std::unexpected(items.error());
      for (const OutboundItem& item : *items) {
        auto record = to_record(item);
        record.status = "pending";
        record.created_ms = record.updated_ms = txn.now_ms();
        if (auto id = txn.insert_outbound_message(a.tenant, record); !id) return std::unexpected(id.error());
        ++*queued;
      }
    }
    return {};
  };
  inner_.write_async(std::move(wrapped), [this, done = std::move(done), queued](Result<void> result) {
    if (result && *queued > 0) {
      queued_ += *queued;
      sender_.notify();
    }
    if (done) done(std::move(result));
  });
}

// --- configuration and service

fhir::Result<Destination> parse_destination(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                      "--hl7-out '" + std::string(text) + "': " + why + " (NAME=HOST:PORT:WHAT[:APP[:FACILITY]])");
  };
  Destination d;
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) return bad("no NAME=");
  d.name = text.substr(0, eq);
  std::string_view rest = text.substr(eq + 1);
  if (rest.starts_with("[")) {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("no ] after an IPv6 host");
    d.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.starts_with(":")) return bad("no :PORT");
    rest.remove_prefix(1);
  } else {
    auto colon = rest.find(':');
    if (colon == std::string_view::npos || colon == 0) return bad("no HOST:");
    d.host = rest.substr(0, colon);
    rest = rest.substr(colon + 1);
  }
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    auto colon = rest.find(':', start);
    parts.emplace_back(rest.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  if (parts.size() < 2 || parts.size() > 4) return bad("expected PORT:WHAT after the host");
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(parts[0].data(), parts[0].data() + parts[0].size(), port);
  if (ec != std::errc() || ptr != parts[0].data() + parts[0].size() || port == 0 || port > 65535)
    return bad("'" + parts[0] + "' is not a port");
  d.port = static_cast<std::uint16_t>(port);
  std::size_t from = 0;
  const std::string& what = parts[1];
  for (;;) {
    auto comma = what.find(',', from);
    std::string w = what.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
    if (w == "orm" || w == "oml") {
      if (d.orders) return bad("orm and oml exclude each other");
      d.orders = true;
      d.order_message = w == "orm" ? "ORM^O01" : "OML^O21";
    } else if (w == "rde") {
      d.pharmacy = true;
    } else if (w == "oru") {
      d.results = true;
    } else {
      return bad("'" + w + "' is not one of orm, oml, rde, oru");
    }
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  d.receiving_application = parts.size() > 2 ? parts[2] : d.name;
  if (parts.size() > 3) d.receiving_facility = parts[3];
  return d;
}

OutboundService::OutboundService(resources::Store& inner, std::vector<Destination> destinations, SenderOptions options)
    : queue_(inner),
      sender_(std::move(destinations), queue_, options,
              [this](const OutboundItem& item) {
                if (item.status == "sent") ++sent_;
                if (item.status == "dead") ++dead_;
                if (item.status == "pending") ++retried_;  // a failed attempt, another one is scheduled
              }),
      trigger_(inner, sender_),
      inner_(inner) {}

fhir::Result<OutboundMessageRecord> OutboundService::requeue(std::int64_t id) {
  OutboundMessageRecord out;
  auto r = inner_.write([&](Transaction& txn) -> Result<void> {
    auto found = txn.outbound_message(resources::kDefaultTenant, id);
    if (!found) return std::unexpected(found.error());
    if (!*found)
      return fhir::fail(fhir::ErrorKind::kNotFound, "not-found", "no outbound HL7 v2 message " + std::to_string(id));
    OutboundMessageRecord rec = std::move(**found);
    if (rec.status != "dead")
      return fhir::fail(
          fhir::ErrorKind::kConflict, "conflict",
          "outbound message " + std::to_string(id) + " is " + rec.status +
              (rec.status == "sent" ? " (acknowledged: it is not sent twice)" : " (it is being delivered)") +
              "; only a dead-lettered message is queued again");
    rec.status = "pending";
    rec.attempts = 0;
    rec.updated_ms = rec.next_attempt_ms = txn.now_ms();
    if (auto u = txn.update_outbound_message(resources::kDefaultTenant, rec); !u) return u;
    out = std::move(rec);
    return {};
  });
  if (!r) return std::unexpected(r.error());
  sender_.notify();
  return out;
}

std::string OutboundService::metrics() const {
  std::string out;
  auto counter = [&](const char* name, const char* help, std::uint64_t value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
           std::to_string(value) + "\n";
  };
  counter("caduceus_hl7_outbound_queued_total", "HL7 v2 messages queued by FHIR writes since start.",
          trigger_.queued());
  counter("caduceus_hl7_outbound_sent_total", "HL7 v2 messages delivered (AA or CA) since start.", sent_.load());
  counter("caduceus_hl7_outbound_retried_total", "Failed HL7 v2 delivery attempts followed by a retry since start.",
          retried_.load());
  counter("caduceus_hl7_outbound_dead_total", "HL7 v2 messages dead-lettered since start.", dead_.load());
  return out;
}

}  // namespace caduceus::adapters::hl7v2
