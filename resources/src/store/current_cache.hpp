#pragma once

#include <array>
#include <atomic>
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

  // The cached current version, if any.
  std::optional<VersionRecord> get(TenantId tenant, std::string_view type, std::string_view id) const {
    std::string k = key(tenant, type, id);
    const Shard& s = shard(k);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(k);
    if (it == s.map.end()) return std::nullopt;
    return *it->second;
  }

  // The eviction count of the shard that holds this resource: take it before reading a version from the
  // database, and pass it to put(), so that a version read before an eviction cannot come back after it.
  std::uint64_t evictions(TenantId tenant, std::string_view type, std::string_view id) const {
    std::string k = key(tenant, type, id);
    const Shard& s = shard(k);
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

  // Offers a record as the current version of its resource. A writer offers what it has just committed; a
  // reader offers what it read, with the eviction count taken before the read: if the shard has been emptied
  // since, a newer version may have come and gone, and the record is not kept. (Without the emptying, a newer
  // version still in the cache wins by its number.)
  void put(TenantId tenant, const VersionRecord& record, std::optional<std::uint64_t> evictions_before = {},
           std::optional<std::uint64_t> epoch_before = {}) {
    if (shard_budget_ == 0) return;
    std::string k = key(tenant, record.type, record.id);
    std::size_t size = k.size() + record.body.size() + sizeof(VersionRecord);
    if (size > shard_budget_) return;
    auto value = std::make_shared<const VersionRecord>(record);
    Shard& s = shard(k);
    std::lock_guard lock(s.mutex);
    if (evictions_before && *evictions_before != s.evictions) return;
    // (An emptying of this shard increments epoch_ under this shard's lock, which is held here.)
    if (epoch_before && *epoch_before != epoch_.load(std::memory_order_acquire)) return;
    auto it = s.map.find(k);
    if (it != s.map.end()) {
      if (it->second->version >= record.version) return;
      s.bytes -= k.size() + it->second->body.size() + sizeof(VersionRecord);
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
    s.map.emplace(std::move(k), std::move(value));
    s.bytes += size;
  }

 private:
  static constexpr std::size_t kShards = 16;
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::shared_ptr<const VersionRecord>> map;
    std::size_t bytes = 0;
    std::uint64_t evictions = 0;  // times the shard was emptied
  };

  static std::string key(TenantId tenant, std::string_view type, std::string_view id) {
    std::string k = std::to_string(tenant);
    k.push_back('\0');
    k.append(type);
    k.push_back('\0');
    k.append(id);
    return k;
  }
  const Shard& shard(const std::string& k) const { return shards_[std::hash<std::string>{}(k) % kShards]; }
  Shard& shard(const std::string& k) { return shards_[std::hash<std::string>{}(k) % kShards]; }

  std::size_t shard_budget_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::uint64_t> epoch_{0};
};

}  // namespace caduceus::resources
