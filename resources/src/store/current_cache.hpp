#pragma once

#include <array>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

// The current version of recently used resources, in memory, so that a read by id needs no database round trip.
// Only sound where every write to the database passes through this process (the SQLite store holds an exclusive
// lock on its file for that reason). Entries only ever move forward: put() keeps whichever of the cached and the
// offered record has the higher version, so a reader that fetched an older version from the database cannot
// overwrite what a later commit put. Bounded by bytes; a shard over its budget is emptied. Thread-safe.
class CurrentCache {
 public:
  explicit CurrentCache(std::size_t max_bytes) : shard_budget_(max_bytes / kShards) {}

  // Whether it keeps anything (a cache of no bytes, as an import opens the store with, keeps nothing).
  bool enabled() const noexcept { return shard_budget_ != 0; }

  // The cached current version, if any: shared, immutable, no copy of the body (the entry may be replaced or
  // evicted meanwhile; the record stays valid as long as the pointer is held).
  std::shared_ptr<const VersionRecord> find(TenantId tenant, std::string_view type, std::string_view id) const {
    const Probe k = probe(tenant, type, id);
    const Shard& s = shard(k.hash);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(k);
    if (it == s.map.end()) return nullptr;
    return it->second;
  }

  // The cached current version, if any (a copy).
  std::optional<VersionRecord> get(TenantId tenant, std::string_view type, std::string_view id) const {
    if (auto found = find(tenant, type, id)) return *found;
    return std::nullopt;
  }

  // The eviction count of the shard that holds this resource: take it before reading a version from the
  // database, and pass it to put(), so that a version read before an eviction cannot come back after it.
  std::uint64_t evictions(TenantId tenant, std::string_view type, std::string_view id) const {
    const Shard& s = shard(probe(tenant, type, id).hash);
    std::lock_guard lock(s.mutex);
    return s.evictions;
  }

  // The number of times any shard was emptied. A reader whose database snapshot began before other reads (a
  // search reads its page and then the versions of its matches in one read transaction) takes it before that
  // snapshot begins and passes it to put_read(): a version read in that snapshot is kept only if no shard has been
  // emptied since.
  std::uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  // Offers a record read in a snapshot that began after epoch() returned `epoch_before`.
  void put_read(TenantId tenant, const VersionRecord& record, std::uint64_t epoch_before) {
    put(tenant, record, std::nullopt, epoch_before);
  }
  void put_read(TenantId tenant, std::shared_ptr<const VersionRecord> record, std::uint64_t epoch_before) {
    put(tenant, std::move(record), std::nullopt, epoch_before);
  }

  // Offers a record as the current version of its resource. A writer offers what it has just committed; a
  // reader offers what it read, with the eviction count taken before the read: if the shard has been emptied
  // since, a newer version may have come and gone, and the record is not kept. (Without the emptying, a newer
  // version still in the cache wins by its number.)
  void put(TenantId tenant, const VersionRecord& record, std::optional<std::uint64_t> evictions_before = {},
           std::optional<std::uint64_t> epoch_before = {}) {
    if (shard_budget_ == 0) return;
    put(tenant, std::make_shared<const VersionRecord>(record), evictions_before, epoch_before);
  }

  // The same, taking the record (the writer's, once committed: its body is not copied).
  void put(TenantId tenant, VersionRecord&& record) {
    if (shard_budget_ == 0) return;
    put(tenant, std::make_shared<const VersionRecord>(std::move(record)));
  }

  // The same, for a record already shared (the caller may keep using it).
  void put(TenantId tenant, std::shared_ptr<const VersionRecord> value,
           std::optional<std::uint64_t> evictions_before = {}, std::optional<std::uint64_t> epoch_before = {}) {
    if (shard_budget_ == 0 || value == nullptr) return;
    const VersionRecord& record = *value;
    const Probe p = probe(tenant, record.type, record.id);
    std::size_t size = p.text.size() + record.body.size() + sizeof(VersionRecord);
    if (size > shard_budget_) return;
    Shard& s = shard(p.hash);
    std::lock_guard lock(s.mutex);
    if (evictions_before && *evictions_before != s.evictions) return;
    // (An emptying of this shard increments epoch_ under this shard's lock, which is held here.)
    if (epoch_before && *epoch_before != epoch_.load(std::memory_order_acquire)) return;
    auto it = s.map.find(p);
    if (it != s.map.end()) {
      if (it->second->version >= record.version) return;
      s.bytes -= p.text.size() + it->second->body.size() + sizeof(VersionRecord);
      it->second = std::move(value);
      s.bytes += size;
      return;
    }
    if (s.bytes + size > shard_budget_) {
      s.map.clear();
      s.bytes = 0;
      ++s.evictions;
      epoch_.fetch_add(1, std::memory_order_acq_rel);
    }
    s.map.emplace(Key{std::string(p.text), p.hash}, std::move(value));
    s.bytes += size;
  }

 private:
  static constexpr std::size_t kShards = 16;
  // A key ("tenant\0type\0id") with its hash, computed once: the map then never hashes a stored key again (with
  // a hasher of its own, libstdc++ keeps no hash in its nodes and rehashed every key it passed in a bucket), and
  // two keys of different hashes are told apart without comparing their text (all ids of a type have the same
  // length). Looked up by a Probe (no key string is built for a lookup).
  struct Key {
    std::string text;
    std::size_t hash;
  };
  struct Probe {
    std::string_view text;
    std::size_t hash;
  };
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(const Key& k) const noexcept { return k.hash; }
    std::size_t operator()(const Probe& k) const noexcept { return k.hash; }
  };
  struct KeyEqual {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const noexcept {
      return a.hash == b.hash && std::string_view(a.text) == std::string_view(b.text);
    }
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<Key, std::shared_ptr<const VersionRecord>, KeyHash, KeyEqual> map;
    std::size_t bytes = 0;
    std::uint64_t evictions = 0;  // times the shard was emptied
  };

  // The key of a resource ("tenant\0type\0id") in a per-thread buffer, valid until the thread's next call.
  static std::string_view scratch_key(TenantId tenant, std::string_view type, std::string_view id) {
    thread_local std::string k;
    k.clear();
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, tenant);
    k.append(digits, end);
    k.push_back('\0');
    k.append(type);
    k.push_back('\0');
    k.append(id);
    return k;
  }
  static Probe probe(TenantId tenant, std::string_view type, std::string_view id) {
    const std::string_view k = scratch_key(tenant, type, id);
    return {k, std::hash<std::string_view>{}(k)};
  }
  // (The map's buckets take the hash modulo their count; the shard takes other bits, so that one shard's keys
  // still spread over all of its buckets.)
  const Shard& shard(std::size_t hash) const { return shards_[(hash >> 48) % kShards]; }
  Shard& shard(std::size_t hash) { return shards_[(hash >> 48) % kShards]; }

  std::size_t shard_budget_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::uint64_t> epoch_{0};
};

}  // namespace caduceus::resources
