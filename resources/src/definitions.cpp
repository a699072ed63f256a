#include "caduceus/resources/definitions.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include "rapidjson_util.hpp"

// The model is internal data embedded in the binary, read once at start: rapidjson (the fastest parser at hand)
// reads it straight from the embedded bytes.

namespace caduceus::resources {

namespace {

std::unexpected<fhir::Error> model_error(std::string diagnostics) {
  return fhir::fail(fhir::ErrorKind::kInternal, "exception", "R4 model: " + std::move(diagnostics));
}

using detail::as_view;
using detail::member;

std::optional<TypeKind> kind_from_name(std::string_view name) {
  if (name == "primitive") return TypeKind::kPrimitive;
  if (name == "complex") return TypeKind::kComplex;
  if (name == "resource") return TypeKind::kResource;
  return std::nullopt;
}

}  // namespace

fhir::Result<std::shared_ptr<const Definitions>> Definitions::load(std::string_view model_json) {
  rapidjson::Document doc;
  doc.Parse(model_json.data(), model_json.size());
  if (doc.HasParseError()) {
    return model_error(std::string("not valid JSON (") + rapidjson::GetParseError_En(doc.GetParseError()) +
                       " at offset " + std::to_string(doc.GetErrorOffset()) + ")");
  }
  if (!doc.IsObject()) return model_error("not a JSON object");
  const rapidjson::Value* types = member(doc, "types");
  const rapidjson::Value* resources = member(doc, "resourceTypes");
  if (types == nullptr || !types->IsArray() || resources == nullptr || !resources->IsArray()) {
    return model_error("no types or resourceTypes");
  }

  std::shared_ptr<Definitions> defs(new Definitions());
  if (const rapidjson::Value* version = member(doc, "fhirVersion"); version != nullptr && version->IsString()) {
    defs->fhir_version_ = as_view(*version);
  }

  // First pass: the types by name, so that element types can point to any of them.
  for (const rapidjson::Value& t : types->GetArray()) {
    const rapidjson::Value* name = t.IsObject() ? member(t, "name") : nullptr;
    const rapidjson::Value* kind = t.IsObject() ? member(t, "kind") : nullptr;
    if (name == nullptr || !name->IsString() || kind == nullptr || !kind->IsString()) {
      return model_error("a type without name or kind");
    }
    TypeDefinition& type = defs->types_.emplace_back();
    type.name = as_view(*name);
    const auto k = kind_from_name(as_view(*kind));
    if (!k) return model_error("type " + type.name + " has unknown kind");
    type.kind = *k;
    const rapidjson::Value* abstract = member(t, "abstract");
    type.is_abstract = abstract != nullptr && abstract->IsBool() && abstract->GetBool();
    type.backbone = type.name.find('.') != std::string::npos;
    if (type.kind == TypeKind::kPrimitive) {
      type.primitive = fhir::primitive_from_name(type.name);
      if (!type.primitive) return model_error("primitive type " + type.name + " is not known to fhir::Primitive");
    }
    if (!defs->by_name_.emplace(type.name, &type)) return model_error("type " + type.name + " twice");
  }

  auto resolve = [&](const rapidjson::Value& name) -> const TypeDefinition* {
    if (!name.IsString()) return nullptr;
    const TypeDefinition* const* found = defs->by_name_.find(as_view(name));
    return found == nullptr ? nullptr : *found;
  };

  // Second pass: bases and elements.
  std::size_t i = 0;
  for (const rapidjson::Value& t : types->GetArray()) {
    TypeDefinition& type = defs->types_[i++];
    if (const rapidjson::Value* base = member(t, "base")) {
      type.base = resolve(*base);
      if (type.base == nullptr) return model_error("type " + type.name + " has an unknown base");
    }
    const rapidjson::Value* elements = member(t, "elements");
    if (elements == nullptr || !elements->IsArray()) return model_error("type " + type.name + " has no elements");
    if (elements->Size() > kMaxElementsPerType) return model_error("type " + type.name + " has too many elements");
    type.elements.reserve(elements->Size());
    for (const rapidjson::Value& e : elements->GetArray()) {
      const rapidjson::Value* name = e.IsObject() ? member(e, "name") : nullptr;
      const rapidjson::Value* element_types = e.IsObject() ? member(e, "types") : nullptr;
      if (name == nullptr || !name->IsString() || element_types == nullptr || !element_types->IsArray() ||
          element_types->Empty()) {
        return model_error("type " + type.name + " has an element without name or types");
      }
      ElementDefinition& element = type.elements.emplace_back();
      element.name = as_view(*name);
      element.index = static_cast<std::uint16_t>(type.elements.size() - 1);
      element.choice = element.name.ends_with("[x]");
      if (const rapidjson::Value* min = member(e, "min"); min != nullptr && min->IsUint()) element.min = min->GetUint();
      if (const rapidjson::Value* max = member(e, "max"); max != nullptr && max->IsString()) {
        element.many = as_view(*max) != "1";
      }
      if (const rapidjson::Value* summary = member(e, "summary"); summary != nullptr && summary->IsBool()) {
        element.summary = summary->GetBool();
      }
      element.types.reserve(element_types->Size());
      for (const rapidjson::Value& code : element_types->GetArray()) {
        const TypeDefinition* target = resolve(code);
        if (target == nullptr) return model_error("element " + type.name + "." + element.name + " has an unknown type");
        element.types.push_back(target);
      }
      if (!element.choice && element.types.size() != 1) {
        return model_error("element " + type.name + "." + element.name + " has several types but is no choice");
      }
      if (element.min > 0) type.required.push_back(element.index);
    }
  }

  // Third pass, once no element moves any more: the JSON names, choices expanded (valueQuantity, valueString).
  for (TypeDefinition& type : defs->types_) {
    for (const ElementDefinition& element : type.elements) {
      if (!element.choice) {
        type.by_json_name.emplace(element.name, ElementMatch{&element, element.types.front()});
        continue;
      }
      for (const TypeDefinition* choice_type : element.types) {
        std::string& expanded = defs->choice_names_.emplace_back(element.stem());
        expanded += choice_type->name;
        expanded[element.stem().size()] =
            static_cast<char>(std::toupper(static_cast<unsigned char>(expanded[element.stem().size()])));
        type.by_json_name.emplace(expanded, ElementMatch{&element, choice_type});
      }
    }
  }

  for (const rapidjson::Value& name : resources->GetArray()) {
    const TypeDefinition* type = resolve(name);
    if (type == nullptr || type->kind != TypeKind::kResource || type->is_abstract) {
      return model_error("resourceTypes lists something that is not a concrete resource type");
    }
    defs->resource_types_.push_back(type->name);
  }
  std::sort(defs->resource_types_.begin(), defs->resource_types_.end());
  return std::shared_ptr<const Definitions>(std::move(defs));
}

const TypeDefinition* Definitions::type(std::string_view name) const noexcept {
  const TypeDefinition* const* found = by_name_.find(name);
  return found == nullptr ? nullptr : *found;
}

const ElementMatch* Definitions::element(std::string_view type_name, std::string_view json_name) const noexcept {
  const TypeDefinition* t = type(type_name);
  return t == nullptr ? nullptr : t->find(json_name);
}

bool Definitions::is_resource_type(std::string_view name) const noexcept {
  const TypeDefinition* t = type(name);
  return t != nullptr && t->kind == TypeKind::kResource && !t->is_abstract;
}

}  // namespace caduceus::resources
