// Acceptance 2 of the Search issue: for every official example of twelve resource types, the values our engine gives
// for every SearchParameter expression equal those of the reference JavaScript engine (tests/data/search-oracle,
// made by conformance/tools/fhirpath_oracle). Composite parameters are compared per item of their expression, each
// component evaluated on that item, both at the FHIRPath level and as the SearchIndexer's composite rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/datetime.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/fhir/search_text.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/fhirpath.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "test_server.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;
using fhirpath::Item;

// Our items as the reference engine writes them.
std::optional<json::Value> to_json(const Item& item) {
  switch (item.kind) {
    case Item::Kind::kNode:
      if (item.node == nullptr) return std::nullopt;
      return *item.node;
    case Item::Kind::kBoolean: return json::Value::boolean(item.boolean);
    case Item::Kind::kInteger: return json::Value::number(std::to_string(item.integer));
    case Item::Kind::kDecimal: return json::Value::number(item.text);
    case Item::Kind::kString:
    case Item::Kind::kDate:
    case Item::Kind::kDateTime:
    case Item::Kind::kTime: return json::Value::string(item.text);
    case Item::Kind::kQuantity: {
      json::Value q = json::Value::object();
      q.set("value", json::Value::number(item.text));
      q.set("unit", json::Value::string(item.unit));
      return q;
    }
  }
  return std::nullopt;
}

// Equality with numbers compared by value (JavaScript reads 1.50 as 1.5).
bool same(const json::Value& a, const json::Value& b) {
  if (a.is_number() && b.is_number())
    return std::strtod(a.text().c_str(), nullptr) == std::strtod(b.text().c_str(), nullptr);
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case json::Value::Kind::kArray:
      if (a.items().size() != b.items().size()) return false;
      for (std::size_t i = 0; i < a.items().size(); ++i)
        if (!same(a.items()[i], b.items()[i])) return false;
      return true;
    case json::Value::Kind::kObject:
      if (a.members().size() != b.members().size()) return false;
      for (const auto& [k, v] : a.members()) {
        const json::Value* other = b.find(k);
        if (other == nullptr || !same(v, *other)) return false;
      }
      return true;
    default: return a == b;
  }
}

// The same values, in any order (each matched once).
bool same_collection(const std::vector<json::Value>& ours, const std::vector<json::Value>& theirs) {
  if (ours.size() != theirs.size()) return false;
  std::vector<bool> used(theirs.size(), false);
  for (const auto& v : ours) {
    bool found = false;
    for (std::size_t i = 0; i < theirs.size() && !found; ++i)
      if (!used[i] && same(v, theirs[i])) found = used[i] = true;
    if (!found) return false;
  }
  return true;
}

std::string show(const std::vector<json::Value>& values) {
  std::string s = "[";
  for (const auto& v : values) s += json::write(v) + ",";
  if (s.size() > 1) s.pop_back();
  s += "]";
  return s.size() > 400 ? s.substr(0, 400) + "..." : s;
}

// Where we knowingly differ from the reference engine's output, and why.
const std::map<std::pair<std::string, std::string>, std::string>& known_differences() {
  // None at present. (Observation-decimal and Observation-f205 disagreed until the engine compared complex
  // values as whole JSON trees, with numbers to 8 decimal places as the reference engine does.)
  static const std::map<std::pair<std::string, std::string>, std::string> kKnown = {};
  return kKnown;
}

class FhirPathOracle : public ::testing::TestWithParam<std::string> {};

