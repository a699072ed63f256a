// The HL7 v2 message monitor's store queries (Transaction::list_inbound_messages, list_outbound_messages,
// outbound_message, and the replay count of update_inbound_message), on SQLite, and on PostgreSQL with
// CADUCEUS_TEST_BACKEND=postgresql (a fresh database per test).
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/store/store.hpp"
#include "pg_cluster.hpp"

namespace caduceus::resources {
namespace {

constexpr std::int64_t kT0 = 1'764'000'000'000;  // 2025-11-24T16:00:00Z

class Hl7MessageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("caduceus-hl7-store-test-" + new_resource_id());
    std::string url;
    if (test::postgres_backend()) {
      if (test::postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
      auto db = test::PgDatabase::create();
      ASSERT_TRUE(db.has_value()) << db.error();
      pg_ = std::move(*db);
      url = pg_->url();
    } else {
      std::filesystem::create_directories(dir_);
      url = "sqlite:" + (dir_ / "test.db").string();
    }
    auto s = open_store(url);
    ASSERT_TRUE(s.has_value()) << s.error().issues[0].diagnostics;
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    pg_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Inserts an inbound message; returns its id.
  std::int64_t inbound(TenantId tenant, const std::string& control, const std::string& type, std::int64_t received,
                       const std::string& status, std::vector<std::string> resources = {}) {
    InboundMessageRecord m;
    m.sending_application = "APP";
    m.sending_facility = "FAC";
    m.control_id = control;
    m.message_type = type;
    m.received_ms = m.updated_ms = received;
    m.raw = "MSH|^~\\&|APP|FAC|||x||" + type + "|" + control + "|P|2.5.1\r";
    m.status = status;
    m.resources = std::move(resources);
    std::int64_t id = 0;
    auto r = store_->write([&](Transaction& t) -> fhir::Result<void> {
      auto inserted = t.insert_inbound_message(tenant, m);
      if (!inserted) return std::unexpected(inserted.error());
      id = *inserted;
      return {};
    });
    EXPECT_TRUE(r.has_value()) << r.error().issues[0].diagnostics;
    return id;
  }
  std::int64_t outbound(const std::string& destination, const std::string& control, const std::string& type,
                        std::int64_t created, const std::string& status) {
    OutboundMessageRecord m;
    m.destination = destination;
    m.message_type = type;
    m.control_id = control;
    m.message = "MSH|^~\\&|CADUCEUS||" + destination + "||x||" + type + "|" + control + "|P|2.5.1\r";
    m.source = "ServiceRequest/s1/_history/1";
    m.status = status;
    m.created_ms = m.updated_ms = m.next_attempt_ms = created;
    std::int64_t id = 0;
    auto r = store_->write([&](Transaction& t) -> fhir::Result<void> {
      auto inserted = t.insert_outbound_message(kDefaultTenant, m);
      if (!inserted) return std::unexpected(inserted.error());
      id = *inserted;
      return {};
    });
    EXPECT_TRUE(r.has_value()) << r.error().issues[0].diagnostics;
    return id;
  }
  // The control ids of the inbound messages a query lists, in order.
  std::vector<std::string> in(const Hl7MessageQuery& q, TenantId tenant = kDefaultTenant) {
    std::vector<std::string> out;
    auto r = store_->write([&](Transaction& t) -> fhir::Result<void> {
      auto rows = t.list_inbound_messages(tenant, q);
      if (!rows) return std::unexpected(rows.error());
      for (const auto& m : *rows) out.push_back(m.control_id);
      return {};
    });
    EXPECT_TRUE(r.has_value()) << r.error().issues[0].diagnostics;
    return out;
  }
  std::vector<std::string> out(const Hl7MessageQuery& q) {
    std::vector<std::string> list;
    auto r = store_->write([&](Transaction& t) -> fhir::Result<void> {
      auto rows = t.list_outbound_messages(kDefaultTenant, q);
      if (!rows) return std::unexpected(rows.error());
      for (const auto& m : *rows) list.push_back(m.control_id);
      return {};
    });
    EXPECT_TRUE(r.has_value()) << r.error().issues[0].diagnostics;
    return list;
  }

  std::filesystem::path dir_;
  std::unique_ptr<test::PgDatabase> pg_;
  std::unique_ptr<Store> store_;
};

using V = std::vector<std::string>;

// Five inbound messages (two received in the same millisecond), one of another tenant: each filter lists exactly
// the expected ones, newest first (time, then id, descending), and paging by (time, id) goes on where it stopped.
TEST_F(Hl7MessageStoreTest, InboundMessagesAreListedNewestFirstByEveryFilter) {
  inbound(kDefaultTenant, "M1", "ADT^A01^ADT_A01", kT0, "processed",
          {"Patient/p1/_history/1", "Encounter/e1/_history/1", "Provenance/hl7v2-1/_history/1"});
  inbound(kDefaultTenant, "M2", "ADT^A01", kT0 + 1000, "error");
  inbound(kDefaultTenant, "M3", "ADT^A011", kT0 + 1000, "rejected");
  inbound(kDefaultTenant, "M4", "ORU^R01^ORU_R01", kT0 + 2000, "processed",
          {"Patient/p10/_history/1", "Provenance/hl7v2-4/_history/1"});
  inbound(kDefaultTenant, "M5", "ADT^A08^ADT_A01", kT0 + 3000, "processed",
          {"Patient/p1/_history/2", "Provenance/hl7v2-5/_history/1"});
  inbound(7, "M6", "ADT^A01^ADT_A01", kT0 + 4000, "processed", {"Patient/p1/_history/3"});

  Hl7MessageQuery q;
  EXPECT_EQ(in(q), (V{"M5", "M4", "M3", "M2", "M1"}));
  EXPECT_EQ(in(q, 7), V{"M6"});

  q = {};
  q.message_type = "ADT^A01";  // not ADT^A011
  EXPECT_EQ(in(q), (V{"M2", "M1"}));
  q.message_type = "ADT";
  EXPECT_EQ(in(q), (V{"M5", "M3", "M2", "M1"}));
  q.message_type = "ORU^R01^ORU_R01";
  EXPECT_EQ(in(q), V{"M4"});
  q.message_type = "AD";
  EXPECT_EQ(in(q), V{});

  q = {};
  q.statuses = {"error", "rejected"};
  EXPECT_EQ(in(q), (V{"M3", "M2"}));
  q.statuses = {"processed"};
  EXPECT_EQ(in(q), (V{"M5", "M4", "M1"}));

  q = {};
  q.control_id = "M4";
  EXPECT_EQ(in(q), V{"M4"});

  q = {};
  q.resource = "Patient/p1";  // not Patient/p10
  EXPECT_EQ(in(q), (V{"M5", "M1"}));
  q.resource = "Patient/p10";
  EXPECT_EQ(in(q), V{"M4"});
  q.resource = "Encounter/e1";
  EXPECT_EQ(in(q), V{"M1"});

  q = {};
  q.since_ms = kT0 + 1000;
  q.until_ms = kT0 + 3000;
  EXPECT_EQ(in(q), (V{"M4", "M3", "M2"}));

  // Pages of two: after M4 (time T0+2000), then after M3 (same time as M2, higher id).
  q = {};
  q.limit = 2;
  EXPECT_EQ(in(q), (V{"M5", "M4"}));
  q.before = std::pair{kT0 + 2000, std::int64_t{4}};
  EXPECT_EQ(in(q), (V{"M3", "M2"}));
  q.before = std::pair{kT0 + 1000, std::int64_t{3}};
  EXPECT_EQ(in(q), (V{"M2", "M1"}));
  q.before = std::pair{kT0, std::int64_t{1}};
  EXPECT_EQ(in(q), V{});

  // Filters combine.
  q = {};
  q.message_type = "ADT";
  q.statuses = {"processed"};
  q.resource = "Patient/p1";
  q.since_ms = kT0 + 1;
  EXPECT_EQ(in(q), V{"M5"});
}

// A replay's count and time are kept by update_inbound_message and read back.
TEST_F(Hl7MessageStoreTest, ReplayCountAndTimeAreKept) {
  std::int64_t id = inbound(kDefaultTenant, "R1", "ADT^A01", kT0, "error");
  std::optional<InboundMessageRecord> before, after;
  ASSERT_TRUE(store_->write([&](Transaction& t) -> fhir::Result<void> {
    auto got = t.inbound_message(kDefaultTenant, id);
    if (!got) return std::unexpected(got.error());
    before = *got;
    InboundMessageRecord m = **got;
    m.status = "processed";
    m.replays = 2;
    m.replayed_ms = kT0 + 60'000;
    m.updated_ms = kT0 + 60'000;
    if (auto u = t.update_inbound_message(kDefaultTenant, m); !u) return u;
    got = t.inbound_message(kDefaultTenant, id);
    if (!got) return std::unexpected(got.error());
    after = *got;
    return {};
  }));
  ASSERT_TRUE(before && after);
  EXPECT_EQ(before->replays, 0);
  EXPECT_EQ(before->replayed_ms, 0);
  EXPECT_EQ(after->status, "processed");
  EXPECT_EQ(after->replays, 2);
  EXPECT_EQ(after->replayed_ms, kT0 + 60'000);
  Hl7MessageQuery q;
  auto listed = store_->write([&](Transaction& t) -> fhir::Result<void> {
    auto rows = t.list_inbound_messages(kDefaultTenant, q);
    if (!rows) return std::unexpected(rows.error());
    EXPECT_EQ(rows->size(), 1u);
    if (!rows->empty()) {
      EXPECT_EQ(rows->front().replays, 2);
      EXPECT_EQ(rows->front().raw, "MSH|^~\\&|APP|FAC|||x||ADT^A01|R1|P|2.5.1\r");
    }
    return {};
  });
  EXPECT_TRUE(listed.has_value());
}

// Outbound messages: one by id, and lists by destination, status, type and time, newest (created) first, paged.
TEST_F(Hl7MessageStoreTest, OutboundMessagesAreListedAndFoundById) {
  std::int64_t o1 = outbound("lab", "O1", "ORM^O01", kT0, "sent");
  outbound("lab", "O2", "ORM^O01", kT0 + 1000, "dead");
  outbound("pharmacy", "O3", "RDE^O11", kT0 + 1000, "pending");
  outbound("lab", "O4", "OML^O21", kT0 + 2000, "pending");

  Hl7MessageQuery q;
  EXPECT_EQ(out(q), (V{"O4", "O3", "O2", "O1"}));
  q.destination = "lab";
  EXPECT_EQ(out(q), (V{"O4", "O2", "O1"}));
  q = {};
  q.statuses = {"dead", "sent"};
  EXPECT_EQ(out(q), (V{"O2", "O1"}));
  q = {};
  q.message_type = "ORM";
  EXPECT_EQ(out(q), (V{"O2", "O1"}));
  q = {};
  q.control_id = "O3";
  EXPECT_EQ(out(q), V{"O3"});
  q = {};
  q.until_ms = kT0 + 1000;
  EXPECT_EQ(out(q), V{"O1"});
  q = {};
  q.limit = 2;
  q.before = std::pair{kT0 + 1000, std::int64_t{3}};
  EXPECT_EQ(out(q), (V{"O2", "O1"}));

  std::optional<OutboundMessageRecord> found, missing;
  ASSERT_TRUE(store_->write([&](Transaction& t) -> fhir::Result<void> {
    auto a = t.outbound_message(kDefaultTenant, o1);
    auto b = t.outbound_message(kDefaultTenant, o1 + 100);
    auto c = t.outbound_message(7, o1);
    if (!a || !b || !c) return fhir::fail(fhir::ErrorKind::kUnavailable, "exception", "a read failed");
    found = *a;
    missing = *b;
    EXPECT_FALSE(c->has_value());
    return {};
  }));
  ASSERT_TRUE(found);
  EXPECT_FALSE(missing);
  EXPECT_EQ(found->control_id, "O1");
  EXPECT_EQ(found->destination, "lab");
  EXPECT_EQ(found->status, "sent");
  EXPECT_EQ(found->message, "MSH|^~\\&|CADUCEUS||lab||x||ORM^O01|O1|P|2.5.1\r");
  EXPECT_EQ(found->created_ms, kT0);
}

}  // namespace
}  // namespace caduceus::resources
