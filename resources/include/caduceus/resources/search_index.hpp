#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/fhirpath.hpp"
#include "caduceus/resources/search_parameters.hpp"

namespace caduceus::resources {

// The values of a resource's search parameters, typed as the index tables will keep them (search.html, "Search
// Parameter Types"). One row per value; a parameter may have many.

struct StringIndex {
  std::string param;
  std::string normalized;  // fhir::search::normalize_for_search of the value (prefix and :contains searches)
  std::string exact;       // the value as written (:exact)
};

struct TokenIndex {
  std::string param;
  std::optional<std::string> system;  // nullopt: the value has no system (a code, a string, a boolean)
  std::string code;                   // empty for a CodeableConcept's text alone
  std::string text;                   // normalized display / text, for :text
};

// The type of an Identifier (one row per Identifier.type.coding), for `identifier:of-type=system|code|value`.
struct IdentifierTypeIndex {
  std::string param;
  std::string type_system, type_code;  // the coding of Identifier.type
  std::string value;                   // Identifier.value
};

struct ReferenceIndex {
  std::string param;
  std::string type;     // target type ("Patient"), empty when unknown (a bare id, a URL that is not REST)
  std::string id;       // target id, or the whole URL/canonical when it is not a REST URL
  std::string version;  // _history version or canonical |version, if given
  std::string url;      // the absolute URL or canonical, if the reference is one
  std::string identifier_system, identifier_value;  // Reference.identifier (for :identifier)
};

// [low, high) in ms since the epoch; an open end is the lowest / highest int64.
struct DateIndex {
  std::string param;
  std::int64_t low_ms = std::numeric_limits<std::int64_t>::min();
  std::int64_t high_ms = std::numeric_limits<std::int64_t>::max();
};

// A number, or a quantity's value, as the range its precision stands for ("100" is [99.5, 100.5)).
struct NumberIndex {
  std::string param;
  double low = 0, high = 0;
  std::string value;  // the literal as written
};

struct QuantityIndex {
  std::string param;
  double low = 0, high = 0;
  std::string value;
  std::string system, code, unit;
};

struct UriIndex {
  std::string param;
  std::string uri;
};

// One component value of one item of a composite parameter (`code-value-quantity`: item 0 of an Observation has
// component 0 the code, component 1 the value). The columns that the component's type uses are set; the others
// are empty or 0.
struct CompositeIndex {
  std::string param;
  std::int64_t item = 0;
  std::int64_t component = 0;
  std::string system, code, text;           // token; quantity system and code
  std::string normalized, exact;            // string
  double low = 0, high = 0;                 // date (ms), number, quantity
  std::string unit, value;                  // quantity
  std::string target_type, target_id, url;  // reference
  std::string uri;
};

struct IndexValues;
// Moves the rows of `from` to the end of `to`.
void append_index(IndexValues& to, IndexValues&& from);
// Keeps only the rows of the parameters whose code `keep` accepts.
void filter_index(IndexValues& values, const std::function<bool(const std::string&)>& keep);
// Removes the rows of _id and _lastUpdated, which are not written: the resource row holds both, and search reads
// them there.
void leave_out_resource_row_values(IndexValues& values);

struct IndexValues {
  std::vector<StringIndex> strings;
  std::vector<TokenIndex> tokens;
  std::vector<ReferenceIndex> references;
  std::vector<DateIndex> dates;
  std::vector<NumberIndex> numbers;
  std::vector<QuantityIndex> quantities;
  std::vector<UriIndex> uris;
  std::vector<CompositeIndex> composites;
  std::vector<IdentifierTypeIndex> identifier_types;
  // Full text (_text, _content; see full_text.hpp): the narrative without its markup, and the text of the other string
  // and markdown elements.
  std::string narrative;
  std::string content;
};

// The top-level elements of a resource that a search parameter's expression reads, when it can tell: every `|`
// term is `Type.element` followed only by steps that give nothing from nothing (paths, indexers, as/is, where(),
// ofType(), resolve(), first(), extension(), ...). A resource that has none of them (nor a choice type of one:
// `value` stands for valueQuantity too) gives the expression no values. Empty when it cannot tell: a term of the
// resource itself, a function first, or a step such as exists(), empty(), iif(), `and` or `=` that may give a
// value from nothing.
std::vector<std::string> expression_roots(std::string_view expression);
// Whether the resource (a JSON object) has one of `roots` as a member, a choice type of one, or a primitive's
// `_element` of one.
bool has_any_root(const fhir::json::Value& resource, const std::vector<std::string>& roots);
// The same question asked of one resource for many parameters: its member names (without a primitive's `_`) are
// sorted once, and each root is looked up among them.
class ResourceMembers {
 public:
  explicit ResourceMembers(const fhir::json::Value& resource);
  bool has_any_root(const std::vector<std::string>& roots) const;

 private:
  std::vector<std::string_view> names_;  // sorted
};

// Extracts index values: every search parameter's FHIRPath expression (compiled once, at construction) applied
// to a resource, and each resulting item turned into rows by its FHIR type (for a composite, each item's components).
// Immutable and thread-safe. Special parameters are not extracted here; the text for _text and _content is.
class SearchIndexer {
 public:
  // Compiles the expressions of every parameter of every resource type (only those that `only` accepts, when
  // given). kInternal if one does not compile. The indexer points into `registry`: keep it alive as long.
  // kWritten: only the parameters some of whose rows the writer keeps, for a caller that leaves out the others'
  // (ActiveSearchParameters::extract): not one all of whose rows are its subsets' too (SearchParameter::
  // all_rows_shared: Observation combo-code, combo-code-value-quantity, ...; leave_out_shared_rows), nor _id and
  // _lastUpdated (the resource row holds them; leave_out_resource_row_values). The same rows in the end, without
  // computing these (the import of ten Synthea Bundles: 1,577 -> 1,484 M instructions for the combos).
  enum class Rows { kEvery, kWritten };
  static fhir::Result<std::shared_ptr<const SearchIndexer>> create(
      const Definitions& definitions, const SearchParameterRegistry& registry,
      const std::function<bool(const SearchParameter&)>& only = {}, Rows rows = Rows::kEvery);

  // The rows of one resource (its resourceType picks the parameters). An expression that fails at run time on
  // this resource contributes no rows, and is reported in `failures` if given.
  IndexValues extract(const fhir::json::Value& resource, std::vector<std::string>* failures = nullptr) const;

 private:
  struct Compiled {
    const SearchParameter* parameter;
    fhirpath::FhirPath path;
    std::vector<fhirpath::FhirPath> components;  // composites: each component's expression, from an item
    std::vector<std::string> roots;              // expression_roots(): empty when it cannot tell
  };
  SearchIndexer(const Definitions& definitions) : definitions_(definitions) {}
  void composite(const Compiled& c, const fhirpath::Item& resource, const fhirpath::EvalContext& ctx,
                 const fhirpath::Collection& items, IndexValues& out) const;

  const Definitions& definitions_;
  std::unordered_map<std::string, std::vector<Compiled>> by_type_;
  bool full_text_ = true;  // extract _text / _content (not in an indexer of some parameters only)
};

}  // namespace caduceus::resources
