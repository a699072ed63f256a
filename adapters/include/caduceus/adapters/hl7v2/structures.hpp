#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace caduceus::adapters::hl7v2 {

// One element of a message structure's definition: a segment or a group of elements, optional ([...]) and/or
// repeating ({...}). A choice (<A|B>) is written as a group whose members are all optional.
struct StructureNode {
  std::string name;  // segment id, or group name
  bool optional = false;
  bool repeating = false;
  std::vector<StructureNode> children;  // a group when not empty
  bool group() const { return !children.empty(); }
};

// The definition of a message structure (e.g. ADT_A01), from the v2 standard, or nullptr when we have none.
// The table is a superset over versions 2.3 to 2.8: segments added in later versions are optional.
const StructureNode* find_structure(std::string_view structure);
// The structure of a message type and trigger event (e.g. ADT, A04 -> ADT_A01); "" when not in our table.
std::string structure_for(std::string_view type, std::string_view trigger);
// The names of the structures we have definitions for.
std::vector<std::string> known_structures();

}  // namespace caduceus::adapters::hl7v2
