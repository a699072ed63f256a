#pragma once

#include <functional>
#include <string_view>

#include "caduceus/resources/store/store.hpp"
#include "caduceus/server/authorizer.hpp"
#include "caduceus/server/http_types.hpp"

namespace caduceus::adapters::hl7v2 {
class InboundProcessor;
class OutboundService;
}  // namespace caduceus::adapters::hl7v2

namespace caduceus::server {

struct Hl7MonitorOptions {
  resources::TenantId tenant = resources::kDefaultTenant;
  std::size_t default_count = 50;  // messages per page without _count
  std::size_t max_count = 500;
};

// The HL7 v2 message monitor (README "HL7 v2 message monitor"), JSON over HTTP:
//   GET  /admin/hl7/messages                   the stored messages, newest first, filtered, paged by a cursor
//   GET  /admin/hl7/messages/{id}              one message: raw, segments, ACK with its ERR details, resources
//   POST /admin/hl7/messages/{id}/$replay      an inbound message processed again; a dead outbound one queued again
// Ids are "in-N" (hl7_inbound) and "out-N" (hl7_outbound). Every request is first put to the authorizer's
// check_admin (when one is set). Thread-safe; answers through `done`, on the caller's thread or one of the store's.
class Hl7Monitor {
 public:
  explicit Hl7Monitor(resources::Store& store, Hl7MonitorOptions options = {});

  // Set before serving (each may stay unset: the authorizer lets everything through; without the inbound
  // processor or the outbound service a replay of that direction answers 501).
  void set_authorizer(const Authorizer* authorizer) { authorizer_ = authorizer; }
  void set_inbound(adapters::hl7v2::InboundProcessor* inbound) { inbound_ = inbound; }
  void set_outbound(adapters::hl7v2::OutboundService* outbound) { outbound_ = outbound; }

  // Whether the path (without its query) is the monitor's.
  static bool serves(std::string_view path) noexcept;
  void handle_async(const Request& request, std::function<void(Response)> done) const;

 private:
  void list(const Request& request, std::string_view query, std::function<void(Response)> done) const;
  void show(std::string_view id, std::function<void(Response)> done) const;
  void replay(std::string_view id, std::function<void(Response)> done) const;

  resources::Store& store_;
  Hl7MonitorOptions options_;
  const Authorizer* authorizer_ = nullptr;
  adapters::hl7v2::InboundProcessor* inbound_ = nullptr;
  adapters::hl7v2::OutboundService* outbound_ = nullptr;
};

}  // namespace caduceus::server
