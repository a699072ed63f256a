#include "caduceus/resources/subset.hpp"

#include <algorithm>

#include "caduceus/fhir/json.hpp"

namespace caduceus::resources {

namespace json = fhir::json;

std::string subset_resource(std::string_view text, const Definitions& definitions, Summary summary,
                            const std::vector<std::string>& elements) {
  bool by_elements = !elements.empty();
  if (!by_elements && (summary == Summary::kFalse || summary == Summary::kCount)) return std::string(text);
  auto resource = json::parse(text);
  if (!resource || !resource->is_object()) return std::string(text);
  const json::Value* rt = resource->find("resourceType");
  const TypeDefinition* type = rt != nullptr && rt->is_string() ? definitions.type(rt->text()) : nullptr;
  if (type == nullptr) return std::string(text);

  auto keep = [&](std::string_view name) {
    if (name == "resourceType" || name == "id" || name == "meta") return true;
    std::string_view base = name.starts_with('_') ? name.substr(1) : name;  // `_x` goes with `x`
    const ElementMatch* m = type->find(base);
    if (m == nullptr) return false;
    const ElementDefinition& e = *m->element;
    if (by_elements)
      return e.min > 0 || std::find(elements.begin(), elements.end(), std::string(e.stem())) != elements.end() ||
             std::find(elements.begin(), elements.end(), std::string(base)) != elements.end();
    switch (summary) {
      case Summary::kTrue: return e.summary;
      case Summary::kText: return base == "text" || e.min > 0;
      case Summary::kData: return base != "text";
      default: return true;
    }
  };
  auto& members = resource->members();
  std::erase_if(members, [&](const json::Value::Member& m) { return !keep(m.first); });

  // meta.tag += SUBSETTED (http://hl7.org/fhir/R4/search.html#summary).
  json::Value* meta = resource->find("meta");
  if (meta == nullptr || !meta->is_object()) meta = &resource->set("meta", json::Value::object());
  json::Value* tags = meta->find("tag");
  if (tags == nullptr || !tags->is_array()) tags = &meta->set("tag", json::Value::array());
  json::Value tag = json::Value::object();
  tag.set("system", json::Value::string("http://terminology.hl7.org/CodeSystem/v3-ObservationValue"));
  tag.set("code", json::Value::string("SUBSETTED"));
  tag.set("display", json::Value::string("Resource encoded in summary mode"));
  tags->push_back(std::move(tag));
  return json::write(*resource);
}

}  // namespace caduceus::resources
