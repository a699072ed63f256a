#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "caduceus/adapters/hl7v2/builder.hpp"
#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"

namespace caduceus::adapters::hl7v2 {

// One outbound interface: where its messages go and which FHIR writes it wants.
struct Destination {
  std::string name;  // unique; the queue keeps order per name
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string receiving_application, receiving_facility;  // MSH-5, MSH-6
  bool orders = false;                                    // lab ServiceRequests (active) as `order_message`
  std::string order_message = "ORM^O01";                  // or "OML^O21"
  bool pharmacy = false;                                  // active MedicationRequests as RDE^O11
  bool results = false;                                   // final DiagnosticReports as ORU^R01
};

// The message type (e.g. "ORM^O01") that a resource, as just written, yields for a destination, or nullopt when
// the destination does not want it: an active ServiceRequest whose category is laboratory (SNOMED 108252007, or
// the code "laboratory" / "LAB"), an active MedicationRequest, a final DiagnosticReport.
std::optional<std::string> outbound_message_type(const Destination& destination, const fhir::json::Value& resource);

// What a message is built from besides its trigger resource: the header (control id, time, receiver) and the
// resources it references, resolved by the caller (the subject Patient; a report's Observations, in result order).
struct OutboundContext {
  MessageHeader header;  // type, trigger and structure are set by build_outbound
  const fhir::json::Value* patient = nullptr;
  std::vector<fhir::json::Value> observations;
};

// Builds the message `message_type` (ORM^O01, OML^O21, RDE^O11, ORU^R01) for `resource`:
//   ORM^O01 / OML^O21: MSH, PID, ORC (NW, ORC-2 placer order number = the resource id, ORC-9 authoredOn,
//     ORC-12 requester), OBR (OBR-2, OBR-4 the code as CWE, OBR-7 occurrenceDateTime).
//   RDE^O11: MSH, PID, ORC, RXE (RXE-2 the medication code, RXE-3 dose, RXE-5 units, RXE-21 dosage text),
//     RXR (route) when given.
//   ORU^R01: MSH, PID, OBR (OBR-4 the report code, OBR-7 effective, OBR-22 issued, OBR-25 F), then one OBX per
//     Observation (OBX-2 NM, ST or CWE after value[x], OBX-3 code, OBX-5 value, OBX-6 units, OBX-7 range,
//     OBX-11 status F/P/C, OBX-14 effective).
// Dates go from FHIR (2024-01-02T10:30:00+01:00) to DTM (20240102103000+0100). Errors: kInvalid when the
// resource is not of the message's kind or lacks its code; kNotSupported for another message type.
fhir::Result<std::string> build_outbound(std::string_view message_type, const fhir::json::Value& resource,
                                         OutboundContext context);

// A FHIR date, dateTime or instant as an HL7 DTM with the same precision; "" when it is not one.
std::string fhir_to_v2_datetime(std::string_view text);

// One message in the outbound queue.
struct OutboundItem {
  std::int64_t id = 0;  // assigned by the queue; order of delivery within a destination
  std::string destination;
  std::string message_type;        // ORM^O01
  std::string control_id;          // its MSH-10, matched against MSA-2
  std::string message;             // the message (segments ended by CR)
  std::string source;              // the resource version that triggered it, e.g. ServiceRequest/1/_history/2
  std::string status = "pending";  // pending, sent, dead
  int attempts = 0;
  std::string last_error;  // why the last attempt failed
  std::string ack;         // the acknowledgement that completed it (or the last negative one)
  std::int64_t created_ms = 0, updated_ms = 0, next_attempt_ms = 0;
};

// Where outbound messages wait. Thread-safe.
class OutboundQueue {
 public:
  virtual ~OutboundQueue() = default;
  // Adds a message (status pending) and returns its id.
  virtual fhir::Result<std::int64_t> enqueue(OutboundItem item) = 0;
  // The pending message of the destination with the lowest id, or nullopt.
  virtual fhir::Result<std::optional<OutboundItem>> head(std::string_view destination) = 0;
  // Sets status, attempts, last_error, ack, updated and next attempt of item.id. kNotFound when there is none.
  virtual fhir::Result<void> update(const OutboundItem& item) = 0;
  // Every message (of one destination, or all when empty), by id.
  virtual fhir::Result<std::vector<OutboundItem>> list(std::string_view destination) = 0;
};

// A queue in memory (for tests, and a server run without a durable one).
class MemoryOutboundQueue : public OutboundQueue {
 public:
  fhir::Result<std::int64_t> enqueue(OutboundItem item) override;
  fhir::Result<std::optional<OutboundItem>> head(std::string_view destination) override;
  fhir::Result<void> update(const OutboundItem& item) override;
  fhir::Result<std::vector<OutboundItem>> list(std::string_view destination) override;

