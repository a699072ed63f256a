#pragma once

#include <string_view>

#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"

namespace caduceus::resources {

// Leaves out of `values` (the index rows of a resource of `resource_type`) the rows of a parameter that one of its
// SearchParameter::subsets holds too, the parameter aside (a composite: whole items, whatever their item number).
// Observation combo-code is `code | component.code`: its rows are those of code and component-code, and are not
// written again; a search on combo-code reads the rows of all three parameters (search_sql.cpp). Reference and
// identifier-type rows are kept as they are. Also left out: the row of a CodeableConcept's text alone when a coding
// of the same parameter has that text (its display), and, in a composite, the text-only row of a component that
// has a coded row (composites never match by text).
void leave_out_shared_rows(IndexValues& values, std::string_view resource_type,
                           const SearchParameterRegistry& registry);

}  // namespace caduceus::resources
