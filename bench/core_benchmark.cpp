// Inner loops of the write and read paths: FHIR JSON parse and write, and the structural check, on the
// resources of a Synthea patient (bench/data/synthea-bundle.json).
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/fhirpath.hpp"
#include "caduceus/resources/full_text.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/resources/structure_checker.hpp"

namespace {

using namespace caduceus;

struct Corpus {
  std::string bundle;  // the file as written: indented with four spaces, as Synthea writes its Bundles
  std::vector<std::string> texts;
  std::vector<fhir::json::Value> values;
  std::size_t bytes = 0;
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus out;
    std::ifstream in(CADUCEUS_BENCH_DATA "/synthea-bundle.json");
    std::stringstream ss;
    ss << in.rdbuf();
    out.bundle = ss.str();
    auto bundle = fhir::json::parse(out.bundle);
    if (!bundle) std::abort();
    for (const auto& entry : bundle->find("entry")->items()) {
      const auto* resource = entry.find("resource");
      if (resource == nullptr) continue;
      out.texts.push_back(fhir::json::write(*resource));
      out.values.push_back(*resource);
      out.bytes += out.texts.back().size();
    }
    return out;
  }();
  return c;
}

void BM_ParseSyntheaResources(benchmark::State& state) {
  const Corpus& c = corpus();
  for (auto _ : state) {
    for (const auto& text : c.texts) {
      auto v = fhir::json::parse(text);
      benchmark::DoNotOptimize(v);
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.texts.size()));
}
BENCHMARK(BM_ParseSyntheaResources);

// The whole Bundle as Synthea writes it (what `caduceus import` parses): a fifth of its bytes is indentation.
void BM_ParseSyntheaBundleIndented(benchmark::State& state) {
  const Corpus& c = corpus();
  for (auto _ : state) {
    auto v = fhir::json::parse(c.bundle);
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bundle.size()));
}
BENCHMARK(BM_ParseSyntheaBundleIndented);

void BM_WriteSyntheaResources(benchmark::State& state) {
  const Corpus& c = corpus();
  std::string out;
  for (auto _ : state) {
    for (const auto& v : c.values) {
      out.clear();
      fhir::json::write_to(out, v);
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.values.size()));
}
BENCHMARK(BM_WriteSyntheaResources);

void BM_CheckStructureSyntheaResources(benchmark::State& state) {
  const Corpus& c = corpus();
  auto defs = resources::Definitions::load(conformance::r4_model_json());
  resources::StructureChecker checker(**defs);
  for (auto _ : state) {
    for (const auto& v : c.values) {
      auto issues = checker.check(v);
      benchmark::DoNotOptimize(issues);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.values.size()));
}
BENCHMARK(BM_CheckStructureSyntheaResources);

void BM_LoadDefinitions(benchmark::State& state) {
  for (auto _ : state) {
    auto defs = resources::Definitions::load(conformance::r4_model_json());
    benchmark::DoNotOptimize(defs);
  }
}
BENCHMARK(BM_LoadDefinitions)->Unit(benchmark::kMillisecond);

void BM_LoadSearchParameters(benchmark::State& state) {
  for (auto _ : state) {
    auto registry = resources::SearchParameterRegistry::load(conformance::r4_search_parameters_json(),
                                                             conformance::r4_compartments_json());
    benchmark::DoNotOptimize(registry);
  }
}
BENCHMARK(BM_LoadSearchParameters)->Unit(benchmark::kMillisecond);

// One compiled path over the first Synthea Patient: the engine's per-evaluation overhead.
void BM_FhirPathNavigate(benchmark::State& state) {
  const Corpus& c = corpus();
  auto defs = resources::Definitions::load(conformance::r4_model_json());
  auto compiled = resources::fhirpath::FhirPath::compile("Patient.name.family");
  if (!defs || !compiled) std::abort();
  const fhir::json::Value* patient = nullptr;
  for (const auto& v : c.values)
    if (const auto* t = v.find("resourceType"); t != nullptr && t->is_string() && t->text() == "Patient") {
      patient = &v;
      break;
    }
  if (patient == nullptr) std::abort();
  resources::fhirpath::EvalContext ctx;
  ctx.definitions = defs->get();
  for (auto _ : state) {
    auto result = compiled->evaluate(*patient, ctx);
    benchmark::DoNotOptimize(result);
  }
}
BENCHMARK(BM_FhirPathNavigate);