TEST_P(FhirPathOracle, SearchParameterValuesMatchTheReferenceEngine) {
  const std::string type = GetParam();
  const std::filesystem::path examples_dir = test::r4_examples_dir();
  if (examples_dir.empty()) GTEST_SKIP() << "the official examples are not unpacked (or set CADUCEUS_R4_EXAMPLES)";
  auto defs = Definitions::load(conformance::r4_model_json());
  ASSERT_TRUE(defs.has_value());
  auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(registry.has_value());
  auto oracle =
      json::parse(test::read_file(std::filesystem::path(CADUCEUS_TEST_DATA) / "search-oracle" / (type + ".json")));
  ASSERT_TRUE(oracle.has_value());

  fhirpath::EvalContext ctx;
  ctx.definitions = defs->get();
  std::map<std::string, fhirpath::FhirPath> compiled;
  std::vector<std::string> problems;
  int compared = 0;
  for (const auto& [file, expected_by_param] : oracle->members()) {
    auto example = json::parse(test::read_file(std::filesystem::path(examples_dir) / file));
    ASSERT_TRUE(example.has_value()) << file;
    for (const SearchParameter* param : (*registry)->for_type(type)) {
      if (param->type == SearchParamType::kComposite) continue;  // CompositeValuesMatchTheReferenceEngine
      std::string_view expression = param->expression_for(type);
      if (expression.empty()) continue;
      auto it = compiled.find(param->code);
      if (it == compiled.end()) {
        auto c = fhirpath::FhirPath::compile(expression);
        if (!c) {
          problems.push_back(param->code + ": does not compile: " + c.error().issues[0].diagnostics);
          compiled.emplace(param->code, *fhirpath::FhirPath::compile("{}"));
          continue;
        }
        it = compiled.emplace(param->code, std::move(*c)).first;
      }
      auto result = it->second.evaluate(*example, ctx);
      std::vector<json::Value> ours, theirs;
      if (!result) {
        problems.push_back(file + " " + param->code + ": evaluation failed: " + result.error().issues[0].diagnostics);
        continue;
      }
      for (const Item& item : *result)
        if (auto v = to_json(item)) ours.push_back(std::move(*v));
      if (const json::Value* e = expected_by_param.find(param->code)) theirs = e->items();
      ++compared;
      const bool known = known_differences().contains({file, param->code});
      const bool agree = same_collection(ours, theirs);
      if (known && agree) problems.push_back(file + " " + param->code + " agrees now: take it off known_differences");
      if (!agree && !known)
        problems.push_back(file + " " + param->code + " (" + std::string(expression) + "): ours " + show(ours) +
                           ", reference " + show(theirs));
    }
  }
  EXPECT_GT(compared, 0);
  std::string report;
  for (std::size_t i = 0; i < problems.size() && i < 40; ++i) report += "\n  " + problems[i];
  EXPECT_TRUE(problems.empty()) << problems.size() << " of " << compared << " disagree for " << type << ":" << report;
}

// Composite parameters. The reference values of one (example, composite) are a list with one entry per item of the
// composite's expression whose components all have a value, each entry the list of its components' collections.

// A number as text that compares by value ("1.50" and "1.5" agree, as JavaScript reads both as 1.5).
std::string numeric(const std::string& text) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", std::strtod(text.c_str(), nullptr));
  return buf;
}

std::string member(const json::Value& v, std::string_view name) {
  const json::Value* m = v.is_object() ? v.find(name) : nullptr;
  return m != nullptr && m->is_string() ? m->text() : std::string();
}

std::string date_key(double low, double high) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "d:%.17g|%.17g", low, high);
  return buf;
}

std::string token_key(const std::string& system, const std::string& code, const std::string& text) {
  return "t:" + system + "|" + code + "|" + (text.empty() ? std::string() : fhir::search::normalize_for_search(text));
}

// The index entries one component value (as the reference engine writes it) stands for, by the component
// parameter's type (search.html, "Search Parameter Types"), in a form comparable with our composite rows:
// token "t:system|code|normalized display or text" (a Coding, each coding of a CodeableConcept and its text, a code);
// quantity "q:value|system|code|unit"; string "s:value"; date "d:low|high" (ms; a Period's start and end, open ends
// at the int64 limits). Anything else is kept as "?json", which no row gives, so it shows up as a disagreement.
void expected_keys(SearchParamType type, const json::Value& v, std::vector<std::string>& out) {
  auto token = [&](const std::string& system, const std::string& code, const std::string& text) {
    if (!code.empty() || !text.empty()) out.push_back(token_key(system, code, text));
  };
  switch (type) {
    case SearchParamType::kToken:
      if (v.is_string()) return token({}, v.text(), {});
      if (v.is_bool()) return token({}, v.as_bool() ? "true" : "false", {});
      if (v.is_object() && v.find("coding") != nullptr) {
        for (const auto& c : v.find("coding")->items())
          token(member(c, "system"), member(c, "code"), member(c, "display"));
        return token({}, {}, member(v, "text"));
      }
      if (v.is_object() && (v.find("code") != nullptr || v.find("system") != nullptr))
        return token(member(v, "system"), member(v, "code"), member(v, "display"));
      if (v.is_object() && v.find("text") != nullptr) return token({}, {}, member(v, "text"));
      break;
    case SearchParamType::kQuantity:
      if (v.is_object()) {
        const json::Value* value = v.find("value");
        if (value == nullptr || !value->is_number()) return;  // no value: nothing to index
        std::string code = member(v, "code");
        if (code.empty()) code = member(v, "currency");
        out.push_back("q:" + numeric(value->text()) + "|" + member(v, "system") + "|" + code + "|" + member(v, "unit"));
        return;
      }
      break;
    case SearchParamType::kString:
      if (v.is_string()) {
        if (!v.text().empty()) out.push_back("s:" + v.text());
        return;
      }
      break;
    case SearchParamType::kDate: {
      constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
      constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
      if (v.is_string()) {
        if (auto r = fhir::datetime_range(v.text()))
          out.push_back(date_key(static_cast<double>(r->first), static_cast<double>(r->second)));
        return;
      }
      if (v.is_object() && (v.find("start") != nullptr || v.find("end") != nullptr)) {
        std::int64_t low = kMin, high = kMax;
        if (auto r = fhir::datetime_range(member(v, "start"))) low = r->first;
        if (auto r = fhir::datetime_range(member(v, "end"))) high = r->second;
        out.push_back(date_key(static_cast<double>(low), static_cast<double>(high)));
        return;
      }
      break;
    }
    default: break;
  }
  out.push_back("?" + json::write(v));
}

