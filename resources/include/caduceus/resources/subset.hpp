#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_query.hpp"

namespace caduceus::resources {

// A resource's JSON reduced as `_summary` or `_elements` ask (search.html#summary, #elements), at the top level
// of the resource, and marked with the SUBSETTED tag in meta.tag:
// - Summary::kTrue: the elements its definition marks isSummary;
// - Summary::kText: text, plus the mandatory elements;
// - Summary::kData: everything but text;
// - `elements` (when not empty): those elements, plus the mandatory ones.
// id and meta are always kept. Returns `json` unchanged when nothing is asked (kFalse or kCount, no elements), or
// when it does not parse as a known resource.
std::string subset_resource(std::string_view json, const Definitions& definitions, Summary summary,
                            const std::vector<std::string>& elements);

}  // namespace caduceus::resources