// Search index extraction (every parameter's FHIRPath, values typed as the index keeps them): the extra work
// that indexing adds to each write.
void BM_ExtractSearchIndexSyntheaResources(benchmark::State& state) {
  const Corpus& c = corpus();
  auto defs = resources::Definitions::load(conformance::r4_model_json());
  auto registry = resources::SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  auto indexer = resources::SearchIndexer::create(**defs, **registry);
  if (!indexer) std::abort();
  for (auto _ : state) {
    for (const auto& v : c.values) {
      auto rows = (*indexer)->extract(v);
      benchmark::DoNotOptimize(rows);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.values.size()));
}
BENCHMARK(BM_ExtractSearchIndexSyntheaResources);

// The text for _text and _content alone (one walk of the JSON, narrative markup removed): part of the extraction
// above.
void BM_ExtractFullTextSyntheaResources(benchmark::State& state) {
  const Corpus& c = corpus();
  auto defs = resources::Definitions::load(conformance::r4_model_json());
  if (!defs) std::abort();
  std::size_t bytes = 0;
  for (auto _ : state) {
    for (const auto& v : c.values) {
      std::string narrative, content;
      resources::extract_full_text(v, **defs, narrative, content);
      bytes += narrative.size() + content.size();
      benchmark::DoNotOptimize(narrative);
      benchmark::DoNotOptimize(content);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.values.size()));
  state.counters["text_bytes_per_resource"] =
      static_cast<double>(bytes) / static_cast<double>(state.iterations() * c.values.size());
}
BENCHMARK(BM_ExtractFullTextSyntheaResources);

// A read by id from the SQLite store (a throwaway database of Synthea resources): the database part of GET.
// Argument 0: every read goes to SQLite (no cache of current versions); 1: with the cache, as the server runs.
void BM_StoreReadById(benchmark::State& state) {
  const Corpus& c = corpus();
  auto defs = resources::Definitions::load(conformance::r4_model_json());
  resources::StructureChecker checker(**defs);
  resources::StoreOptions options;
  if (state.range(0) == 0) options.cache_bytes = 0;
  auto store = resources::open_store("sqlite::memory:", options);
  if (!store) std::abort();
  resources::Repository repo(**store, **defs, checker);
  std::vector<std::pair<std::string, std::string>> keys;
  for (const auto& v : c.values) {
    auto out = repo.create(resources::kDefaultTenant, v.find("resourceType")->text(), v);
    if (out) keys.emplace_back(out->record.type, out->record.id);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& [type, id] = keys[i++ % keys.size()];
    auto r = (*store)->read(resources::kDefaultTenant, type, id);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_StoreReadById)->Arg(0)->Arg(1);

// A write (create, checked and indexed) to the SQLite store, search index on, as the server runs with
// --search-index true: each iteration writes one resource of the corpus as a new resource. CPU time is the
// process's (the writer thread does the inserts); real time includes waiting for the commit.
void BM_StoreCreateIndexed(benchmark::State& state) {
  const Corpus& c = corpus();
  auto defs = resources::Definitions::load(conformance::r4_model_json());
  auto registry = resources::SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  auto indexer = resources::SearchIndexer::create(**defs, **registry);
  if (!indexer) std::abort();
  resources::StructureChecker checker(**defs);
  auto store = resources::open_store("sqlite::memory:");
  if (!store) std::abort();
  resources::Repository repo(**store, **defs, checker, indexer->get());
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& v = c.values[i++ % c.values.size()];
    auto out = repo.create(resources::kDefaultTenant, v.find("resourceType")->text(), v);
    if (!out) std::abort();
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_StoreCreateIndexed)->Unit(benchmark::kMicrosecond)->MeasureProcessCPUTime();

}  // namespace

BENCHMARK_MAIN();