 private:
  std::mutex mutex_;
  std::map<std::int64_t, OutboundItem> items_;
  std::int64_t next_id_ = 1;
};

struct SenderOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds ack_timeout{30000};
  std::chrono::milliseconds backoff_initial{1000};  // after the first failure; doubled after each further one
  std::chrono::milliseconds backoff_max{300000};
  int max_attempts = 8;  // a message that failed this many times is dead-lettered (status dead)
  std::size_t max_frame = 1 << 20;
};

// Delivers the queue's messages over MLLP: one thread per destination, one message at a time in id order, each
// sent until an ACK whose MSA-2 is its control id comes back with AA or CA (status sent). A connection refused
// or lost, no ACK within ack_timeout, an ACK for another control id, or AE/AR/CE/CR: the attempt failed; it is
// retried after the backoff, and after max_attempts failures it is dead-lettered and the next one goes. The
// observer (optional) is told every change of an item, on the destination's thread.
class OutboundSender {
 public:
  using Observer = std::function<void(const OutboundItem&)>;

  OutboundSender(std::vector<Destination> destinations, OutboundQueue& queue, SenderOptions options = {},
                 Observer observer = {});
  ~OutboundSender();
  OutboundSender(const OutboundSender&) = delete;
  OutboundSender& operator=(const OutboundSender&) = delete;

  void start();
  // Stops the threads (a message being sent is given up and stays pending).
  void stop();
  // Wakes the destination's thread (after an enqueue).
  void notify();

  // Builds nothing: queues `message` (whose MSH-10 is control_id) for the destination and wakes its thread.
  // Errors: kInvalid for an unknown destination; the queue's.
  fhir::Result<std::int64_t> submit(std::string_view destination, std::string message_type, std::string control_id,
                                    std::string message, std::string source = {});

  // Reads a resource that a message needs ("Patient/p1"); nullopt when there is none.
  using Resolver = std::function<std::optional<fhir::json::Value>(std::string_view reference)>;
  // What a resource just written (`source`: its version, "ServiceRequest/1/_history/2") yields: for each
  // destination that wants it (outbound_message_type), the message built with a new control id and the current
  // time as MSH-7, queued. Returns the ids queued (none: nobody wants it). Errors: build_outbound's, the queue's
  // (what was queued before stays queued).
  fhir::Result<std::vector<std::int64_t>> dispatch(const fhir::json::Value& resource, std::string source,
                                                   const Resolver& resolve);
  // The messages dispatch() would queue, built (new control ids, status pending) but not queued: for a caller
  // that queues them itself (in the transaction of the write that triggered them).
  fhir::Result<std::vector<OutboundItem>> prepare(const fhir::json::Value& resource, std::string source,
                                                  const Resolver& resolve);
  // A new control id (MSH-10): unique across the process's life and restarts (start time and a counter).
  std::string next_control_id();

  const std::vector<Destination>& destinations() const noexcept { return destinations_; }

 private:
  void run(const Destination& destination);
  std::chrono::milliseconds backoff(int attempts) const;

  std::vector<Destination> destinations_;
  OutboundQueue& queue_;
  SenderOptions options_;
  Observer observer_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::uint64_t generation_ = 0;  // bumped by notify()
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  std::string prefix_;
  std::atomic<std::uint64_t> counter_{0};
};

}  // namespace caduceus::adapters::hl7v2
