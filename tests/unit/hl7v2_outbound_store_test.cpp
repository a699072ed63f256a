// The durable outbound HL7 v2 queue (hl7_outbound) on SQLite and PostgreSQL: messages are queued in the
// transaction of the FHIR write that triggers them (none when it rolls back), survive a restart and are
// delivered after it to a test MLLP receiver in this process.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "caduceus/adapters/hl7v2/ack.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/hl7v2/outbound.hpp"
#include "caduceus/adapters/hl7v2/outbound_store.hpp"
#include "caduceus/adapters/mllp.hpp"
#include "caduceus/resources/store/store.hpp"
#include "pg_cluster.hpp"
#include "test_server.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using namespace std::chrono_literals;
using resources::Store;
using resources::Transaction;
using resources::VersionRecord;

constexpr const char* kPatient =
    R"({"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:1.2.3","value":"MRN7"}],)"
    R"("name":[{"family":"Doe","given":["Ann"]}],"gender":"female","birthDate":"1970-05-04"})";
constexpr const char* kLabOrder =
    R"({"resourceType":"ServiceRequest","id":"sr1","status":"active","intent":"order",)"
    R"("category":[{"coding":[{"system":"http://snomed.info/sct","code":"108252007"}]}],)"
    R"("code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}]},)"
    R"("subject":{"reference":"Patient/p1"}})";
constexpr const char* kImagingOrder =
    R"({"resourceType":"ServiceRequest","id":"sr2","status":"active","intent":"order",)"
    R"("code":{"coding":[{"system":"http://loinc.org","code":"36643-5"}]},"subject":{"reference":"Patient/p1"}})";

fhir::Result<void> put(Transaction& txn, const std::string& type, const std::string& id, const char* body) {
  VersionRecord r;
  r.type = type;
  r.id = id;
  r.version = 1;
  r.last_updated_ms = txn.now_ms();
  r.body = body;
  auto seq = txn.append(resources::kDefaultTenant, r);
  if (!seq) return std::unexpected(seq.error());
  return {};
}

// An MLLP receiver that acknowledges everything with AA and keeps what it got.
struct Receiver {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::string> messages;
  std::unique_ptr<MllpServer> server;

  std::uint16_t start() {
    MllpOptions o;
    server = std::make_unique<MllpServer>(
        o, [this](std::string message, bool, std::function<void(std::string)> send, std::function<void()> done) {
          auto m = parse(message);
          if (m) {
            send(build_ack(AckTarget::of(*m), "AA", "ACK" + m->control_id, "20240101000000+0000", {}));
            std::lock_guard lock(mutex);
            messages.push_back(message);
          }
          cv.notify_all();
          done();
        });
    auto p = server->start();
    EXPECT_TRUE(p.has_value());
    return p ? *p : 0;
  }
};

// Waits for the sender to finish `n` items (a deadline against a hang, not a timing).
struct Finished {
  std::mutex mutex;
  std::condition_variable cv;
  std::size_t done = 0;
  OutboundSender::Observer observer() {
    return [this](const OutboundItem& item) {
      if (item.status == "pending") return;
      {
        std::lock_guard lock(mutex);
        ++done;
      }
      cv.notify_all();
    };
  }
  bool wait(std::size_t n) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, 60s, [&] { return done >= n; });
  }
};

class OutboundStoreScenarios {
 public:
  virtual ~OutboundStoreScenarios() = default;
  virtual std::unique_ptr<Store> open() = 0;