// The same key for one of our composite rows.
std::string row_key(SearchParamType type, const CompositeIndex& row) {
  switch (type) {
    case SearchParamType::kToken: return "t:" + row.system + "|" + row.code + "|" + row.text;
    case SearchParamType::kQuantity:
      return "q:" + numeric(row.value) + "|" + row.system + "|" + row.code + "|" + row.unit;
    case SearchParamType::kString: return "s:" + row.exact;
    case SearchParamType::kDate: return date_key(row.low, row.high);
    default: return "?row";
  }
}

// One item of a composite: for each component, its keys, sorted.
using KeyTuple = std::vector<std::vector<std::string>>;

std::string show_tuples(const std::vector<KeyTuple>& tuples) {
  std::string s;
  for (const auto& t : tuples) {
    s += "(";
    for (const auto& keys : t) {
      s += "[";
      for (const auto& k : keys) s += k + " ";
      s += "]";
    }
    s += ")";
  }
  return s.size() > 400 ? s.substr(0, 400) + "..." : s;
}

std::string show_items(const std::vector<std::vector<std::vector<json::Value>>>& items) {
  std::string s;
  for (const auto& t : items) {
    s += "(";
    for (const auto& values : t) s += show(values);
    s += ")";
  }
  return s.size() > 400 ? s.substr(0, 400) + "..." : s;
}

