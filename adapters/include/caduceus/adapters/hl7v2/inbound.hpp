#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "caduceus/adapters/hl7v2/time_zone.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {
class ActiveSearchParameters;
}

namespace caduceus::adapters::hl7v2 {

struct InboundOptions {
  resources::TenantId tenant = resources::kDefaultTenant;
  // What a time without an offset is read in (--hl7-timezone).
  TimeZone time_zone;
};

// Receives HL7 v2 messages (from any transport): stores each one durably, turns it into resources in the same
// transaction as its status, and answers the acknowledgements it owes. Thread-safe.
//
// Original mode (MSH-15 and MSH-16 empty): AA once the message and its resources are committed; AE (status
// error, ERR segments) when it cannot be processed; AR (status rejected) when it is not accepted: an unsupported
// type, event, version (not 2.x) or processing id (not P, T, D), an MSH that cannot be read, an empty MSH-9/10.
// Enhanced mode: CA once the message is stored (CR when rejected, CE when it cannot be stored), as MSH-15 asks
// (empty: AL), then the application acknowledgement (AA, AE, AR) as MSH-16 asks (empty: AL), both on the same
// connection. A message whose sender (MSH-3, MSH-4) and control id (MSH-10) are stored already is not processed
// again: its stored acknowledgement is sent again.
class InboundProcessor {
 public:
  using Send = std::function<void(std::string ack)>;
  using Done = std::function<void()>;

  // `search`: the search parameters in force, for the conditional updates (nullptr: the server runs without the
  // search index, and messages that write resources are answered AE).
  InboundProcessor(resources::Repository& repository, const resources::ActiveSearchParameters* search,
                   InboundOptions options = {});

  // Handles one message: `send` is called with each acknowledgement, in order, then `done` (on a thread of the
  // store's or the caller's). `oversize`: the message exceeded the frame cap and `raw` holds only its start; it is
  // stored as rejected and answered AR.
  void handle(std::string raw, Send send, Done done, bool oversize = false);

  // What a replay did: the message as it was stored before, and as it is stored now.
  struct Replay {
    resources::InboundMessageRecord before, after;
  };
  using ReplayDone = std::function<void(fhir::Result<Replay>)>;
  // Processes a stored message again (the monitor's $replay), as handle() would have (a message that failed
  // before, after its cause is fixed; one processed before: matched again by its conditional updates, so nothing
  // is duplicated and only a resource whose content changes gets a new version). Nothing is sent: the outcome is
  // stored with the message (status, error, the acknowledgement it would get now, the versions it produced) and
  // its replay count and time. A message cut at the frame cap is not processed (it stays rejected). `done` is
  // called once, on a thread of the store's. Errors: kNotFound (no such message), the store's.
  void replay(std::int64_t id, ReplayDone done);

  // A new control id for our own messages (MSH-10): unique across the process's life and restarts.
  std::string next_control_id();
  // The current time as an HL7 DTM in UTC (YYYYMMDDHHMMSS+0000).
  static std::string timestamp();

  // Prometheus text: caduceus_hl7_inbound_received_total, and caduceus_hl7_inbound_answered_total by outcome
  // (processed: AA; error: AE, including a message that could not be stored; rejected: AR; duplicate: answered
  // with its stored acknowledgement), since start.
  std::string metrics() const;

 private:
  struct Context;
  void classify(Context& ctx, bool oversize) const;
  void reprocess(resources::InboundMessageRecord stored, ReplayDone done);
  void store_answer(std::shared_ptr<Context> ctx);
  void process(std::shared_ptr<Context> ctx);

  resources::Repository& repository_;
  const resources::ActiveSearchParameters* search_;
  InboundOptions options_;
  std::string prefix_;
  std::atomic<std::uint64_t> counter_{0};
  std::atomic<std::uint64_t> received_{0}, processed_{0}, errors_{0}, rejected_{0}, duplicates_{0};
};

}  // namespace caduceus::adapters::hl7v2
