// Where a node item is in the JSON tree it was evaluated against (fhirpath.hpp: locate).

#include "caduceus/resources/fhirpath.hpp"

namespace caduceus::resources::fhirpath {

namespace {

using fhir::json::Value;

// Depth-first search for `target` below `v`, appending the steps taken; false (steps unchanged) when absent.
bool find_below(const Value& v, const Value* target, std::vector<PathStep>& steps) {
  if (!v.is_object()) return false;
  for (const auto& [key, member] : v.members()) {
    if (&member == target) {
      steps.push_back(PathStep{key, std::nullopt});
      return true;
    }
    if (member.is_array()) {
      const auto& items = member.items();
      for (std::size_t i = 0; i < items.size(); ++i) {
        steps.push_back(PathStep{key, i});
        if (&items[i] == target || find_below(items[i], target, steps)) return true;
        steps.pop_back();
      }
    } else if (member.is_object()) {
      steps.push_back(PathStep{key, std::nullopt});
      if (find_below(member, target, steps)) return true;
      steps.pop_back();
    }
  }
  return false;
}

}  // namespace

std::optional<std::vector<PathStep>> locate(const Value& root, const Item& item) {
  if (item.kind != Item::Kind::kNode) return std::nullopt;
  const Value* target = item.node != nullptr ? item.node : item.extension;
  if (target == nullptr) return std::nullopt;
  std::vector<PathStep> steps;
  if (target == &root) return steps;
  if (!find_below(root, target, steps)) return std::nullopt;
  return steps;
}

}  // namespace caduceus::resources::fhirpath
