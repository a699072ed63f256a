#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/adapters/hl7v2/outbound.hpp"
#include "caduceus/resources/store/store.hpp"

namespace caduceus::adapters::hl7v2 {

// The durable outbound queue: the store's hl7_outbound table (one tenant). Each call is one store transaction.
class StoreOutboundQueue : public OutboundQueue {
 public:
  explicit StoreOutboundQueue(resources::Store& store, resources::TenantId tenant = resources::kDefaultTenant)
      : store_(store), tenant_(tenant) {}
  fhir::Result<std::int64_t> enqueue(OutboundItem item) override;
  fhir::Result<std::optional<OutboundItem>> head(std::string_view destination) override;
  fhir::Result<void> update(const OutboundItem& item) override;
  fhir::Result<std::vector<OutboundItem>> list(std::string_view destination) override;

 private:
  resources::Store& store_;
  resources::TenantId tenant_;
};

// A Store that queues the outbound messages a write yields in the SAME transaction as the write: every version
// appended through one of its transactions (REST create/update, Bundle entries, HL7 v2 inbound: whatever writes
// through it) is offered to the sender's destinations (OutboundSender::prepare) when the work has succeeded,
// with the subject Patient and a report's Observations read inside the transaction (so a Bundle's own entries
// count); the messages are inserted into hl7_outbound before the commit. A write that fails or rolls back leaves
// no message; a message that cannot be built fails the write (kInvalid with the builder's reason). After the
// commit the sender is woken. Everything else is passed to the wrapped store.
class OutboundTriggerStore : public resources::Store {
 public:
  OutboundTriggerStore(resources::Store& inner, OutboundSender& sender) : inner_(inner), sender_(sender) {}

  fhir::Result<resources::VersionRecord> read(resources::TenantId tenant, std::string_view type,
                                              std::string_view id) override {
    return inner_.read(tenant, type, id);
  }
  fhir::Result<resources::VersionRecord> vread(resources::TenantId tenant, std::string_view type, std::string_view id,
                                               std::int64_t version) override {
    return inner_.vread(tenant, type, id, version);
  }
  fhir::Result<resources::HistoryPage> history(resources::TenantId tenant,
                                               const resources::HistoryQuery& query) override {
    return inner_.history(tenant, query);
  }
  fhir::Result<std::int64_t> history_total(resources::TenantId tenant, const resources::HistoryQuery& query) override {
    return inner_.history_total(tenant, query);
  }
  void write_async(Work work, Done done) override;
  fhir::Result<resources::SearchPage> search(resources::TenantId tenant, const resources::SearchQuery& query) override {
    return inner_.search(tenant, query);
  }
  fhir::Result<resources::SearchPlan> explain(resources::TenantId tenant,
                                              const resources::SearchQuery& query) override {
    return inner_.explain(tenant, query);
  }
  fhir::Result<void> ping() override { return inner_.ping(); }

  // Messages queued by committed writes since start.
  std::uint64_t queued() const noexcept { return queued_.load(); }

 private:
  resources::Store& inner_;
  OutboundSender& sender_;
  std::atomic<std::uint64_t> queued_{0};
};

// One outbound destination from its option text `NAME=HOST:PORT:WHAT[:APP[:FACILITY]]`: WHAT is a comma list of
// orm (lab ServiceRequests as ORM^O01), oml (as OML^O21), rde (active MedicationRequests), oru (final
// DiagnosticReports); APP and FACILITY go in MSH-5 and MSH-6 (default: NAME, and empty). An IPv6 HOST is written
// in brackets. Errors: kInvalid saying what is wrong.
fhir::Result<Destination> parse_destination(std::string_view text);

// The outbound side of `caduceus serve`: the durable queue over the store, the sender threads, the store that
// queues messages with the writes that trigger them, and the counters for /metrics.
class OutboundService {
 public:
  OutboundService(resources::Store& inner, std::vector<Destination> destinations, SenderOptions options = {});
  // The store to write through (the repository's): it queues the messages.
  resources::Store& store() { return trigger_; }
  void start() { sender_.start(); }
  void stop() { sender_.stop(); }
  // Prometheus text: caduceus_hl7_outbound_{queued,sent,retried,dead}_total.
  std::string metrics() const;
  // The monitor's $replay of an outbound message: a dead-lettered one is queued again (pending, attempts counted
  // from 0, due now; its last error kept until the next attempt) and its destination's thread is woken. Returns the
  // message as stored now. Errors: kNotFound, kConflict when it is not dead-lettered (pending: it is being
  // delivered; sent: it was acknowledged, and is not sent twice), the store's.
  fhir::Result<resources::OutboundMessageRecord> requeue(std::int64_t id);

 private:
  std::atomic<std::uint64_t> sent_{0}, retried_{0}, dead_{0};
  StoreOutboundQueue queue_;
  OutboundSender sender_;
  OutboundTriggerStore trigger_;
  resources::Store& inner_;
};

}  // namespace caduceus::adapters::hl7v2