  void queued_message_survives_a_restart() {
    std::string control_id;
    {
      auto store = open();
      ASSERT_TRUE(store);
      StoreOutboundQueue queue(*store);
      // The receiver is not known yet: the sender is not even started before the restart.
      OutboundSender sender({Destination{.name = "lab", .port = 1, .orders = true}}, queue);
      OutboundTriggerStore trigger(*store, sender);
      auto w = trigger.write([](Transaction& txn) -> fhir::Result<void> {
        if (auto r = put(txn, "Patient", "p1", kPatient); !r) return r;
        return put(txn, "ServiceRequest", "sr1", kLabOrder);
      });
      ASSERT_TRUE(w.has_value());
      EXPECT_EQ(trigger.queued(), 1u);
      auto items = queue.list("");
      ASSERT_TRUE(items.has_value());
      ASSERT_EQ(items->size(), 1u);
      EXPECT_EQ((*items)[0].destination, "lab");
      EXPECT_EQ((*items)[0].status, "pending");
      EXPECT_EQ((*items)[0].message_type, "ORM^O01");
      EXPECT_EQ((*items)[0].source, "ServiceRequest/sr1/_history/1");
      control_id = (*items)[0].control_id;
    }
    // After the restart: a receiver, a sender over the reopened store; the message goes out.
    auto store = open();
    ASSERT_TRUE(store);
    Receiver rx;
    std::uint16_t port = rx.start();
    StoreOutboundQueue queue(*store);
    Finished finished;
    OutboundSender sender({Destination{.name = "lab", .port = port, .orders = true}}, queue, SenderOptions{},
                          finished.observer());
    sender.start();
    ASSERT_TRUE(finished.wait(1));
    sender.stop();
    auto items = queue.list("lab");
    ASSERT_TRUE(items.has_value());
    ASSERT_EQ(items->size(), 1u);
    EXPECT_EQ((*items)[0].status, "sent");
    EXPECT_EQ((*items)[0].attempts, 0);
    auto ack = parse((*items)[0].ack);
    ASSERT_TRUE(ack.has_value());
    EXPECT_EQ(ack->first("MSA")->get(1), "AA");
    EXPECT_EQ(ack->first("MSA")->get(2), control_id);
    std::lock_guard lock(rx.mutex);
    ASSERT_EQ(rx.messages.size(), 1u);
    auto got = parse(rx.messages[0]);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->control_id, control_id);
    EXPECT_EQ(got->first("PID")->get(3, 1), "MRN7");  // the Patient written in the same transaction
    EXPECT_EQ(got->first("PID")->get(5, 1), "Doe");
    EXPECT_EQ(got->first("OBR")->get(4, 1), "2345-7");
    EXPECT_EQ(got->first("ORC")->get(1), "NW");
    EXPECT_EQ(got->first("ORC")->get(2), "sr1");
  }

  void rolled_back_write_leaves_no_message() {
    auto store = open();
    ASSERT_TRUE(store);
    StoreOutboundQueue queue(*store);
    OutboundSender sender({Destination{.name = "lab", .port = 1, .orders = true}}, queue);
    OutboundTriggerStore trigger(*store, sender);
    auto w = trigger.write([](Transaction& txn) -> fhir::Result<void> {
      if (auto r = put(txn, "Patient", "p1", kPatient); !r) return r;
      if (auto r = put(txn, "ServiceRequest", "sr1", kLabOrder); !r) return r;
      return fhir::fail(fhir::ErrorKind::kConflict, "conflict", "a later entry failed");
    });
    ASSERT_FALSE(w.has_value());
    EXPECT_EQ(trigger.queued(), 0u);
    EXPECT_TRUE(queue.list("")->empty());
    EXPECT_EQ(store->read(resources::kDefaultTenant, "ServiceRequest", "sr1").error().kind, fhir::ErrorKind::kNotFound);
    // A write the destination does not want (not a lab order) queues nothing either.
    ASSERT_TRUE(trigger.write([](Transaction& txn) { return put(txn, "ServiceRequest", "sr2", kImagingOrder); }));
    EXPECT_TRUE(queue.list("")->empty());
  }
};

class Hl7v2OutboundStoreTest : public ::testing::Test, public OutboundStoreScenarios {
 protected:
  std::unique_ptr<Store> open() override {
    auto s = resources::open_store("sqlite:" + (dir_.path() / "outbound.db").string(), {.readers = 2});
    EXPECT_TRUE(s.has_value());
    return s ? std::move(*s) : nullptr;
  }
  test::TempDir dir_;
};

TEST_F(Hl7v2OutboundStoreTest, QueuedMessageSurvivesARestartAndIsDeliveredAfterIt) {
  queued_message_survives_a_restart();
}
TEST_F(Hl7v2OutboundStoreTest, RolledBackWriteLeavesNoMessage) {
  rolled_back_write_leaves_no_message();
}

TEST(Hl7v2OutboundConfig, ParsesDestinations) {
  auto d = parse_destination("lab=10.0.0.5:2575:oml,oru:LIS:LABFAC");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->name, "lab");
  EXPECT_EQ(d->host, "10.0.0.5");
  EXPECT_EQ(d->port, 2575);
  EXPECT_TRUE(d->orders);
  EXPECT_EQ(d->order_message, "OML^O21");
  EXPECT_TRUE(d->results);
  EXPECT_FALSE(d->pharmacy);
  EXPECT_EQ(d->receiving_application, "LIS");
  EXPECT_EQ(d->receiving_facility, "LABFAC");
  auto p = parse_destination("pharmacy=[::1]:2576:rde");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->host, "::1");
  EXPECT_EQ(p->port, 2576);
  EXPECT_TRUE(p->pharmacy);
  EXPECT_FALSE(p->orders);
  EXPECT_EQ(p->receiving_application, "pharmacy");
  EXPECT_EQ(p->receiving_facility, "");
  for (const char* bad : {"lab", "=h:1:orm", "lab=h:1", "lab=h:0:orm", "lab=h:70000:orm", "lab=h:x:orm", "lab=h:1:adt",
                          "lab=h:1:orm,oml", "lab=[::1:1:orm", "lab=h:1:orm:A:B:C"}) {
    auto r = parse_destination(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().kind, fhir::ErrorKind::kInvalid) << bad;
  }
}

class PostgresHl7v2OutboundStoreTest : public ::testing::Test, public OutboundStoreScenarios {
 protected:
  void SetUp() override {
    if (test::postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
    auto db = test::PgDatabase::create();
    ASSERT_TRUE(db.has_value()) << db.error();
    db_ = std::move(*db);
  }
  std::unique_ptr<Store> open() override {
    auto s = resources::open_store(db_->url(), {.readers = 2});
    EXPECT_TRUE(s.has_value());
    return s ? std::move(*s) : nullptr;
  }
  std::unique_ptr<test::PgDatabase> db_;
};

TEST_F(PostgresHl7v2OutboundStoreTest, QueuedMessageSurvivesARestartAndIsDeliveredAfterIt) {
  queued_message_survives_a_restart();
}
TEST_F(PostgresHl7v2OutboundStoreTest, RolledBackWriteLeavesNoMessage) {
  rolled_back_write_leaves_no_message();
}

}  // namespace
}  // namespace caduceus::adapters::hl7v2
