#include "caduceus/resources/shared_rows.hpp"

#include <algorithm>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace caduceus::resources {
namespace {

// The row's value, its parameter aside.
auto key(const StringIndex& r) {
  return std::tie(r.normalized, r.exact);
}
auto key(const TokenIndex& r) {
  return std::tie(r.system, r.code, r.text);
}
auto key(const DateIndex& r) {
  return std::tie(r.low_ms, r.high_ms);
}
auto key(const NumberIndex& r) {
  return std::tie(r.low, r.high, r.value);
}
auto key(const QuantityIndex& r) {
  return std::tie(r.low, r.high, r.value, r.system, r.code, r.unit);
}
auto key(const UriIndex& r) {
  return std::tie(r.uri);
}
auto key(const CompositeIndex& r) {
  return std::tie(r.component, r.system, r.code, r.text, r.normalized, r.exact, r.low, r.high, r.unit, r.value,
                  r.target_type, r.target_id, r.url, r.uri);
}

// The subsets of the parameter `code` of the type, remembered for the last code asked (rows of a parameter are
// together).
struct Subsets {
  const SearchParameterRegistry& registry;
  std::string_view type;
  std::string last;
  bool looked = false;
  std::span<const std::string> codes;

  std::span<const std::string> of(std::string_view code) {
    if (!looked || code != last) {
      looked = true;
      const SearchParameter* p = registry.find(type, code);
      codes = p == nullptr ? std::span<const std::string>() : p->subsets_for(type);
      last.assign(code);
    }
    return codes;
  }
};

// Removes the rows marked in `drop` (same size), keeping the order of the others.
template <class Row>
void erase_marked(std::vector<Row>& rows, const std::vector<bool>& drop) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (!drop[i]) {
      if (n != i) rows[n] = std::move(rows[i]);
      ++n;
    }
  rows.resize(n);
}

template <class Row>
void leave_out(std::vector<Row>& rows, Subsets& subsets) {
  bool any = false;
  for (const Row& r : rows) any = any || !subsets.of(r.param).empty();
  if (!any) return;
  std::vector<bool> drop(rows.size(), false);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::span<const std::string> codes = subsets.of(rows[i].param);
    for (std::size_t j = 0; j < rows.size() && !codes.empty(); ++j) {
      if (j == i || drop[j] || std::ranges::find(codes, rows[j].param) == codes.end()) continue;
      if (key(rows[i]) == key(rows[j])) {
        drop[i] = true;
        break;
      }
    }
  }
  erase_marked(rows, drop);
}

// Composites: an item is the set of its component rows (compared through pointers to them, in value order).
void leave_out_items(std::vector<CompositeIndex>& rows, Subsets& subsets) {
  bool any = false;
  for (const CompositeIndex& r : rows) any = any || !subsets.of(r.param).empty();
  if (!any) return;
  using ItemKey = std::pair<std::string_view, std::int64_t>;
  std::map<ItemKey, std::vector<const CompositeIndex*>> items;
  for (const CompositeIndex& r : rows) items[{r.param, r.item}].push_back(&r);
  auto value = [](const CompositeIndex* r) { return key(*r); };
  for (auto& [k, item] : items) std::ranges::sort(item, {}, value);
  std::vector<ItemKey> dropped;
  for (const auto& [k, item] : items) {
    std::span<const std::string> codes = subsets.of(k.first);
    for (const auto& [other, other_item] : items) {
      if (codes.empty()) break;
      if (other.first == k.first || std::ranges::find(codes, other.first) == codes.end()) continue;
      if (std::ranges::equal(item, other_item, {}, value, value)) {
        dropped.push_back(k);
        break;
      }
    }
  }
  if (dropped.empty()) return;
  std::vector<bool> drop(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i)
    drop[i] = std::ranges::find(dropped, ItemKey(rows[i].param, rows[i].item)) != dropped.end();
  erase_marked(rows, drop);
}

// A CodeableConcept's text has a token row of its own (no system, no code) for :text. When a coding of the same
// parameter carries the same text (its display, normalized alike), that row can add no match to any search, so
// it is not written: :text matches the text of any row of the parameter, the coding's row is there for :missing,
// and nothing else reads a codeless row (a code or a system never matches it, a sort skips it).
void leave_out_repeated_texts(std::vector<TokenIndex>& rows) {
  auto repeated = [&](const TokenIndex& r) {
    if (r.system || !r.code.empty() || r.text.empty()) return false;
    return std::ranges::any_of(
        rows, [&](const TokenIndex& o) { return !o.code.empty() && o.param == r.param && o.text == r.text; });
  };
  std::vector<bool> drop(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) drop[i] = repeated(rows[i]);
  erase_marked(rows, drop);
}

// A composite's token component never matches by text (a composite takes no modifier), so the row of a
// CodeableConcept's text alone is only the sign that the component is there; when a row with a code says so
// for the same item and component, it is not written.
void leave_out_component_texts(std::vector<CompositeIndex>& rows) {
  auto text_only = [](const CompositeIndex& r) {
    return r.code.empty() && r.system.empty() && !r.text.empty() && r.normalized.empty() && r.exact.empty() &&
           r.low == 0 && r.high == 0 && r.unit.empty() && r.value.empty() && r.target_type.empty() &&
           r.target_id.empty() && r.url.empty() && r.uri.empty();
  };
  std::vector<bool> drop(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const CompositeIndex& r = rows[i];
    drop[i] = text_only(r) && std::ranges::any_of(rows, [&](const CompositeIndex& o) {
                return !o.code.empty() && o.item == r.item && o.component == r.component && o.param == r.param;
              });
  }
  erase_marked(rows, drop);
}

}  // namespace

void leave_out_shared_rows(IndexValues& values, std::string_view resource_type,
                           const SearchParameterRegistry& registry) {
  Subsets subsets{registry, resource_type, {}, false, {}};
  leave_out(values.strings, subsets);
  leave_out(values.tokens, subsets);
  leave_out(values.dates, subsets);
  leave_out(values.numbers, subsets);
  leave_out(values.quantities, subsets);
  leave_out(values.uris, subsets);
  leave_out_items(values.composites, subsets);
  leave_out_repeated_texts(values.tokens);
  leave_out_component_texts(values.composites);
}

}  // namespace caduceus::resources
