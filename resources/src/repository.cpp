#include "caduceus/resources/repository.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <random>

#include "caduceus/fhir/datetime.hpp"
#include "caduceus/resources/custom_search.hpp"

namespace caduceus::resources {

using fhir::ErrorKind;
using fhir::Result;
namespace json = fhir::json;

namespace {

// 16 bytes from OpenSSL's generator, asked for 4 KiB at a time per thread (one call costs as much as a whole
// search's other work would); the ids stay as unpredictable as the generator. The process never forks.
std::array<unsigned char, 16> random_16() {
  struct Pool {
    std::array<unsigned char, 4096> bytes{};
    std::size_t used = 4096;
  };
  thread_local Pool pool;
  if (pool.used + 16 > pool.bytes.size()) {
    if (RAND_bytes(pool.bytes.data(), static_cast<int>(pool.bytes.size())) != 1) {
      // OpenSSL's generator does not fail once seeded; should it, the OS's generator serves.
      std::random_device rd;
      for (auto& byte : pool.bytes) byte = static_cast<unsigned char>(rd());
    }
    pool.used = 0;
  }
  std::array<unsigned char, 16> b{};
  std::copy_n(pool.bytes.begin() + static_cast<std::ptrdiff_t>(pool.used), b.size(), b.begin());
  std::fill_n(pool.bytes.begin() + static_cast<std::ptrdiff_t>(pool.used), b.size(), 0);  // used once only
  pool.used += b.size();
  return b;
}

// The canonical text of a UUID (lower case), with its version nibble and the RFC 9562 variant set.
std::string uuid_text(std::array<unsigned char, 16> b, unsigned version) {
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | (version << 4));
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0xf]);
  }
  return out;
}

}  // namespace

std::string new_resource_id() {
  // UUID version 7 (RFC 9562): the first 48 bits are the Unix time in milliseconds (big-endian), the other 74
  // random. Ids made close in time sort close together, so a create adds to the end of the (tenant, type, id)
  // index instead of a random page of it (which the database must then rewrite whole: a page write per create).
  std::array<unsigned char, 16> b = random_16();
  const auto ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  for (int i = 0; i < 6; ++i) b[static_cast<std::size_t>(i)] = static_cast<unsigned char>(ms >> (40 - 8 * i));
  return uuid_text(b, 7);
}