TEST_P(FhirPathOracle, CompositeValuesMatchTheReferenceEngine) {
  const std::string type = GetParam();
  const std::filesystem::path examples_dir = test::r4_examples_dir();
  if (examples_dir.empty()) GTEST_SKIP() << "the official examples are not unpacked (or set CADUCEUS_R4_EXAMPLES)";
  auto defs = Definitions::load(conformance::r4_model_json());
  ASSERT_TRUE(defs.has_value());
  auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(registry.has_value());
  auto indexer = SearchIndexer::create(*defs->get(), *registry->get());
  ASSERT_TRUE(indexer.has_value());
  auto oracle =
      json::parse(test::read_file(std::filesystem::path(CADUCEUS_TEST_DATA) / "search-oracle" / (type + ".json")));
  ASSERT_TRUE(oracle.has_value());

  std::vector<const SearchParameter*> composites;
  for (const SearchParameter* param : (*registry)->for_type(type))
    if (param->type == SearchParamType::kComposite && !param->expression_for(type).empty()) composites.push_back(param);
  if (composites.empty()) {
    // Only Observation has composites among the twelve types; the reference data then has none either.
    for (const auto& [file, expected_by_param] : oracle->members())
      for (const auto& [code, values] : expected_by_param.members())
        if (const SearchParameter* p = (*registry)->find(type, code))
          EXPECT_NE(p->type, SearchParamType::kComposite) << file << " " << code;
    return;
  }

  fhirpath::EvalContext ctx;
  ctx.definitions = defs->get();
  struct Compiled {
    fhirpath::FhirPath path;
    std::vector<fhirpath::FhirPath> components;
  };
  std::map<std::string, Compiled> compiled;
  for (const SearchParameter* param : composites) {
    auto path = fhirpath::FhirPath::compile(param->expression_for(type));
    ASSERT_TRUE(path.has_value()) << param->code;
    Compiled c{std::move(*path), {}};
    ASSERT_FALSE(param->components.empty()) << param->code;
    for (const SearchParameterComponent& component : param->components) {
      ASSERT_NE(component.parameter, nullptr) << param->code << " " << component.definition;
      auto e = fhirpath::FhirPath::compile(component.expression);
      ASSERT_TRUE(e.has_value()) << param->code << " " << component.expression;
      c.components.push_back(std::move(*e));
    }
    compiled.emplace(param->code, std::move(c));
  }

  std::vector<std::string> problems;
  int compared = 0, items = 0;
  for (const auto& [file, expected_by_param] : oracle->members()) {
    auto example = json::parse(test::read_file(std::filesystem::path(examples_dir) / file));
    ASSERT_TRUE(example.has_value()) << file;
    std::vector<std::string> failures;
    IndexValues rows = (*indexer)->extract(*example, &failures);
    for (const std::string& f : failures) problems.push_back(file + " indexer: " + f);
    for (const SearchParameter* param : composites) {
      const Compiled& c = compiled.at(param->code);
      const std::string where = file + " " + param->code + " (" + std::string(param->expression_for(type)) + ")";
      std::vector<std::vector<std::vector<json::Value>>> theirs;
      if (const json::Value* e = expected_by_param.find(param->code))
        for (const auto& tuple : e->items()) {
          std::vector<std::vector<json::Value>> components;
          for (const auto& values : tuple.items()) components.push_back(values.items());
          theirs.push_back(std::move(components));
        }
      ++compared;
      items += static_cast<int>(theirs.size());
      const bool known = known_differences().contains({file, param->code});
      bool agree = true;

      // 1. Our engine: the main expression, then each component's expression from each of its items.
      auto main = c.path.evaluate(*example, ctx);
      if (!main) {
        problems.push_back(where + ": evaluation failed: " + main.error().issues[0].diagnostics);
        continue;
      }
      std::vector<std::vector<std::vector<json::Value>>> ours;
      for (const Item& item : *main) {
        std::vector<std::vector<json::Value>> components;
        bool complete = true;
        for (std::size_t k = 0; k < c.components.size() && complete; ++k) {
          auto values = c.components[k].evaluate(item, *example, ctx);
          if (!values) {
            problems.push_back(where + " component " + param->components[k].expression +
                               ": evaluation failed: " + values.error().issues[0].diagnostics);
            complete = false;
            break;
          }
          std::vector<json::Value> js;
          for (const Item& v : *values)
            if (auto j = to_json(v)) js.push_back(std::move(*j));
          complete = !js.empty();
          components.push_back(std::move(js));
        }
        if (complete) ours.push_back(std::move(components));
      }
      bool same_items = ours.size() == theirs.size();
      for (std::size_t i = 0; same_items && i < ours.size(); ++i) {
        same_items = ours[i].size() == theirs[i].size();
        for (std::size_t k = 0; same_items && k < ours[i].size(); ++k)
          same_items = same_collection(ours[i][k], theirs[i][k]);
      }
      if (!same_items) {
        agree = false;
        if (!known)
          problems.push_back(where + ": FHIRPath items: ours " + show_items(ours) + ", reference " +
                             show_items(theirs));
      }

      // 2. Our indexer: its composite rows, grouped by item (in item order) and component, against the entries the
      // reference values stand for (an item some component of which gives no entry is not indexed).
      std::vector<KeyTuple> expected;
      for (const auto& tuple : theirs) {
        KeyTuple keys(tuple.size());
        bool complete = true;
        for (std::size_t k = 0; k < tuple.size(); ++k) {
          for (const auto& v : tuple[k]) expected_keys(param->components[k].parameter->type, v, keys[k]);
          std::sort(keys[k].begin(), keys[k].end());
          complete = complete && !keys[k].empty();
        }
        if (complete) expected.push_back(std::move(keys));
      }
      std::map<std::int64_t, KeyTuple> by_item;
      for (const CompositeIndex& row : rows.composites) {
        if (row.param != param->code) continue;
        KeyTuple& t = by_item[row.item];
        if (row.component < 0 || static_cast<std::size_t>(row.component) >= param->components.size()) {
          problems.push_back(where + ": row with component " + std::to_string(row.component));
          continue;
        }
        t.resize(param->components.size());
        t[row.component].push_back(row_key(param->components[row.component].parameter->type, row));
      }
      std::vector<KeyTuple> indexed;
      for (auto& [i, t] : by_item) {
        for (auto& keys : t) std::sort(keys.begin(), keys.end());
        indexed.push_back(std::move(t));
      }
      if (indexed != expected) {
        agree = false;
        if (!known)
          problems.push_back(where + ": index rows: ours " + show_tuples(indexed) + ", reference " +
                             show_tuples(expected));
      }
      if (known && agree) problems.push_back(where + " agrees now: take it off known_differences");
    }
  }
  EXPECT_GT(compared, 0);
  EXPECT_GT(items, 0);
  RecordProperty("composite_parameters", static_cast<int>(composites.size()));
  RecordProperty("evaluations", compared);
  RecordProperty("reference_items", items);
  std::string report;
  for (std::size_t i = 0; i < problems.size() && i < 40; ++i) report += "\n  " + problems[i];
  EXPECT_TRUE(problems.empty()) << problems.size() << " problems in " << compared << " (example, composite) of " << type
                                << ":" << report;
  std::printf("%s: %zu composite parameters, %d (example, parameter) evaluations, %d reference items\n", type.c_str(),
              composites.size(), compared, items);
}

INSTANTIATE_TEST_SUITE_P(Types, FhirPathOracle,
                         ::testing::Values("Patient", "Observation", "Appointment", "MedicationRequest", "Consent",
                                           "Encounter", "Condition", "DiagnosticReport", "Practitioner", "Location",
                                           "Schedule", "Slot"));

}  // namespace
}  // namespace caduceus::resources
