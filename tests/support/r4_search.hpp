#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"

namespace caduceus::test {

// The R4 SearchParameters and an indexer over them, for the store and repository tests. A failure fails the test
// (call it through ASSERT_NO_FATAL_FAILURE).
inline void load_r4_search(const resources::Definitions& definitions,
                           std::shared_ptr<const resources::SearchParameterRegistry>& registry,
                           std::shared_ptr<const resources::SearchIndexer>& indexer) {
  auto loaded = resources::SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(loaded.has_value());
  registry = std::move(*loaded);
  auto created = resources::SearchIndexer::create(definitions, *registry);
  ASSERT_TRUE(created.has_value());
  indexer = std::move(*created);
}

}  // namespace caduceus::test