bool is_valid_id(std::string_view text) noexcept {
  if (text.empty() || text.size() > 64) return false;
  for (char c : text) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

void stamp_meta(json::Value& resource, std::int64_t version, std::int64_t last_updated_ms) {
  json::Value meta = json::Value::object();
  if (json::Value* existing = resource.find("meta"); existing != nullptr && existing->is_object()) {
    meta = std::move(*existing);
    resource.erase("meta");
  }
  meta.erase("versionId");
  meta.erase("lastUpdated");
  auto& m = meta.members();
  m.insert(m.begin(), {"lastUpdated", json::Value::string(fhir::format_instant(last_updated_ms))});
  m.insert(m.begin(), {"versionId", json::Value::string(std::to_string(version))});
  auto& members = resource.members();
  auto pos = members.begin();
  while (pos != members.end() && (pos->first == "resourceType" || pos->first == "id")) ++pos;
  members.insert(pos, {"meta", std::move(meta)});
}

namespace {
constexpr std::string_view kVersionPlaceholder = "0";
constexpr std::int64_t kTimePlaceholder = 0;
constexpr std::string_view kTimePlaceholderText = "1970-01-01T00:00:00.000Z";  // format_instant(kTimePlaceholder)
}  // namespace

std::optional<PreparedBody> PreparedBody::make(json::Value& resource) {
  stamp_meta(resource, 0, kTimePlaceholder);
  PreparedBody out;
  out.json_ = json::write(resource);
  constexpr std::string_view version_key = "\"meta\":{\"versionId\":\"";
  constexpr std::string_view time_key = "\",\"lastUpdated\":\"";
  const std::string_view time = kTimePlaceholderText;
  std::size_t at = out.json_.find(version_key);
  if (at == std::string::npos) return std::nullopt;
  out.version_at_ = at + version_key.size();
  out.time_at_ = out.version_at_ + kVersionPlaceholder.size() + time_key.size();
  std::string_view json = out.json_;
  if (json.substr(out.version_at_, kVersionPlaceholder.size()) != kVersionPlaceholder ||
      json.substr(out.version_at_ + kVersionPlaceholder.size(), time_key.size()) != time_key ||
      json.substr(out.time_at_, time.size()) != time)
    return std::nullopt;
  return out;
}

std::string PreparedBody::body(std::int64_t version, std::int64_t last_updated_ms) const {
  std::string out = json_;
  // The time first: it comes after the version, whose length may change.
  out.replace(time_at_, kTimePlaceholderText.size(), fhir::format_instant(last_updated_ms));
  out.replace(version_at_, kVersionPlaceholder.size(), std::to_string(version));
  return out;
}

void set_id(json::Value& resource, const std::string& id) {
  if (json::Value* existing = resource.find("id")) {
    *existing = json::Value::string(id);
    return;
  }
  auto& members = resource.members();
  auto pos = members.begin();
  if (pos != members.end() && pos->first == "resourceType") ++pos;
  members.insert(pos, {"id", json::Value::string(id)});
}

namespace {

Result<void> issues_to_error(std::vector<fhir::Issue> issues) {
  if (issues.empty()) return {};
  return std::unexpected(fhir::Error{ErrorKind::kInvalid, std::move(issues)});
}

fhir::Error stale(std::string_view type, std::string_view id, std::int64_t expected, std::int64_t current) {
  return fhir::Error::make(ErrorKind::kPreconditionFailed, "conflict",
                           "Version " + std::to_string(expected) + " of " + std::string(type) + "/" + std::string(id) +
                               " is not the current one (" + std::to_string(current) + ")");
}

}  // namespace

std::vector<fhir::Issue> Repository::check(std::string_view type, const json::Value& resource,
                                           std::optional<std::string_view> id_expected) const {
  std::vector<fhir::Issue> issues;
  if (!resource.is_object()) {
    issues.push_back({fhir::Severity::kError, "structure", "The body is not a FHIR resource (a JSON object)", {}});
    return issues;
  }
  const json::Value* rt = resource.find("resourceType");
  if (rt != nullptr && rt->is_string() && rt->text() != type) {
    issues.push_back({fhir::Severity::kError, "invalid",
                      "resourceType '" + rt->text() + "' does not match the URL's type '" + std::string(type) + "'",
                      std::string(type) + ".resourceType"});
    return issues;
  }
  if (id_expected) {
    const json::Value* id = resource.find("id");
    if (id == nullptr) {
      issues.push_back(
          {fhir::Severity::kError, "required",
           "The resource has no id; an update must carry the id of the URL (" + std::string(*id_expected) + ")",
           std::string(type) + ".id"});
    } else if (id->is_string() && id->text() != *id_expected) {
      issues.push_back(
          {fhir::Severity::kError, "invalid",
           "The resource's id '" + id->text() + "' differs from the id in the URL '" + std::string(*id_expected) + "'",
           std::string(type) + ".id"});
    }
  }
  auto structural = checker_.check(resource);
  issues.insert(issues.end(), std::make_move_iterator(structural.begin()), std::make_move_iterator(structural.end()));
  return issues;
}

namespace {

// Waits for an asynchronous write's answer.
template <class T, class F>
Result<T> wait_for(F&& start) {
  std::promise<Result<T>> promise;
  auto future = promise.get_future();
  start([&promise](Result<T> r) { promise.set_value(std::move(r)); });
  return future.get();
}

// What an asynchronous write carries from the caller into the store's transaction and back.
template <class T>
struct Pending {
  json::Value resource;
  std::optional<PreparedBody> body;         // the resource serialized before the write, when it could be
  std::optional<IndexValues> index;         // extracted before the write, when the repository indexes
  std::shared_ptr<const void> index_guard;  // what extracted it, kept until the write is durable
  T out{};
};

// Stamps meta, serializes and appends a new version of a resource inside the store's transaction.
Result<VersionRecord> append_resource(Transaction& txn, TenantId tenant, json::Value& resource, std::string type,
                                      std::string id, std::int64_t version, Method method,
                                      const std::optional<IndexValues>& index) {
  return append_version(txn, tenant, std::move(type), std::move(id), version, method, index,
                        [&](std::int64_t v, std::int64_t ms) {
                          stamp_meta(resource, v, ms);
                          return json::write(resource);
                        });
}

// The same for a pending write, from its prepared body when it has one.
template <class T>
Result<VersionRecord> append_pending(Transaction& txn, TenantId tenant, Pending<T>& pending, std::string type,
                                     std::string id, std::int64_t version, Method method) {
  if (!pending.body)
    return append_resource(txn, tenant, pending.resource, std::move(type), std::move(id), version, method,
                           pending.index);
  return append_version(txn, tenant, std::move(type), std::move(id), version, method, pending.index,
                        [&](std::int64_t v, std::int64_t ms) { return pending.body->body(v, ms); });
}

// Indexes and serializes the resource of a pending write (before the write: on the caller's thread).
template <class T>
void prepare_pending(Pending<T>& pending, json::Value resource, const Repository& repo) {
  pending.index = repo.index_values(resource, pending.index_guard);
  pending.body = PreparedBody::make(resource);
  pending.resource = std::move(resource);
}

}  // namespace

std::optional<IndexValues> Repository::index_of(const json::Value& resource, std::shared_ptr<const void>& guard) const {
  if (active_ != nullptr) return active_->extract(resource, &guard);
  if (indexer_ == nullptr) return std::nullopt;
  IndexValues v = indexer_->extract(resource);
  leave_out_resource_row_values(v);
  return v;
}

Result<WriteOutcome> Repository::create(TenantId tenant, std::string_view type, json::Value resource) {
  return wait_for<WriteOutcome>(
      [&](Callback<WriteOutcome> done) { create_async(tenant, type, std::move(resource), std::move(done)); });
}

Result<WriteOutcome> Repository::update(TenantId tenant, std::string_view type, std::string_view id,
                                        json::Value resource, std::optional<std::int64_t> if_match, bool allow_create) {
  return wait_for<WriteOutcome>([&](Callback<WriteOutcome> done) {
    update_async(tenant, type, id, std::move(resource), if_match, allow_create, std::move(done));
  });
}

Result<std::optional<VersionRecord>> Repository::remove(TenantId tenant, std::string_view type, std::string_view id,
                                                        std::optional<std::int64_t> if_match) {
  return wait_for<std::optional<VersionRecord>>(
      [&](Callback<std::optional<VersionRecord>> done) { remove_async(tenant, type, id, if_match, std::move(done)); });
}

Result<std::string> Repository::new_checked_id(std::string_view type, json::Value& resource) const {
  std::string id = new_resource_id();
  if (resource.is_object() && resource.find("id") != nullptr) set_id(resource, id);
  if (auto ok = issues_to_error(check(type, resource, std::nullopt)); !ok) return std::unexpected(ok.error());
  set_id(resource, id);
  return id;
}

void Repository::create_async(TenantId tenant, std::string_view type, json::Value resource,
                              Callback<WriteOutcome> done) {
  auto checked = new_checked_id(type, resource);
  if (!checked) return done(std::unexpected(checked.error()));
  std::string id = std::move(*checked);
  auto pending = std::make_shared<Pending<WriteOutcome>>();
  prepare_pending(*pending, std::move(resource), *this);
  store_.write_async(
      [pending, tenant, type = std::string(type), id = std::move(id)](Transaction& txn) -> Result<void> {
        auto rec = append_pending(txn, tenant, *pending, type, id, 1, Method::kCreate);
        if (!rec) return std::unexpected(rec.error());
        pending->out.record = std::move(*rec);
        pending->out.created = true;
        return {};
      },
      [pending, done = std::move(done)](Result<void> r) {
        if (!r) return done(std::unexpected(std::move(r.error())));
        done(std::move(pending->out));
      });
}

void Repository::update_async(TenantId tenant, std::string_view type, std::string_view id, json::Value resource,
                              std::optional<std::int64_t> if_match, bool allow_create, Callback<WriteOutcome> done) {
  if (auto ok = issues_to_error(check(type, resource, id)); !ok) return done(std::unexpected(ok.error()));
  auto pending = std::make_shared<Pending<WriteOutcome>>();
  prepare_pending(*pending, std::move(resource), *this);
  store_.write_async(
      [pending, tenant, type = std::string(type), id = std::string(id), if_match,
       allow_create](Transaction& txn) -> Result<void> {
        auto current = txn.current(tenant, type, id);
        if (!current) return std::unexpected(current.error());
        std::int64_t current_version = *current ? (*current)->version : 0;
        if (if_match && *if_match != current_version)
          return std::unexpected(stale(type, id, *if_match, current_version));
        if (!*current && !allow_create)
          return fhir::fail(ErrorKind::kNotFound, "not-found", "Resource " + type + "/" + id + " is not known");
        auto rec = append_pending(txn, tenant, *pending, type, id, current_version + 1, Method::kUpdate);
        if (!rec) return std::unexpected(rec.error());
        pending->out.created = !*current || (*current)->deleted;
        pending->out.record = std::move(*rec);
        return {};
      },
      [pending, done = std::move(done)](Result<void> r) {
        if (!r) return done(std::unexpected(std::move(r.error())));
        done(std::move(pending->out));
      });
}

void Repository::remove_async(TenantId tenant, std::string_view type, std::string_view id,
                              std::optional<std::int64_t> if_match, Callback<std::optional<VersionRecord>> done) {
  auto pending = std::make_shared<Pending<std::optional<VersionRecord>>>();
  store_.write_async(
      [pending, tenant, type = std::string(type), id = std::string(id), if_match](Transaction& txn) -> Result<void> {
        pending->out.reset();  // (a run again after a rollback starts afresh)
        auto current = txn.current(tenant, type, id);
        if (!current) return std::unexpected(current.error());
        std::int64_t current_version = *current ? (*current)->version : 0;
        if (if_match && *if_match != current_version)
          return std::unexpected(stale(type, id, *if_match, current_version));
        if (!*current || (*current)->deleted) return {};
        VersionRecord rec;
        rec.type = type;
        rec.id = id;
        rec.version = current_version + 1;
        rec.last_updated_ms = txn.now_ms();
        rec.deleted = true;
        rec.method = Method::kDelete;
        auto seq = txn.append(tenant, rec);
        if (!seq) return std::unexpected(seq.error());
        rec.seq = *seq;
        pending->out = std::move(rec);
        return {};
      },
      [pending, done = std::move(done)](Result<void> r) {
        if (!r) return done(std::unexpected(std::move(r.error())));
        done(std::move(pending->out));
      });
}

namespace {

fhir::Error too_many(std::string_view type, const Conditional& criteria, std::string_view what) {
  return fhir::Error::make(ErrorKind::kPreconditionFailed, "multiple-matches",
                           "The criteria '" + criteria.text + "' match more than one " + std::string(type) +
                               " resource: " + std::string(what));
}

}  // namespace

void Repository::conditional_create_async(TenantId tenant, std::string_view type, json::Value resource,
                                          std::shared_ptr<const Conditional> criteria, Callback<WriteOutcome> done) {
  auto checked = new_checked_id(type, resource);
  if (!checked) return done(std::unexpected(checked.error()));
  std::string id = std::move(*checked);
  auto pending = std::make_shared<Pending<WriteOutcome>>();
  prepare_pending(*pending, std::move(resource), *this);
  store_.write_async(
      [pending, tenant, type = std::string(type), id = std::move(id), criteria](Transaction& txn) -> Result<void> {
        pending->out = WriteOutcome{};  // (a run again after a rollback starts afresh)
        auto matches = txn.search_ids(tenant, criteria->query, 2);
        if (!matches) return std::unexpected(matches.error());
        if (matches->size() > 1) return std::unexpected(too_many(type, *criteria, "the create is not made"));
        if (matches->size() == 1) {
          pending->out.record.type = matches->front().first;
          pending->out.record.id = matches->front().second;
          return {};
        }
        auto rec = append_pending(txn, tenant, *pending, type, id, 1, Method::kCreate);
        if (!rec) return std::unexpected(rec.error());
        pending->out.record = std::move(*rec);
        pending->out.created = true;
        return {};
      },
      [this, tenant, pending, done = std::move(done)](Result<void> r) {
        if (!r) return done(std::unexpected(std::move(r.error())));
        if (!pending->out.created) {
          // The match's body: it was current when the transaction committed (a later write may have followed).
          auto current = store_.read(tenant, pending->out.record.type, pending->out.record.id);
          if (!current) return done(std::unexpected(std::move(current.error())));
          pending->out.record = std::move(*current);
        }
        done(std::move(pending->out));
      });
}

void Repository::conditional_update_async(TenantId tenant, std::string_view type, json::Value resource,
                                          std::shared_ptr<const Conditional> criteria, Callback<WriteOutcome> done) {
  if (auto ok = issues_to_error(check(type, resource, std::nullopt)); !ok) return done(std::unexpected(ok.error()));
  std::string body_id;
  if (const json::Value* id = resource.find("id"); id != nullptr && id->is_string()) body_id = id->text();
  if (!body_id.empty() && !is_valid_id(body_id))
    return done(fhir::fail(ErrorKind::kInvalid, "invalid",
                           "'" + body_id + "' is not a valid resource id ([A-Za-z0-9-.]{1,64})",
                           std::string(type) + ".id"));
  auto pending = std::make_shared<Pending<WriteOutcome>>();
  auto original = std::make_shared<const json::Value>(std::move(resource));
  store_.write_async(
      [this, pending, original, tenant, type = std::string(type), body_id, criteria](Transaction& txn) -> Result<void> {
        // (a run again after a rollback starts afresh)
        pending->out = WriteOutcome{};
        pending->index.reset();
        pending->index_guard.reset();
        auto matches = txn.search_ids(tenant, criteria->query, 2);
        if (!matches) return std::unexpected(matches.error());
        if (matches->size() > 1) return std::unexpected(too_many(type, *criteria, "the update is not made"));
        std::string id;
        bool server_id = false;
        if (matches->size() == 1) {
          id = matches->front().second;
          if (!body_id.empty() && body_id != id)
            return fhir::fail(ErrorKind::kInvalid, "invalid",
                              "The resource's id '" + body_id + "' differs from the id of the resource matching '" +
                                  criteria->text + "' (" + id + ")",
                              type + ".id");
        } else if (!body_id.empty()) {
          id = body_id;  // update as create
        } else {
          id = new_resource_id();
          server_id = true;
        }
        pending->resource = *original;
        set_id(pending->resource, id);
        pending->index = index_of(pending->resource, pending->index_guard);
        auto current = txn.current(tenant, type, id);
        if (!current) return std::unexpected(current.error());
        std::int64_t current_version = *current ? (*current)->version : 0;
        auto rec = append_resource(txn, tenant, pending->resource, type, id, current_version + 1,
                                   server_id ? Method::kCreate : Method::kUpdate, pending->index);
        if (!rec) return std::unexpected(rec.error());
        pending->out.created = !*current || (*current)->deleted;
        pending->out.record = std::move(*rec);
        return {};
      },
      [pending, done = std::move(done)](Result<void> r) {
        if (!r) return done(std::unexpected(std::move(r.error())));
        done(std::move(pending->out));
      });
}

Result<WriteOutcome> Repository::conditional_update_in(Transaction& txn, TenantId tenant, std::string_view type,
                                                       json::Value resource, const Conditional& criteria) {
  if (auto ok = issues_to_error(check(type, resource, std::nullopt)); !ok) return std::unexpected(ok.error());
  std::string body_id;
  if (const json::Value* id = resource.find("id"); id != nullptr && id->is_string()) body_id = id->text();
  auto matches = txn.search_ids(tenant, criteria.query, 2);
  if (!matches) return std::unexpected(matches.error());
  if (matches->size() > 1) return std::unexpected(too_many(type, criteria, "the update is not made"));
  std::string id;
  bool server_id = false;
  if (matches->size() == 1) {
    id = matches->front().second;
    if (!body_id.empty() && body_id != id)
      return fhir::fail(ErrorKind::kInvalid, "invalid",
                        "The resource's id '" + body_id + "' differs from the id of the resource matching '" +
                            criteria.text + "' (" + id + ")",
                        std::string(type) + ".id");
  } else if (!body_id.empty()) {
    if (!is_valid_id(body_id))
      return fhir::fail(ErrorKind::kInvalid, "invalid",
                        "'" + body_id + "' is not a valid resource id ([A-Za-z0-9-.]{1,64})",
                        std::string(type) + ".id");
    id = body_id;
  } else {
    id = new_resource_id();
    server_id = true;
  }
  set_id(resource, id);
  std::shared_ptr<const void> guard;
  std::optional<IndexValues> index = index_of(resource, guard);
  auto current = txn.current(tenant, type, id);
  if (!current) return std::unexpected(current.error());
  std::int64_t current_version = *current ? (*current)->version : 0;
  auto rec = append_resource(txn, tenant, resource, std::string(type), id, current_version + 1,
                             server_id ? Method::kCreate : Method::kUpdate, index);
  if (!rec) return std::unexpected(rec.error());
  WriteOutcome out;
  out.created = !*current || (*current)->deleted;
  out.record = std::move(*rec);
  return out;
}

Result<WriteOutcome> Repository::update_in(Transaction& txn, TenantId tenant, std::string_view type,
                                           std::string_view id, json::Value resource) {
  if (auto ok = issues_to_error(check(type, resource, id)); !ok) return std::unexpected(ok.error());
  std::shared_ptr<const void> guard;
  std::optional<IndexValues> index = index_of(resource, guard);
  auto current = txn.current(tenant, type, id);
  if (!current) return std::unexpected(current.error());
  std::int64_t current_version = *current ? (*current)->version : 0;
  auto rec = append_resource(txn, tenant, resource, std::string(type), std::string(id), current_version + 1,
                             Method::kUpdate, index);
  if (!rec) return std::unexpected(rec.error());
  WriteOutcome out;
  out.created = !*current || (*current)->deleted;
  out.record = std::move(*rec);
  return out;
}

Result<Repository::Prepared> Repository::prepare(std::string_view type, std::string_view id,
                                                 json::Value resource) const {
  if (auto ok = issues_to_error(check(type, resource, id)); !ok) return std::unexpected(ok.error());
  Prepared out;
  out.index = index_of(resource, out.guard);
  out.resource = std::move(resource);
  return out;
}

Result<WriteOutcome> Repository::update_in(Transaction& txn, TenantId tenant, std::string_view type,
                                           std::string_view id, const Prepared& prepared) {
  json::Value resource = prepared.resource;  // (stamped below; the prepared body stays as it is for a job run again)
  if (const json::Value* body_id = resource.find("id");
      body_id == nullptr || !body_id->is_string() || body_id->text() != id)
    set_id(resource, std::string(id));
  auto current = txn.current(tenant, type, id);
  if (!current) return std::unexpected(current.error());
  std::int64_t current_version = *current ? (*current)->version : 0;
  auto rec = append_resource(txn, tenant, resource, std::string(type), std::string(id), current_version + 1,
                             Method::kUpdate, prepared.index);
  if (!rec) return std::unexpected(rec.error());
  WriteOutcome out;
  out.created = !*current || (*current)->deleted;
  out.record = std::move(*rec);
  return out;
}

void Repository::conditional_delete_async(TenantId tenant, std::string_view type,
                                          std::shared_ptr<const Conditional> criteria, std::size_t max_matches,
                                          Callback<std::vector<VersionRecord>> done) {
  max_matches = std::max<std::size_t>(1, max_matches);
  auto pending = std::make_shared<Pending<std::vector<VersionRecord>>>();
  store_.write_async(
      [pending, tenant, type = std::string(type), criteria, max_matches](Transaction& txn) -> Result<void> {
        pending->out.clear();  // (a run again after a rollback starts afresh)
        auto matches = txn.search_ids(tenant, criteria->query, max_matches + 1);
        if (!matches) return std::unexpected(matches.error());
        if (matches->size() > max_matches)
          return std::unexpected(too_many(
              type, *criteria,
              max_matches == 1
                  ? std::string("this server deletes one resource at a time")
                  : "this server deletes at most " + std::to_string(max_matches) + " at a time; nothing is deleted"));
        for (const auto& [match_type, id] : *matches) {
          auto current = txn.current(tenant, match_type, id);
          if (!current) return std::unexpected(current.error());
          if (!*current || (*current)->deleted) continue;
          VersionRecord rec;
          rec.type = match_type;
          rec.id = id;
          rec.version = (*current)->version + 1;
          rec.last_updated_ms = txn.now_ms();
          rec.deleted = true;
          rec.method = Method::kDelete;
          auto seq = txn.append(tenant, rec);
          if (!seq) return std::unexpected(seq.error());
          rec.seq = *seq;
          pending->out.push_back(std::move(rec));
        }
        return {};
      },
      [pending, done = std::move(done)](Result<void> r) {
        if (!r) return done(std::unexpected(std::move(r.error())));
        done(std::move(pending->out));
      });
}

Result<std::optional<WriteOutcome>> Repository::patch_round(TenantId tenant, const std::string& type,
                                                            const std::string& id, const PatchFn& patch,
                                                            std::optional<std::int64_t> if_match,
                                                            const std::shared_ptr<const Conditional>& criteria) {
  const std::string where = type + "/" + id;
  auto current = store_.read(tenant, type, id);
  if (!current) return std::unexpected(current.error());
  if (current->deleted)
    return fhir::fail(ErrorKind::kGone, "deleted",
                      "Resource " + where + " was deleted (version " + std::to_string(current->version) + ")");
  if (if_match && *if_match != current->version) return std::unexpected(stale(type, id, *if_match, current->version));
  auto body = json::parse(current->body);
  if (!body) return fhir::fail(ErrorKind::kInternal, "exception", "The stored version of " + where + " is unreadable");
  if (auto applied = patch(*body); !applied) return std::unexpected(applied.error());
  const json::Value* rt = body->is_object() ? body->find("resourceType") : nullptr;
  if (rt == nullptr || !rt->is_string() || rt->text() != type)
    return fhir::fail(ErrorKind::kUnprocessable, "processing",
                      "The patch would change the resourceType of " + where + ", which cannot change",
                      type + ".resourceType");
  const json::Value* new_id = body->find("id");
  if (new_id == nullptr || !new_id->is_string() || new_id->text() != id)
    return fhir::fail(ErrorKind::kUnprocessable, "processing",
                      "The patch would change the id of " + where + ", which cannot change", type + ".id");
  if (auto issues = check(type, *body, id); !issues.empty())
    return std::unexpected(fhir::Error{ErrorKind::kUnprocessable, std::move(issues)});

  auto pending = std::make_shared<Pending<WriteOutcome>>();
  prepare_pending(*pending, std::move(*body), *this);
  auto lost = std::make_shared<bool>(false);
  const std::int64_t read_version = current->version;
  auto written =
      store_.write([pending, lost, tenant, type, id, read_version, criteria](Transaction& txn) -> Result<void> {
        *lost = false;  // (a run again after a rollback starts afresh)
        auto now = txn.current(tenant, type, id);
        if (!now) return std::unexpected(now.error());
        if (!*now || (*now)->version != read_version) {
          *lost = true;
          return {};
        }
        if (criteria) {
          auto matches = txn.search_ids(tenant, criteria->query, 2);
          if (!matches) return std::unexpected(matches.error());
          if (matches->size() != 1 || matches->front().first != type || matches->front().second != id) {
            *lost = true;
            return {};
          }
        }
        auto rec = append_pending(txn, tenant, *pending, type, id, read_version + 1, Method::kUpdate);
        if (!rec) return std::unexpected(rec.error());
        pending->out.record = std::move(*rec);
        pending->out.created = false;
        return {};
      });
  if (!written) return std::unexpected(written.error());
  if (*lost) {
    if (if_match) return std::unexpected(stale(type, id, *if_match, read_version + 1));
    return std::optional<WriteOutcome>{};
  }
  return std::optional<WriteOutcome>{std::move(pending->out)};
}

Result<WriteOutcome> Repository::patch(TenantId tenant, std::string_view type, std::string_view id,
                                       const PatchFn& patch, std::optional<std::int64_t> if_match) {
  for (int round = 0; round < 100; ++round) {
    auto out = patch_round(tenant, std::string(type), std::string(id), patch, if_match, nullptr);
    if (!out) return std::unexpected(out.error());
    if (*out) return std::move(**out);
    // Another write came first: patch its result instead.
  }
  return fhir::fail(ErrorKind::kConflict, "conflict",
                    "Resource " + std::string(type) + "/" + std::string(id) +
                        " kept changing while the patch was applied; try again");
}

Result<WriteOutcome> Repository::conditional_patch(TenantId tenant, std::string_view type,
                                                   std::shared_ptr<const Conditional> criteria, const PatchFn& patch) {
  for (int round = 0; round < 100; ++round) {
    // Which resource: found in a write transaction, so that it sees every committed write.
    auto found = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
    auto ok = store_.write([found, tenant, criteria](Transaction& txn) -> Result<void> {
      auto matches = txn.search_ids(tenant, criteria->query, 2);
      if (!matches) return std::unexpected(matches.error());
      *found = std::move(*matches);
      return {};
    });
    if (!ok) return std::unexpected(ok.error());
    if (found->empty())
      return fhir::fail(ErrorKind::kNotFound, "not-found",
                        "No " + std::string(type) + " resource matches the criteria '" + criteria->text + "'");
    if (found->size() > 1) return std::unexpected(too_many(type, *criteria, "the patch is not made"));
    auto out = patch_round(tenant, std::string(type), found->front().second, patch, std::nullopt, criteria);
    if (!out) {
      // Deleted between the search and the read: the criteria decide again.
      if (out.error().kind == ErrorKind::kGone || out.error().kind == ErrorKind::kNotFound) continue;
      return std::unexpected(out.error());
    }
    if (*out) return std::move(**out);
  }
  return fhir::fail(ErrorKind::kConflict, "conflict",
                    "The resources matching '" + criteria->text +
                        "' kept changing while the patch was applied; try "
                        "again");
}

}  // namespace caduceus::resources
