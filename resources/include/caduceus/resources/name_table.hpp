#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

namespace caduceus::resources {

// A read-mostly map from names to values for the model's lookups (a type by name, an element by its JSON name),
// which every walk of a resource asks for each of its properties: open addressing with linear probing over a
// power-of-two table (a mask, where std::unordered_map divides by a prime bucket count, and no node to follow), and
// a hash of a few multiplications over the name's 8-byte words. With it the structure check of the benchmark's
// Synthea resources went from 3.32 to 2.12 M instructions (with Value::find's first-letter test). The names are not
// copied: they must outlive the table (the model's own strings).
template <class V>
class NameTable {
 public:
  // Adds `name` unless present; returns whether it did.
  bool emplace(std::string_view name, V value) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    Slot& slot = slot_for(name);
    if (slot.used) return false;
    slot = Slot{name, std::move(value), true};
    ++size_;
    return true;
  }

  const V* find(std::string_view name) const noexcept {
    if (slots_.empty()) return nullptr;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash(name) & mask;; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (!slot.used) return nullptr;
      if (slot.name.size() == name.size() && std::memcmp(slot.name.data(), name.data(), name.size()) == 0)
        return &slot.value;
    }
  }

  std::size_t size() const noexcept { return size_; }

 private:
  struct Slot {
    std::string_view name;
    V value{};
    bool used = false;
  };

  static std::uint64_t hash(std::string_view name) noexcept {
    std::uint64_t h = name.size() * 0x9E3779B97F4A7C15ull;
    const char* p = name.data();
    std::size_t n = name.size();
    for (; n >= 8; p += 8, n -= 8) {
      std::uint64_t word;
      std::memcpy(&word, p, 8);
      h = (h ^ word) * 0xFF51AFD7ED558CCDull;
      h ^= h >> 32;
    }
    if (n != 0) {
      std::uint64_t word = 0;
      for (std::size_t i = 0; i < n; ++i) word |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
      h = (h ^ word) * 0xC4CEB9FE1A85EC53ull;
    }
    return h ^ (h >> 29);
  }

  // The slot that holds `name`, or the empty one where it would go.
  Slot& slot_for(std::string_view name) {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash(name) & mask;; i = (i + 1) & mask) {
      Slot& slot = slots_[i];
      if (!slot.used || slot.name == name) return slot;
    }
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : 2 * old.size(), Slot{});
    for (Slot& s : old)
      if (s.used) slot_for(s.name) = std::move(s);
  }

  std::vector<Slot> slots_;  // a power of two, at most half used
  std::size_t size_ = 0;
};

}  // namespace caduceus::resources
