#include "caduceus/server/router.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <span>
#include <thread>
#include <variant>

#include "access_guard.hpp"
#include "bundle.hpp"
#include "caduceus/fhir/datetime.hpp"
#include "caduceus/fhir/json_patch.hpp"
#include "caduceus/fhir/outcome.hpp"
#include "caduceus/fhir/thread_name.hpp"
#include "caduceus/resources/access_guarded_store.hpp"
#include "caduceus/resources/fhirpath_patch.hpp"
#include "caduceus/resources/full_text.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/subset.hpp"
#include "caduceus/server/errors.hpp"
#include "release_memory.hpp"
#include "url.hpp"

namespace caduceus::server {

// A fixed set of threads running posted tasks in order of arrival; on destruction it runs what is queued, then
// joins.
class Router::WorkerPool {
 public:
  explicit WorkerPool(std::size_t threads) {
    for (std::size_t i = 0; i < threads; ++i)
      threads_.emplace_back([this] {
        name_this_thread("cad-work");
        run();
      });
  }
  ~WorkerPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Bundles in flight at once (each waits for its commit; together they share commits).
constexpr std::size_t kBundleWorkers = 16;

using fhir::ErrorKind;
namespace json = fhir::json;
using resources::kDefaultTenant;
using resources::VersionRecord;

namespace {

constexpr std::string_view kFhirBase = "/fhir";

// What the client asked the response to look like.
struct Format {
  std::string content_type = "application/fhir+json; charset=utf-8";
  bool pretty = false;
};

enum class Prefer { kRepresentation, kMinimal, kOperationOutcome };

bool is_json_media(std::string_view media) {
  // media without parameters, lower case
  return media == "application/fhir+json" || media == "application/json" || media == "json" ||
         media == "application/json+fhir" || media == "text/json";
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string media_type_of(std::string_view header_value) {
  return lower(trim(header_value.substr(0, header_value.find(';'))));
}

// Works out the response format from _format, Accept and _pretty. Error: 406.
fhir::Result<Format> negotiate(const Request& req, const QueryParams& params) {
  Format f;
  if (const std::string* pretty = find_param(params, "_pretty")) f.pretty = *pretty == "true";
  if (const std::string* fmt = find_param(params, "_format")) {
    std::string media = media_type_of(*fmt);
    if (!is_json_media(media))
      return fhir::fail(
          ErrorKind::kNotAcceptable, "not-supported",
          "_format '" + *fmt + "' is not supported: this server speaks JSON only (application/fhir+json)");
    if (media == "application/json") f.content_type = "application/json; charset=utf-8";
    return f;
  }
  std::string_view accept = req.header("accept");
  if (accept.empty()) return f;
  bool fhir_json = false, plain_json = false, any = false;
  while (!accept.empty()) {
    auto comma = accept.find(',');
    std::string media = media_type_of(accept.substr(0, comma));
    accept = comma == std::string_view::npos ? std::string_view{} : accept.substr(comma + 1);
    if (media == "application/fhir+json" || media == "application/json+fhir")
      fhir_json = true;
    else if (media == "application/json" || media == "text/json")
      plain_json = true;
    else if (media == "*/*" || media == "application/*")
      any = true;
  }
  if (fhir_json || any) return f;
  if (plain_json) {
    f.content_type = "application/json; charset=utf-8";
    return f;
  }
  return fhir::fail(ErrorKind::kNotAcceptable, "not-supported",
                    "None of the media types in Accept can be produced: this server speaks JSON only "
                    "(application/fhir+json)");
}

Prefer prefer_of(const Request& req) {
  std::string_view p = req.header("prefer");
  if (p.find("return=minimal") != std::string_view::npos) return Prefer::kMinimal;
  if (p.find("return=OperationOutcome") != std::string_view::npos) return Prefer::kOperationOutcome;
  return Prefer::kRepresentation;
}

std::string etag(std::int64_t version) {
  return "W/\"" + std::to_string(version) + "\"";
}

// Reads a version from an ETag (W/"3", "3" or 3). nullopt when it is not one.
std::optional<std::int64_t> version_of_etag(std::string_view tag) {
  tag = trim(tag);
  if (tag.starts_with("W/")) tag.remove_prefix(2);
  if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"') tag = tag.substr(1, tag.size() - 2);
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(tag.data(), tag.data() + tag.size(), v);
  if (ec != std::errc() || ptr != tag.data() + tag.size() || v < 1) return std::nullopt;
  return v;
}

std::optional<std::int64_t> positive_int(std::string_view s) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    auto slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash);
  }
  return segments;
}

Response json_response(int status, std::string body, const Format& format) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", format.content_type);
  r.body = format.pretty ? json::reformat(body, true) : std::move(body);
  return r;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "?a=1&b=2" from the parameters that `keep` accepts, percent-encoded again ("" when none).
template <class Keep>
std::string query_string(const QueryParams& params, Keep&& keep) {
  std::string out;
  for (const auto& [name, value] : params) {
    if (!keep(name)) continue;
    out += (out.empty() ? "?" : "&") + percent_encode(name) + "=" + percent_encode(value);
  }
  return out;
}

// The start of a Bundle, written as text so that stored bodies can be spliced in without being parsed again: id,
// meta, type, total (if known) and the self and next (if any) links. The caller appends ",\"entry\":[...]" and "}".
std::string bundle_head(std::string_view type, std::optional<std::int64_t> total, const std::string& self_link,
                        const std::string& next_link, std::size_t entries) {
  std::string b;
  b.reserve(256 + entries * 512);
  b += "{\"resourceType\":\"Bundle\",\"id\":";
  json::append_quoted(b, resources::new_resource_id());
  b += ",\"meta\":{\"lastUpdated\":";
  json::append_quoted(b, fhir::format_instant(now_ms()));
  b += "},\"type\":";
  json::append_quoted(b, type);
  if (total) b += ",\"total\":" + std::to_string(*total);
  b += ",\"link\":[{\"relation\":\"self\",\"url\":";
  json::append_quoted(b, self_link);
  b += "}";
  if (!next_link.empty()) {
    b += ",{\"relation\":\"next\",\"url\":";
    json::append_quoted(b, next_link);
    b += "}";
  }
  b += "]";
  return b;
}

Response with_interaction(Response r, std::string interaction) {
  r.interaction = std::move(interaction);
  return r;
}

Response method_not_allowed(std::string_view method, std::string_view path, std::string allow) {
  Response r = error_response(
      ErrorKind::kMethodNotAllowed, "not-supported",
      "Method " + std::string(method) + " is not allowed on " + std::string(path) + " (allowed: " + allow + ")");
  r.headers.emplace_back("Allow", std::move(allow));
  return r;
}

// Reads a request body as a FHIR JSON resource: Content-Type must be JSON; errors 415 and 400.
fhir::Result<json::Value> read_body(const Request& req) {
  std::string_view ct = req.header("content-type");
  if (!ct.empty()) {
    std::string media = media_type_of(ct);
    if (!is_json_media(media))
      return fhir::fail(ErrorKind::kUnsupportedMediaType, "not-supported",
                        "Content-Type '" + std::string(ct) +
                            "' is not supported: send application/fhir+json (this server reads JSON only)");
  }
  if (req.body.empty())
    return fhir::fail(ErrorKind::kInvalid, "required", "The request has no body; a resource is expected");
  auto parsed = json::parse(req.body);
  if (!parsed) return parsed;
  if (!parsed->is_object())
    return fhir::fail(ErrorKind::kInvalid, "structure", "The body is not a FHIR resource (a JSON object is expected)");
  return parsed;
}

// The modifiers that the search really serves for a parameter type, for searchParam.documentation (an R4
// CapabilityStatement has no element for them).
std::string modifiers_documentation(resources::SearchParamType type) {
  using T = resources::SearchParamType;
  switch (type) {
    case T::kString: return "Modifiers: :missing, :exact, :contains";
    case T::kToken: return "Modifiers: :missing, :not, :text";
    case T::kReference: return "Modifiers: :missing, :identifier, :[type] (e.g. :Patient); chains (param.param)";
    case T::kUri: return "Modifiers: :missing, :above, :below, :contains";
    case T::kDate:
    case T::kNumber:
    case T::kQuantity:
    case T::kComposite: return "Modifiers: :missing";
    case T::kSpecial: return {};
  }
  return {};
}

std::string capability_statement(const resources::Definitions& defs, const RouterOptions& options,
                                 const resources::SearchParameterRegistry* search) {
  // _revinclude values per referenced type: "Observation:subject" for Patient, ... (every reference parameter
  // of every type that can refer to it, as _revinclude follows them).
  std::map<std::string, std::vector<std::string>> revincludes;
  if (search != nullptr) {
    for (const resources::SearchParameter& p : search->all()) {
      if (p.type != resources::SearchParamType::kReference) continue;
      for (const std::string& source : p.base) {
        if (!defs.is_resource_type(source) || p.expression_for(source).empty()) continue;
        for (const std::string& target : p.target) revincludes[target].push_back(source + ":" + p.code);
      }
    }
    for (auto& [target, values] : revincludes) {
      std::sort(values.begin(), values.end());
      values.erase(std::unique(values.begin(), values.end()), values.end());
    }
  }
  json::Value cs = json::Value::object();
  auto str = [](std::string s) { return json::Value::string(std::move(s)); };
  cs.set("resourceType", str("CapabilityStatement"));
  cs.set("status", str("active"));
  cs.set("date", str(fhir::format_instant(now_ms()).substr(0, 10)));
  cs.set("publisher", str("Caduceus"));
  cs.set("kind", str("instance"));
  json::Value software = json::Value::object();
  software.set("name", str("Caduceus"));
  software.set("version", str(options.software_version));
  cs.set("software", std::move(software));
  json::Value impl = json::Value::object();
  impl.set("description", str("Caduceus FHIR R4 server"));
  impl.set("url", str(options.base_url));
  cs.set("implementation", std::move(impl));
  cs.set("fhirVersion", str("4.0.1"));
  json::Value formats = json::Value::array();
  formats.push_back(str("application/fhir+json"));
  formats.push_back(str("json"));
  cs.set("format", std::move(formats));
  json::Value patch_formats = json::Value::array();  // JSON Patch, and FHIRPath Patch (a Parameters)
  patch_formats.push_back(str("application/json-patch+json"));
  patch_formats.push_back(str("application/fhir+json"));
  cs.set("patchFormat", std::move(patch_formats));
  json::Value rest = json::Value::object();
  rest.set("mode", str("server"));
  if (options.rest_security) rest.set("security", options.rest_security(options.base_url));
  json::Value resources = json::Value::array();
  static constexpr std::string_view kTypeInteractions[] = {
      "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"};
  for (const std::string& type : defs.resource_types()) {
    json::Value r = json::Value::object();
    r.set("type", str(type));
    r.set("profile", str("http://hl7.org/fhir/StructureDefinition/" + type));
    json::Value interactions = json::Value::array();
    for (std::string_view code : kTypeInteractions) {
      json::Value i = json::Value::object();
      i.set("code", str(std::string(code)));
      interactions.push_back(std::move(i));
    }
    if (search != nullptr) {
      json::Value i = json::Value::object();
      i.set("code", str("search-type"));
      interactions.push_back(std::move(i));
    }
    r.set("interaction", std::move(interactions));
    if (search != nullptr) {
      // The parameters the search really serves (special ones answer 501 so far).
      json::Value params = json::Value::array();
      json::Value includes = json::Value::array();
      includes.push_back(str("*"));
      for (const resources::SearchParameter* p : search->for_type(type)) {
        if (p->type == resources::SearchParamType::kSpecial) continue;
        // _text and _content have no expression: the full-text index serves them.
        if (p->expression_for(type).empty() && !resources::is_full_text(*p)) continue;
        json::Value sp = json::Value::object();
        sp.set("name", str(p->code));
        if (!p->url.empty()) sp.set("definition", str(p->url));
        sp.set("type", str(std::string(resources::to_string(p->type))));
        if (std::string doc = modifiers_documentation(p->type); !doc.empty()) sp.set("documentation", str(doc));
        params.push_back(std::move(sp));
        if (p->type == resources::SearchParamType::kReference) includes.push_back(str(type + ":" + p->code));
      }
      r.set("searchInclude", std::move(includes));
      json::Value revs = json::Value::array();
      revs.push_back(str("*"));
      if (auto it = revincludes.find(type); it != revincludes.end())
        for (const std::string& v : it->second) revs.push_back(str(v));
      r.set("searchRevInclude", std::move(revs));
      r.set("searchParam", std::move(params));
    }
    r.set("versioning", str("versioned-update"));
    r.set("readHistory", json::Value::boolean(true));
    r.set("updateCreate", json::Value::boolean(true));
    // Conditional writes evaluate their criteria with the search, so they need it.
    r.set("conditionalCreate", json::Value::boolean(search != nullptr));
    r.set("conditionalRead", str("full-support"));
    r.set("conditionalUpdate", json::Value::boolean(search != nullptr));
    r.set("conditionalDelete", str(search == nullptr                    ? "not-supported"
                                   : options.max_conditional_delete > 1 ? "multiple"
                                                                        : "single"));
    resources.push_back(std::move(r));
  }
  rest.set("resource", std::move(resources));
  json::Value sys = json::Value::array();
  for (std::string_view code : {"transaction", "batch"}) {
    json::Value i = json::Value::object();
    i.set("code", str(std::string(code)));
    sys.push_back(std::move(i));
  }
  json::Value hs = json::Value::object();
  hs.set("code", str("history-system"));
  sys.push_back(std::move(hs));
  if (search != nullptr) {
    json::Value ss = json::Value::object();
    ss.set("code", str("search-system"));
    sys.push_back(std::move(ss));
  }
  rest.set("interaction", std::move(sys));
  if (search != nullptr) {
    // The parameters of a search without _type: those of every resource.
    json::Value common = json::Value::array();
    for (const resources::SearchParameter* p : search->for_type("Resource")) {
      if (p->type == resources::SearchParamType::kSpecial || p->expression_for("Resource").empty()) continue;
      json::Value sp = json::Value::object();
      sp.set("name", str(p->code));
      if (!p->url.empty()) sp.set("definition", str(p->url));
      sp.set("type", str(std::string(resources::to_string(p->type))));
      if (std::string doc = modifiers_documentation(p->type); !doc.empty()) sp.set("documentation", str(doc));
      common.push_back(std::move(sp));
    }
    rest.set("searchParam", std::move(common));
    // Compartment search: [base]/Patient/123/Observation.
    json::Value compartments = json::Value::array();
    for (std::string_view c : {"Device", "Encounter", "Patient", "Practitioner", "RelatedPerson"})
      if (!search->compartment_types(c).empty())
        compartments.push_back(str("http://hl7.org/fhir/CompartmentDefinition/" + lower(c)));
    if (!compartments.items().empty()) rest.set("compartment", std::move(compartments));
  }
  json::Value rests = json::Value::array();
  rests.push_back(std::move(rest));
  cs.set("rest", std::move(rests));
  return json::write(cs);
}

// The query plan of a search (Store::explain) as a Parameters resource: the search, the notes, and one
// `statement` per SQL statement with its role, SQL, bound values, EXPLAIN QUERY PLAN rows, indexes and row figures.
std::string plan_parameters(const resources::SearchPlan& plan, const std::string& search_url) {
  auto str = [](std::string s) { return json::Value::string(std::move(s)); };
  auto integer = [](std::int64_t v) {
    // valueInteger is 32-bit in FHIR: larger figures go as valueDecimal.
    bool fits = v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max();
    return std::pair<const char*, json::Value>(fits ? "valueInteger" : "valueDecimal",
                                               json::Value::number(std::to_string(v)));
  };
  auto param = [](std::string name, const char* value_key, json::Value value) {
    json::Value p = json::Value::object();
    p.set("name", json::Value::string(std::move(name)));
    p.set(value_key, std::move(value));
    return p;
  };
  auto int_param = [&](std::string name, std::int64_t v) {
    auto [key, value] = integer(v);
    return param(std::move(name), key, std::move(value));
  };
  auto group = [](std::string name, json::Value parts) {
    json::Value p = json::Value::object();
    p.set("name", json::Value::string(std::move(name)));
    p.set("part", std::move(parts));
    return p;
  };
  json::Value params = json::Value::array();
  params.push_back(param("search", "valueString", str(search_url)));
  for (const std::string& note : plan.notes) params.push_back(param("note", "valueString", str(note)));
  for (const resources::StatementPlan& st : plan.statements) {
    json::Value parts = json::Value::array();
    parts.push_back(param("role", "valueCode", str(st.role)));
    if (!st.description.empty()) parts.push_back(param("description", "valueString", str(st.description)));
    parts.push_back(param("runs", "valueBoolean", json::Value::boolean(st.runs)));
    parts.push_back(param("sql", "valueString", str(st.sql)));
    for (std::size_t i = 0; i < st.binds.size(); ++i) {
      json::Value bind = json::Value::array();
      bind.push_back(int_param("position", static_cast<std::int64_t>(i + 1)));
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::int64_t>) {
              bind.push_back(param("type", "valueCode", str("integer")));
              bind.push_back(int_param("value", v));
            } else if constexpr (std::is_same_v<T, double>) {
              bind.push_back(param("type", "valueCode", str("real")));
              char buf[64];
              auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
              std::string literal(buf, end);
              if (ec == std::errc() && std::isfinite(v))
                bind.push_back(param("value", "valueDecimal", json::Value::number(literal)));
            } else {
              bind.push_back(param("type", "valueCode", str("text")));
              if (!v.empty()) bind.push_back(param("value", "valueString", str(v)));  // FHIR strings are not empty
            }
          },
          st.binds[i]);
      parts.push_back(group("bind", std::move(bind)));
    }
    for (const resources::PlanStep& step : st.steps) {
      json::Value row = json::Value::array();
      row.push_back(int_param("id", step.id));
      row.push_back(int_param("parent", step.parent));
      row.push_back(param("detail", "valueString", str(step.detail)));
      parts.push_back(group("step", std::move(row)));
    }
    for (const std::string& index : st.indexes) parts.push_back(param("index", "valueString", str(index)));
    if (st.rows) {
      json::Value rows = json::Value::array();
      rows.push_back(int_param("count", *st.rows));
      rows.push_back(param("atLeast", "valueBoolean", json::Value::boolean(st.rows_bounded)));
      rows.push_back(param("method", "valueString", str(st.rows_method)));
      if (st.estimated_rows) rows.push_back(int_param("estimate", *st.estimated_rows));
      parts.push_back(group("rows", std::move(rows)));
    }
    for (const auto& [index, stat] : st.statistics) {
      json::Value s = json::Value::array();
      s.push_back(param("index", "valueString", str(index)));
      s.push_back(param("sqlite_stat1", "valueString", str(stat)));
      parts.push_back(group("statistics", std::move(s)));
    }
    params.push_back(group("statement", std::move(parts)));
  }
  json::Value out = json::Value::object();
  out.set("resourceType", str("Parameters"));
  out.set("id", str(resources::new_resource_id()));
  out.set("parameter", std::move(params));
  return json::write(out);
}

}  // namespace

// What a write's answer needs once the write is durable: copied, so that it outlives the request.
struct Reply {
  Format format;
  Prefer prefer;
  std::string base;

  std::string location(const VersionRecord& v) const {
    return base + "/" + v.type + "/" + v.id + "/_history/" + std::to_string(v.version);
  }

  // The answer to a successful write, as Prefer asks.
  Response written(int status, const VersionRecord& v, bool with_location) const {
    Response r;
    switch (prefer) {
      case Prefer::kMinimal: r.status = status; break;
      case Prefer::kOperationOutcome:
        r = json_response(status,
                          fhir::information_outcome_json(std::string(status == 201 ? "Created " : "Updated ") + v.type +
                                                         "/" + v.id + " version " + std::to_string(v.version)),
                          format);
        break;
      case Prefer::kRepresentation: r = json_response(status, v.body, format); break;
    }
    r.headers.emplace_back("ETag", etag(v.version));
    r.headers.emplace_back("Last-Modified", fhir::format_http_date(v.last_updated_ms));
    r.headers.emplace_back(with_location ? "Location" : "Content-Location", location(v));
    return r;
  }
};

struct Router::Impl {
  const Router& self;
  const Request& req;
  QueryParams params;
  Format format;
  const Completion* done = nullptr;  // where asynchronous writes answer

  resources::Repository& repo() const { return self.repository_; }
  // The repository the request's writes go through: for a token whose access is filtered, one whose write jobs
  // keep every write inside what the token may touch (access_guarded_store.hpp; it lives until they are done).
  mutable std::optional<std::shared_ptr<resources::AccessGuardedStore>> guarded;
  std::shared_ptr<resources::AccessGuardedStore> guarded_writes() const {
    if (!guarded) {
      guarded.emplace();
      if (self.authorizer_ != nullptr) {
        resources::WriteAccess a{access('c'), access('u'), access('d'), access('s'), self.search_parameters()};
        if (a.restricted()) *guarded = resources::AccessGuardedStore::make(repo().store(), std::move(a), repo());
      }
    }
    return *guarded;
  }
  resources::Repository& writer() const {
    auto g = guarded_writes();
    return g ? g->repository() : repo();
  }
  const std::string& base() const { return self.options_.base_url; }

  // The request's access filter for a permission letter (authorizer.hpp); nullptr: everything is visible.
  std::shared_ptr<const resources::AccessFilter> access(char permission) const {
    return self.authorizer_ != nullptr ? self.authorizer_->access(req, permission) : nullptr;
  }
  // 403 when the access filter hides type/id (access_guard.hpp).
  std::optional<Response> hidden(std::string_view type, std::string_view id, char permission,
                                 bool deleted_hides) const {
    if (self.authorizer_ == nullptr) return std::nullopt;
    return refuse_hidden(repo().store(), kDefaultTenant, self.search_parameters(), access(permission), type, id,
                         deleted_hides);
  }

  static void add_version_headers(Response& r, const VersionRecord& v) {
    r.headers.emplace_back("ETag", etag(v.version));
    r.headers.emplace_back("Last-Modified", fhir::format_http_date(v.last_updated_ms));
  }

  std::string location(const VersionRecord& v) const {
    return base() + "/" + v.type + "/" + v.id + "/_history/" + std::to_string(v.version);
  }

  // The quoted fullUrl of an entry ("base/type/id"), put together in a per-thread buffer.
  void append_full_url(std::string& out, const VersionRecord& v) const {
    thread_local std::string url;
    url.assign(base());
    url += '/';
    url += v.type;
    url += '/';
    url += v.id;
    json::append_quoted(out, url);
  }

  Response resource_response(int status, const VersionRecord& v) const {
    Response r = json_response(status, v.body, format);
    add_version_headers(r, v);
    return r;
  }

  Reply reply() const { return Reply{format, prefer_of(req), base()}; }

  // The reindexer that a write of `type` must tell (SearchParameter writes, when custom parameters are on).
  resources::Reindexer* custom_parameters(std::string_view type) const {
    return type == "SearchParameter" ? self.reindexer_ : nullptr;
  }

  // The answer to a read once the store has the current version (or not): 410 for a deletion, 304 when the
  // client's If-None-Match or If-Modified-Since says it has it, else the resource. Holds copies of what it needs
  // of the request, so that it can answer on another thread after the request is gone.
  struct ReadAnswer {
    Format format;
    std::string type, id, if_none_match, if_modified_since;

    Response operator()(fhir::Result<VersionRecord> v) const {
      if (!v) return with_interaction(error_response(v.error()), "read");
      if (v->deleted) {
        Response r =
            error_response(ErrorKind::kGone, "deleted",
                           "Resource " + type + "/" + id + " was deleted (version " + std::to_string(v->version) + ")");
        add_version_headers(r, *v);
        return with_interaction(std::move(r), "read");
      }
      if (std::string_view inm = if_none_match; !inm.empty()) {
        bool match = trim(inm) == "*";
        while (!match && !inm.empty()) {
          auto comma = inm.find(',');
          if (version_of_etag(inm.substr(0, comma)) == v->version) match = true;
          inm = comma == std::string_view::npos ? std::string_view{} : inm.substr(comma + 1);
        }
        if (match) return not_modified(*v);
      } else if (!if_modified_since.empty()) {
        if (auto since = fhir::parse_http_date(trim(if_modified_since));
            since && (v->last_updated_ms / 1000) * 1000 <= *since)
          return not_modified(*v);
      }
      Response r = json_response(200, v->body, format);
      add_version_headers(r, *v);
      return with_interaction(std::move(r), "read");
    }
    static Response not_modified(const VersionRecord& v) {
      Response r;
      r.status = 304;
      add_version_headers(r, v);
      return with_interaction(std::move(r), "read");
    }
  };

  // A read: answered here, or (nullopt) through `done` once a store that gathers reads has the version.
  std::optional<Response> read(std::string_view type, std::string_view id) const {
    if (!resources::is_valid_id(id))
      return with_interaction(
          error_response(ErrorKind::kNotFound, "not-found",
                         "'" + std::string(id) + "' is not a valid resource id, so no resource has it"),
          "read");
    if (auto refused = hidden(type, id, 'r', false)) return with_interaction(std::move(*refused), "read");
    ReadAnswer answer{format, std::string(type), std::string(id), std::string(req.header("if-none-match")),
                      std::string(req.header("if-modified-since"))};
    resources::Store& store = repo().store();
    if (done != nullptr && store.reads_async()) {
      store.read_async(kDefaultTenant, type, id,
                       [answer = std::move(answer), done = *done](fhir::Result<VersionRecord> v) mutable {
                         done(answer(std::move(v)));
                       });
      return std::nullopt;
    }
    return answer(store.read(kDefaultTenant, type, id));
  }

  Response vread(std::string_view type, std::string_view id, std::string_view vid) const {
    auto version = positive_int(vid);
    if (!resources::is_valid_id(id) || !version)
      return error_response(
          ErrorKind::kNotFound, "not-found",
          "Version '" + std::string(vid) + "' of " + std::string(type) + "/" + std::string(id) + " is not known");
    if (auto refused = hidden(type, id, 'r', true)) return *refused;
    auto v = repo().store().vread(kDefaultTenant, type, id, *version);
    if (!v) return error_response(v.error());
    if (v->deleted) {
      Response r = error_response(ErrorKind::kGone, "deleted",
                                  "Version " + std::to_string(v->version) + " of " + std::string(type) + "/" +
                                      std::string(id) + " is a deletion");
      add_version_headers(r, *v);
      return r;
    }
    return resource_response(200, *v);
  }

  // If-Match: nullopt when absent; an error when present but not a version we could ever have.
  fhir::Result<std::optional<std::int64_t>> if_match() const {
    std::string_view im = req.header("if-match");
    if (im.empty()) return std::optional<std::int64_t>{};
    auto v = version_of_etag(im);
    if (!v)
      return fhir::fail(ErrorKind::kPreconditionFailed, "conflict",
                        "If-Match '" + std::string(im) + "' is not a version of this resource (expected W/\"n\")");
    return std::optional<std::int64_t>{*v};
  }

  // What answers a create or update once it is durable: the written version with 201 when it created the resource
  // (always, for a plain create) or 200, its Location (always, or when created), and X-Reindex-Job when it wrote an
  // active SearchParameter (for a conditional create, only when it did write).
  struct WriteAnswer {
    bool always_201 = false;
    bool always_location = false;
    bool reindex_only_if_created = false;
  };
  std::function<void(fhir::Result<resources::WriteOutcome>)> answer_write(std::string_view type,
                                                                          std::string interaction,
                                                                          WriteAnswer how) const {
    return [reply = reply(), done = *done, reindexer = custom_parameters(type), jobs = base() + "/$reindex/",
            interaction = std::move(interaction), how](fhir::Result<resources::WriteOutcome> out) {
      if (!out) return done(with_interaction(error_response(out.error()), interaction));
      Response r =
          reply.written(how.always_201 || out->created ? 201 : 200, out->record, how.always_location || out->created);
      if (reindexer != nullptr && (out->created || !how.reindex_only_if_created))
        if (auto job = reindexer->parameter_written(out->record))
          r.headers.emplace_back("X-Reindex-Job", jobs + std::to_string(*job));
      done(with_interaction(std::move(r), interaction));
    };
  }

  // The three writes answer through `done` once durable; they return a response only when they refuse the
  // request before writing.
  std::optional<Response> create(std::string_view type) const {
    auto body = read_body(req);
    if (!body) return error_response(body.error());
    if (auto refused = check_search_parameter(type, *body, {})) return refused;
    writer().create_async(kDefaultTenant, type, std::move(*body),
                          answer_write(type, "create", {.always_201 = true, .always_location = true}));
    return std::nullopt;
  }

  std::optional<Response> update(std::string_view type, std::string_view id) const {
    if (!resources::is_valid_id(id))
      return error_response(ErrorKind::kInvalid, "invalid",
                            "'" + std::string(id) + "' is not a valid resource id ([A-Za-z0-9-.]{1,64})",
                            std::string(type) + ".id");
    auto body = read_body(req);
    if (!body) return error_response(body.error());
    auto im = if_match();
    if (!im) return error_response(im.error());
    if (auto refused = check_search_parameter(type, *body, id)) return refused;
    if (auto refused = hidden(type, id, 'u', false)) return refused;
    writer().update_async(kDefaultTenant, type, id, std::move(*body), *im, true, answer_write(type, "update", {}));
    return std::nullopt;
  }

  std::optional<Response> remove(std::string_view type, std::string_view id) const {
    if (!resources::is_valid_id(id))
      return error_response(ErrorKind::kNotFound, "not-found",
                            "'" + std::string(id) + "' is not a valid resource id, so no resource has it");
    auto im = if_match();
    if (!im) return error_response(im.error());
    if (auto refused = hidden(type, id, 'd', false)) return refused;
    writer().remove_async(
        kDefaultTenant, type, id, *im,
        [format = format, type = std::string(type), id = std::string(id), done = *done,
         reindexer = custom_parameters(type)](fhir::Result<std::optional<VersionRecord>> out) {
          if (!out) return done(with_interaction(error_response(out.error()), "delete"));
          Response r;
          if (*out && reindexer != nullptr) reindexer->parameter_deleted(id);
          if (*out) {
            r = json_response(200,
                              fhir::information_outcome_json("Deleted " + type + "/" + id + " (version " +
                                                             std::to_string((*out)->version) + ")"),
                              format);
            r.headers.emplace_back("ETag", etag((*out)->version));
            r.headers.emplace_back("Last-Modified", fhir::format_http_date((*out)->last_updated_ms));
          } else {
            r = json_response(
                200, fhir::information_outcome_json("Nothing to delete: " + type + "/" + id + " does not exist"),
                format);
          }
          done(with_interaction(std::move(r), "delete"));
        });
    return std::nullopt;
  }

  Response history(std::string_view type, std::string_view id) const {
    resources::HistoryQuery q;
    q.type = std::string(type);
    q.id = std::string(id);
    q.count = self.options_.history_default_count;
    if (!id.empty() && !resources::is_valid_id(id))
      return error_response(ErrorKind::kNotFound, "not-found", "'" + std::string(id) + "' is not a valid resource id");
    for (const auto& [name, value] : params) {
      if (name == "_count") {
        auto n = positive_int(value);
        if (!n)
          return error_response(ErrorKind::kInvalid, "invalid",
                                "_count must be a non-negative integer, not '" + value + "'");
        q.count = std::min<std::size_t>(static_cast<std::size_t>(*n), self.options_.history_max_count);
      } else if (name == "_since") {
        auto range = fhir::datetime_range(value);
        if (!range || value.size() < 20)
          return error_response(ErrorKind::kInvalid, "invalid",
                                "_since must be an instant (e.g. 2020-01-01T00:00:00Z), not '" + value + "'");
        q.since_ms = range->first;
      } else if (name == "_at") {
        auto range = fhir::datetime_range(value);
        if (!range)
          return error_response(ErrorKind::kInvalid, "invalid", "_at must be a date or dateTime, not '" + value + "'");
        q.at_low_ms = range->first;
        q.at_high_ms = range->second;
      } else if (name == "_cursor") {
        auto n = positive_int(value);
        if (!n) return error_response(ErrorKind::kInvalid, "invalid", "_cursor '" + value + "' is not a paging cursor");
        q.before_seq = *n;
      }
    }
    if (!id.empty()) {
      // The history of a resource that never existed is a 404.
      auto cur = repo().store().read(kDefaultTenant, type, id);
      if (!cur) return error_response(cur.error());
      if (auto refused = hidden(type, id, 'r', true)) return *refused;
    } else {
      q.access = access('s');
    }
    auto page = repo().store().history(kDefaultTenant, q);
    if (!page) return error_response(page.error());
    auto total = repo().store().history_total(kDefaultTenant, q);
    if (!total) return error_response(total.error());

    std::string path = base();
    if (!type.empty()) path += "/" + std::string(type);
    if (!id.empty()) path += "/" + std::string(id);
    path += "/_history";
    std::string common = query_string(params, [](const std::string& name) { return name != "_cursor"; });
    std::string next_link;
    if (page->next_before_seq)
      next_link = path + common + (common.empty() ? "?" : "&") + "_cursor=" + std::to_string(*page->next_before_seq);
    std::string b = bundle_head("history", *total, path + common, next_link, page->entries.size());
    if (!page->entries.empty()) b += ",\"entry\":[";
    bool first = true;
    for (const VersionRecord& v : page->entries) {
      if (!first) b += ",";
      first = false;
      b += "{\"fullUrl\":";
      json::append_quoted(b, base() + "/" + v.type + "/" + v.id);
      if (!v.deleted) {
        b += ",\"resource\":";
        b += v.body;
      }
      b += ",\"request\":{\"method\":\"";
      b += resources::to_string(v.method);
      b += "\",\"url\":";
      json::append_quoted(b, v.method == resources::Method::kCreate ? v.type : v.type + "/" + v.id);
      b += "},\"response\":{\"status\":\"";
      b += v.method == resources::Method::kCreate ? "201 Created" : "200 OK";  // as the interaction answered
      b += "\",\"etag\":";
      json::append_quoted(b, etag(v.version));
      b += ",\"lastModified\":";
      json::append_quoted(b, fhir::format_instant(v.last_updated_ms));
      b += "}}";
    }
    if (!page->entries.empty()) b += "]";
    b += "}";
    return json_response(200, std::move(b), format);
  }

  using ParseSearch = std::function<fhir::Result<resources::SearchQuery>(
      const QueryParams&, const resources::SearchLimits&, const resources::SearchParameterRegistry&)>;

  // GET [type]?params and POST [type]/_search (form-encoded body): a searchset Bundle.
  Response search(std::string_view type) const {
    return run_search(base() + "/" + std::string(type), [&](const QueryParams& all, const resources::SearchLimits& l,
                                                            const resources::SearchParameterRegistry& registry) {
      return resources::parse_search(type, all, registry, repo().definitions(), l);
    });
  }

  // GET [base]?_type=A,B&... and POST [base]/_search: a search over the listed types, or over every type (then
  // with the common parameters only) without _type.
  Response system_search() const {
    return run_search(
        base(),
        [&](const QueryParams& all, const resources::SearchLimits& l,
            const resources::SearchParameterRegistry& registry) -> fhir::Result<resources::SearchQuery> {
          auto q = resources::parse_system_search(all, registry, repo().definitions(), l);
          // `_id` without `_type`: every type, named, so that the database finds the id through
          // its (tenant, type, id) index, one seek per type, instead of reading the tenant's
          // every resource (430 ms on a million).
          if (q && q->types.empty() && std::ranges::any_of(q->criteria, [](const resources::Criterion& c) {
                return c.parameter != nullptr && c.parameter->code == "_id" && !c.chained &&
                       (c.modifier == resources::Modifier::kNone || c.modifier == resources::Modifier::kExact);
              }))
            q->types = repo().definitions().resource_types();
          return q;
        });
  }

  // GET [base]/Patient/123/Observation?... (and `*` for every type of the compartment), POST .../_search: the
  // search limited to the resources in the compartment of Patient/123 (compartmentdefinition.html).
  Response compartment_search(std::string_view compartment, std::string_view id, std::string_view type) const {
    const std::shared_ptr<const resources::SearchParameterRegistry> snapshot = self.search_parameters();
    if (snapshot == nullptr) return search_disabled();
    const resources::SearchParameterRegistry* registry = snapshot.get();
    auto members = registry->compartment_types(compartment);
    if (members.empty())
      return error_response(ErrorKind::kNotFound, "not-found",
                            "'" + std::string(compartment) +
                                "' is not a compartment (the compartments are Patient, Encounter, RelatedPerson, "
                                "Practitioner and Device)");
    if (!resources::is_valid_id(id))
      return error_response(ErrorKind::kNotFound, "not-found", "'" + std::string(id) + "' is not a valid resource id");
    std::vector<std::string> types;
    if (type == "*") {
      types.assign(members.begin(), members.end());
    } else if (!repo().definitions().is_resource_type(type)) {
      return error_response(ErrorKind::kNotFound, "not-supported",
                            "'" + std::string(type) + "' is not a resource type of FHIR R4");
    } else if (std::find(members.begin(), members.end(), type) == members.end()) {
      return error_response(ErrorKind::kInvalid, "invalid",
                            std::string(type) + " resources are not in the " + std::string(compartment) +
                                " compartment (see its CompartmentDefinition)");
    } else {
      types.emplace_back(type);
    }
    resources::CompartmentFilter filter;
    filter.type = std::string(compartment);
    filter.id = std::string(id);
    for (const std::string& t : types) {
      std::vector<std::string> params;
      for (const std::string& code : registry->compartment_params(compartment, t)) {
        const resources::SearchParameter* p = registry->find(t, code);
        if (p != nullptr && p->type == resources::SearchParamType::kReference) params.push_back(code);
      }
      filter.params.emplace_back(t, std::move(params));
    }
    std::string link = base() + "/" + std::string(compartment) + "/" + std::string(id) + "/" + std::string(type);
    return run_search(
        link,
        [&](const QueryParams& all, const resources::SearchLimits& l,
            const resources::SearchParameterRegistry& snapshot_now) -> fhir::Result<resources::SearchQuery> {
          auto q = type == "*" ? resources::parse_multi_type_search(types, all, snapshot_now, repo().definitions(), l)
                               : resources::parse_search(type, all, snapshot_now, repo().definitions(), l);
          if (q) q->compartment = filter;
          return q;
        });
  }

  static Response search_disabled() {
    return error_response(ErrorKind::kNotSupported, "not-supported",
                          "Search is not enabled on this server (start it with --search-index true)");
  }

  // Parses the parameters with `parse`, then answers with a searchset Bundle whose links start with `link`, or
  // with the query plan when _explain=true or the header X-Caduceus-Explain: true asks for it.
  Response run_search(const std::string& link, const ParseSearch& parse) const {
    // A snapshot of the parameters in force (custom ones come and go): the query points into it.
    const std::shared_ptr<const resources::SearchParameterRegistry> registry = self.search_parameters();
    if (registry == nullptr) return search_disabled();
    QueryParams all = params;
    if (req.method == "POST") {
      std::string media = media_type_of(req.header("content-type"));
      if (!req.body.empty() && media != "application/x-www-form-urlencoded")
        return error_response(ErrorKind::kUnsupportedMediaType, "not-supported",
                              "POST _search takes application/x-www-form-urlencoded parameters");
      auto form = parse_query(req.body);
      if (!form) return error_response(ErrorKind::kInvalid, "invalid", "The form body has a malformed %-escape");
      all.insert(all.end(), form->begin(), form->end());
    }
    bool explain = lower(trim(req.header("x-caduceus-explain"))) == "true";
    for (auto it = all.begin(); it != all.end();) {
      if (it->first != "_explain") {
        ++it;
        continue;
      }
      if (it->second != "true" && it->second != "false")
        return error_response(ErrorKind::kInvalid, "invalid",
                              "Search parameter '_explain': takes true or false, not '" + it->second + "'", "_explain");
      explain = explain || it->second == "true";
      it = all.erase(it);
    }
    resources::SearchLimits limits;
    limits.default_count = self.options_.history_default_count;
    limits.max_count = self.options_.history_max_count;
    limits.strict = req.header("prefer").find("handling=strict") != std::string_view::npos;
    auto query = parse(all, limits, *registry);
    // The explainer answers for what the parser refuses as not supported yet (:in, :not-in, token :above and
    // :below, near): the plan is then of the search without that parameter, and says so.
    std::vector<std::string> explain_notes;
    for (int guard = 0; explain && !query && guard < 16; ++guard) {
      const fhir::Error& e = query.error();
      if (e.issues.empty() || e.issues[0].code != "not-supported") break;
      const std::string what = e.issues[0].expression;
      if (std::erase_if(all, [&](const auto& p) { return p.first == what; }) == 0) break;
      explain_notes.push_back(e.issues[0].diagnostics +
                              ": the search answers 400 with it; this plan is of the same "
                              "search without '" +
                              what + "'");
      query = parse(all, limits, *registry);
    }
    if (!query) return error_response(query.error());
    query->access = access('s');  // only what the request may see is matched, included, chained or counted
    // Links repeat the parameters that were used, leaving out unknown ones and the cursor.
    auto keep = [&](const std::string& name) {
      return name != "_cursor" && name != "_format" && name != "_pretty" &&
             std::find(query->ignored.begin(), query->ignored.end(), name) == query->ignored.end();
    };
    if (explain) {
      auto plan = repo().store().explain(kDefaultTenant, *query);
      if (!plan) return error_response(plan.error());
      plan->notes.insert(plan->notes.begin(), explain_notes.begin(), explain_notes.end());
      return json_response(200, plan_parameters(*plan, link + query_string(all, keep)), format);
    }
    auto page = repo().store().search_shared(kDefaultTenant, *query);
    if (!page) return error_response(page.error());

    std::string kept = query_string(all, keep);
    std::string next_link;
    if (page->next_cursor)
      next_link = link + kept + (kept.empty() ? "?" : "&") + "_cursor=" + percent_encode(*page->next_cursor);
    std::string b =
        bundle_head("searchset", page->total, link + kept, next_link, page->entries.size() + page->included.size());
    if (!page->entries.empty() || !page->included.empty() || page->include_limit_reached) {
      b += ",\"entry\":[";
      bool first = true;
      auto entry = [&](const VersionRecord& v, std::string_view body, std::string_view mode) {
        if (!first) b += ",";
        first = false;
        b += "{\"fullUrl\":";
        append_full_url(b, v);
        b += ",\"resource\":";
        b += body;
        b += ",\"search\":{\"mode\":\"";
        b += mode;
        b += "\"}}";
      };
      const bool subsetted = !query->elements.empty() || query->summary == resources::Summary::kTrue ||
                             query->summary == resources::Summary::kText || query->summary == resources::Summary::kData;
      for (const auto& v : page->entries) {
        if (subsetted)
          entry(*v, resources::subset_resource(v->body, repo().definitions(), query->summary, query->elements),
                "match");
        else
          entry(*v, v->body, "match");
      }
      for (const auto& v : page->included) entry(*v, v->body, "include");
      if (page->include_limit_reached) {
        if (!first) b += ",";
        b += "{\"resource\":";
        b += fhir::operation_outcome_json({fhir::Issue{fhir::Severity::kWarning, "too-costly",
                                                       "_include/_revinclude reached this server's maximum of included "
                                                       "resources per page: some are left out",
                                                       "_include"}});
        b += ",\"search\":{\"mode\":\"outcome\"}}";
      }
      b += "]";
    }
    b += "}";
    return json_response(200, std::move(b), format);
  }

  // The Parameters resource that describes a reindex job.
  std::string reindex_parameters(const resources::ReindexStatus& s) const {
    json::Value out = json::Value::object();
    out.set("resourceType", json::Value::string("Parameters"));
    json::Value list = json::Value::array();
    auto part = [&](std::string name, std::string value_name, json::Value value) {
      json::Value p = json::Value::object();
      p.set("name", json::Value::string(std::move(name)));
      p.set(value_name, std::move(value));
      list.push_back(std::move(p));
    };
    part("jobId", "valueString", json::Value::string(std::to_string(s.id)));
    part("status", "valueCode", json::Value::string(s.state));
    part("processed", "valueInteger", json::Value::number(std::to_string(s.processed)));
    part("total", "valueInteger", json::Value::number(std::to_string(s.total)));
    for (const std::string& t : s.types) part("type", "valueCode", json::Value::string(t));
    for (const std::string& p : s.params) part("searchParameterCode", "valueCode", json::Value::string(p));
    if (!s.search_parameter.empty()) {
      json::Value ref = json::Value::object();
      ref.set("reference", json::Value::string(s.search_parameter));
      part("searchParameter", "valueReference", std::move(ref));
    }
    if (!s.message.empty()) part("message", "valueString", json::Value::string(s.message));
    out.set("parameter", std::move(list));
    return json::write(out);
  }

  std::string reindex_url(std::int64_t id) const { return base() + "/$reindex/" + std::to_string(id); }

  // POST [base]/$reindex and POST [base]/[type]/$reindex: 202 with the job's status URL in Content-Location.
  Response start_reindex(std::string type) const {
    if (self.reindexer_ == nullptr)
      return error_response(ErrorKind::kNotSupported, "not-supported",
                            "$reindex needs the search index (start the server with --search-index true)");
    std::vector<std::string> types;
    if (!type.empty()) types.push_back(std::move(type));
    std::int64_t id = self.reindexer_->reindex(std::move(types));
    auto status = self.reindexer_->status(id);
    Response r = json_response(202, reindex_parameters(*status), format);
    r.headers.emplace_back("Content-Location", reindex_url(id));
    return r;
  }

  // GET [base]/$reindex/[id]: the job's progress.
  Response reindex_status(std::string_view id) const {
    auto n = positive_int(id);
    std::optional<resources::ReindexStatus> status;
    if (n && self.reindexer_ != nullptr) status = self.reindexer_->status(*n);
    if (!status)
      return error_response(ErrorKind::kNotFound, "not-found", "There is no reindex job '" + std::string(id) + "'");
    return json_response(200, reindex_parameters(*status), format);
  }

  // A SearchParameter about to be written: refused when active and not usable (400 naming the element).
  std::optional<Response> check_search_parameter(std::string_view type, const json::Value& body,
                                                 std::string_view id) const {
    if (type != "SearchParameter" || self.reindexer_ == nullptr) return std::nullopt;
    if (auto ok = self.reindexer_->check(body, std::string(id)); !ok) return error_response(ok.error());
    return std::nullopt;
  }

  // ---- Conditional create, update, delete and patch; PATCH (JSON Patch) ----

  // The criteria of a conditional operation on `type` (If-None-Exist, or the query of PUT/DELETE/PATCH
  // [type]?criteria), parsed with the search parameters in force. Unknown parameters are refused (a criterion
  // left out would widen the match), as are empty criteria: 400 naming the parameter.
  fhir::Result<std::shared_ptr<const resources::Conditional>> conditional_criteria(std::string_view type,
                                                                                   const QueryParams& given,
                                                                                   std::string text) const {
    auto registry = self.search_parameters();
    if (registry == nullptr)
      return fhir::fail(ErrorKind::kNotSupported, "not-supported",
                        "Conditional operations need the search index (start the server with --search-index true)");
    QueryParams criteria;
    for (const auto& [name, value] : given)
      if (name != "_format" && name != "_pretty") criteria.emplace_back(name, value);
    if (criteria.empty())
      return fhir::fail(ErrorKind::kInvalid, "required",
                        "A conditional " + std::string(req.method == "POST" ? "create" : "operation") +
                            " needs search criteria (e.g. identifier=system|value); none were given");
    resources::SearchLimits limits;
    limits.default_count = self.options_.history_default_count;
    limits.max_count = self.options_.history_max_count;
    limits.strict = true;
    auto query = resources::parse_search(type, criteria, *registry, repo().definitions(), limits);
    if (!query) return std::unexpected(query.error());
    if (query->criteria.empty() && query->has.empty())
      return fhir::fail(ErrorKind::kInvalid, "required",
                        "The conditional criteria '" + text +
                            "' hold no search criterion (only result parameters such as _count or _sort)",
                        criteria.front().first);
    auto out = std::make_shared<resources::Conditional>();
    query->access = access('s');  // a conditional operation matches only what the request may see
    out->query = std::move(*query);
    out->parameters = registry;
    out->text = std::move(text);
    return std::shared_ptr<const resources::Conditional>(std::move(out));
  }

  static std::string string_at_id(const json::Value& resource) {
    const json::Value* id = resource.find("id");
    return id != nullptr && id->is_string() ? id->text() : std::string();
  }

  // The request's query string as the client wrote it (for messages).
  std::string raw_query() const {
    auto q = std::string_view(req.target).find('?');
    return q == std::string_view::npos ? std::string() : std::string(std::string_view(req.target).substr(q + 1));
  }

  // POST [type] with If-None-Exist: 201 when created, 200 with the one match, 412 when several match.
  std::optional<Response> conditional_create(std::string_view type) const {
    auto body = read_body(req);
    if (!body) return with_interaction(error_response(body.error()), "create");
    std::string_view header = trim(req.header("if-none-exist"));
    // The value is a query ("identifier=x|y"); tolerate "?..." and "Patient?..." as well.
    if (auto q = header.find('?'); q != std::string_view::npos) header = header.substr(q + 1);
    auto given = parse_query(header);
    if (!given)
      return with_interaction(
          error_response(ErrorKind::kInvalid, "invalid", "If-None-Exist has a malformed %-escape", "If-None-Exist"),
          "create");
    auto criteria = conditional_criteria(type, *given, std::string(header));
    if (!criteria) return with_interaction(error_response(criteria.error()), "create");
    if (auto refused = check_search_parameter(type, *body, {})) return with_interaction(std::move(*refused), "create");
    writer().conditional_create_async(
        kDefaultTenant, type, std::move(*body), std::move(*criteria),
        answer_write(type, "create", {.always_location = true, .reindex_only_if_created = true}));
    return std::nullopt;
  }

  // PUT [type]?criteria: one match is updated (200), none creates (201), several are 412.
  std::optional<Response> conditional_update(std::string_view type) const {
    auto body = read_body(req);
    if (!body) return with_interaction(error_response(body.error()), "update");
    auto criteria = conditional_criteria(type, params, raw_query());
    if (!criteria) return with_interaction(error_response(criteria.error()), "update");
    std::string body_id;
    if (const json::Value* id = body->find("id"); id != nullptr && id->is_string()) body_id = id->text();
    if (auto refused = check_search_parameter(type, *body, body_id))
      return with_interaction(std::move(*refused), "update");
    writer().conditional_update_async(kDefaultTenant, type, std::move(*body), std::move(*criteria),
                                      answer_write(type, "update", {}));
    return std::nullopt;
  }

  // DELETE [type]?criteria: deletes the match (or up to --max-conditional-delete matches); more are 412.
  std::optional<Response> conditional_delete(std::string_view type) const {
    auto criteria = conditional_criteria(type, params, raw_query());
    if (!criteria) return with_interaction(error_response(criteria.error()), "delete");
    std::string text = (*criteria)->text;
    writer().conditional_delete_async(
        kDefaultTenant, type, std::move(*criteria), self.options_.max_conditional_delete,
        [format = format, type = std::string(type), text = std::move(text), done = *done,
         reindexer = custom_parameters(type)](fhir::Result<std::vector<VersionRecord>> out) {
          if (!out) return done(with_interaction(error_response(out.error()), "delete"));
          Response r;
          if (out->empty()) {
            r = json_response(
                200, fhir::information_outcome_json("Nothing to delete: no " + type + " matches '" + text + "'"),
                format);
          } else {
            std::string list;
            for (const VersionRecord& v : *out) {
              list += (list.empty() ? "" : ", ") + v.type + "/" + v.id + " (version " + std::to_string(v.version) + ")";
              if (reindexer != nullptr) reindexer->parameter_deleted(v.id);
            }
            r = json_response(
                200,
                fhir::information_outcome_json("Deleted " + std::to_string(out->size()) + " " + type +
                                               (out->size() == 1 ? "" : "s") + " matching '" + text + "': " + list),
                format);
            if (out->size() == 1) {
              r.headers.emplace_back("ETag", etag(out->front().version));
              r.headers.emplace_back("Last-Modified", fhir::format_http_date(out->front().last_updated_ms));
            }
          }
          r.headers.emplace_back("X-Deleted-Count", std::to_string(out->size()));
          done(with_interaction(std::move(r), "delete"));
        });
    return std::nullopt;
  }

  // PATCH [type]/[id] with a JSON Patch (application/json-patch+json) or a FHIRPath Patch (a Parameters). The read, the
  // patch and the write of the result are retried together if another write comes between them (Repository::patch), so
  // no update is lost. With criteria (conditional patch), `id` is empty: the match is found inside the write
  // (Repository).
  std::optional<Response> patch(std::string_view type, std::string_view id,
                                std::shared_ptr<const resources::Conditional> criteria = nullptr) const {
    if (!criteria && !resources::is_valid_id(id))
      return with_interaction(
          error_response(ErrorKind::kNotFound, "not-found",
                         "'" + std::string(id) + "' is not a valid resource id, so no resource has it"),
          "patch");
    if (!criteria)
      if (auto refused = hidden(type, id, 'u', false)) return with_interaction(std::move(*refused), "patch");
    std::string media = media_type_of(req.header("content-type"));
    const bool fhir_json = media == "application/fhir+json" || media == "application/json+fhir";
    if (!fhir_json && media != "application/json-patch+json" && media != "application/json")
      return with_interaction(error_response(ErrorKind::kUnsupportedMediaType, "not-supported",
                                             "PATCH takes a JSON Patch (RFC 6902) as application/json-patch+json, "
                                             "or a FHIRPath Patch (a Parameters resource) as application/fhir+json, "
                                             "not '" +
                                                 std::string(req.header("content-type")) + "'"),
                              "patch");
    if (req.body.empty())
      return with_interaction(error_response(ErrorKind::kInvalid, "required",
                                             "The request has no body; a JSON Patch or a FHIRPath Patch is expected"),
                              "patch");
    auto document = json::parse(req.body);
    if (!document) return with_interaction(error_response(document.error()), "patch");
    // FHIRPath Patch: a Parameters resource (application/fhir+json, or application/json holding one).
    std::optional<resources::FhirPathPatch> fhirpath_patch;
    if (fhir_json || (media == "application/json" && document->is_object())) {
      auto parsed = resources::FhirPathPatch::parse(*document);
      if (!parsed) return with_interaction(error_response(parsed.error()), "patch");
      fhirpath_patch = std::move(*parsed);
    } else if (media == "application/json") {
      return with_interaction(error_response(ErrorKind::kUnsupportedMediaType, "not-supported",
                                             "A JSON Patch (RFC 6902) is sent as application/json-patch+json"),
                              "patch");
    } else if (!document->is_array()) {
      return with_interaction(error_response(ErrorKind::kInvalid, "structure",
                                             "A JSON Patch document is an array of operations (RFC 6902)"),
                              "patch");
    }
    auto im = if_match();
    if (!im) return with_interaction(error_response(im.error()), "patch");
    resources::Repository::PatchFn apply = [&](json::Value& resource) -> fhir::Result<void> {
      if (auto applied = fhirpath_patch ? fhirpath_patch->apply(resource, repo().definitions())
                                        : json::apply_patch(resource, *document);
          !applied)
        return applied;
      if (type == "SearchParameter" && self.reindexer_ != nullptr)
        if (auto ok = self.reindexer_->check(resource, string_at_id(resource)); !ok) {
          fhir::Error e = std::move(ok.error());
          e.kind = ErrorKind::kUnprocessable;  // the patch would make an unusable SearchParameter
          return std::unexpected(std::move(e));
        }
      return {};
    };
    auto out = criteria ? writer().conditional_patch(kDefaultTenant, type, criteria, apply)
                        : writer().patch(kDefaultTenant, type, id, apply, *im);
    if (!out) return with_interaction(error_response(out.error()), "patch");
    Response r = reply().written(200, out->record, false);
    if (resources::Reindexer* reindexer = custom_parameters(type))
      if (auto job = reindexer->parameter_written(out->record))
        r.headers.emplace_back("X-Reindex-Job", base() + "/$reindex/" + std::to_string(*job));
    return with_interaction(std::move(r), "patch");
  }

  // PATCH [type]?criteria: the patch of the one match (404 when none, 412 when several).
  std::optional<Response> conditional_patch(std::string_view type) const {
    auto criteria = conditional_criteria(type, params, raw_query());
    if (!criteria) return with_interaction(error_response(criteria.error()), "patch");
    return patch(type, {}, std::move(*criteria));
  }

  // POST [base]: a batch or transaction Bundle (bundle.hpp). It waits for its commits, so on the asynchronous path
  // it runs on the router's worker threads, never on an I/O thread: concurrent transactions then commit together.
  std::optional<Response> bundle_post() const {
    auto body = read_body(req);
    if (!body) return with_interaction(error_response(body.error()), "transaction");
    const json::Value* type = body->find("type");
    std::string interaction = type != nullptr && type->is_string() && type->text() == "batch" ? "batch" : "transaction";
    BundleOptions options;
    options.base_url = base();
    options.max_entries = self.options_.max_bundle_entries;
    options.return_resources = prefer_of(req) == Prefer::kRepresentation;
    if (self.reindexer_ != nullptr)
      options.check = [reindexer = self.reindexer_](std::string_view type, const json::Value& resource,
                                                    const std::string& id) -> fhir::Result<void> {
        if (type != "SearchParameter") return {};
        return reindexer->check(resource, id);
      };
    // With a filtered token every write entry is checked inside the Bundle's write job (guarded_writes()).
    // Entries that the processor hands back to the router (reads, searches) carry the Bundle's credentials.
    auto run = [router = &self, guarded = guarded_writes(), body = std::make_shared<json::Value>(std::move(*body)),
                options = std::move(options), format = format, interaction = std::move(interaction),
                authorization = std::string(req.header("authorization"))]() mutable {
      BundleProcessor processor(guarded ? guarded->repository() : router->repository_, router->search_parameters(),
                                std::move(options), [router, &authorization](const Request& sub) {
                                  if (authorization.empty()) return router->handle(sub);
                                  Request with = sub;
                                  with.headers.emplace_back("authorization", authorization);
                                  return router->handle(with);
                                });
      BundleOutcome out = processor.process(std::move(*body));
      if (router->reindexer_ != nullptr)
        for (const VersionRecord& v : out.written) {
          if (v.type != "SearchParameter") continue;
          if (v.deleted)
            router->reindexer_->parameter_deleted(v.id);
          else
            router->reindexer_->parameter_written(v);
        }
      return with_interaction(json_response(out.status, std::move(out.body), format), std::move(interaction));
    };
    if (done == nullptr) return run();
    self.workers_->post([run = std::move(run), done = *done]() mutable { done(run()); });
    return std::nullopt;
  }

  std::optional<Response> fhir(std::string_view path) {
    auto segments = split_path(path);
    const std::string& m = req.method;
    bool get = m == "GET" || m == "HEAD";
    auto& defs = repo().definitions();

    if (segments.empty()) {
      if (m == "POST") return bundle_post();
      if (get) return with_interaction(system_search(), "search-system");
      return method_not_allowed(m, req.target, "GET, POST");
    }
    std::string_view first = segments[0];
    if (segments.size() == 1 && first == "_search") {
      if (m != "POST") return method_not_allowed(m, req.target, "POST");
      return with_interaction(system_search(), "search-system");
    }
    if (first == "$reindex") {
      if (segments.size() == 1) {
        if (m != "POST") return method_not_allowed(m, req.target, "POST");
        return with_interaction(start_reindex({}), "operation");
      }
      if (segments.size() == 2) {
        if (!get) return method_not_allowed(m, req.target, "GET");
        return with_interaction(reindex_status(segments[1]), "operation");
      }
    }
    if (segments.size() == 1 && first == "metadata") {
      if (!get) return method_not_allowed(m, "/fhir/metadata", "GET");
      return with_interaction(json_response(200, self.capability_json(), format), "capabilities");
    }
    if (segments.size() == 1 && first == "_history") {
      if (!get) return method_not_allowed(m, "/fhir/_history", "GET");
      return with_interaction(history({}, {}), "history-system");
    }
    if (!defs.is_resource_type(first))
      return error_response(ErrorKind::kNotFound, "not-supported",
                            "'" + std::string(first) + "' is not a resource type of FHIR R4");
    std::string_view type = first;
    if (segments.size() == 1) {
      if (m == "POST" && !req.header("if-none-exist").empty()) return conditional_create(type);
      if (m == "POST") return create(type);
      if (get) return with_interaction(search(type), "search-type");
      if (m == "PUT") return conditional_update(type);
      if (m == "DELETE") return conditional_delete(type);
      if (m == "PATCH") return conditional_patch(type);
      return method_not_allowed(m, "/fhir/" + std::string(type), "GET, POST, PUT, DELETE, PATCH");
    }
    std::string_view second = segments[1];
    if (segments.size() == 2 && second == "_history") {
      if (!get) return method_not_allowed(m, req.target, "GET");
      return with_interaction(history(type, {}), "history-type");
    }
    if (segments.size() == 2 && second == "$reindex") {
      if (m != "POST") return method_not_allowed(m, req.target, "POST");
      return with_interaction(start_reindex(std::string(type)), "operation");
    }
    if (segments.size() == 2 && second == "_search") {
      if (m != "POST") return method_not_allowed(m, req.target, "POST");
      return with_interaction(search(type), "search-type");
    }
    if (segments.size() == 2) {
      if (get) return read(type, second);
      if (m == "PUT") return update(type, second);
      if (m == "DELETE") return remove(type, second);
      if (m == "PATCH") return patch(type, second);
      return method_not_allowed(m, req.target, "GET, HEAD, PUT, DELETE, PATCH");
    }
    if (segments.size() == 3 && segments[2] == "_history") {
      if (!get) return method_not_allowed(m, req.target, "GET");
      return with_interaction(history(type, second), "history-instance");
    }
    if (segments.size() == 4 && segments[2] == "_history") {
      if (!get) return method_not_allowed(m, req.target, "GET");
      return with_interaction(vread(type, second, segments[3]), "vread");
    }
    // Compartment search: [compartment]/[id]/[type or *], and POST .../_search.
    if (segments.size() == 3 && !segments[2].starts_with("_") && !segments[2].starts_with("$")) {
      if (!get) return method_not_allowed(m, req.target, "GET");
      return with_interaction(compartment_search(type, second, segments[2]), "search-compartment");
    }
    if (segments.size() == 4 && segments[3] == "_search" && !segments[2].starts_with("_")) {
      if (m != "POST") return method_not_allowed(m, req.target, "POST");
      return with_interaction(compartment_search(type, second, segments[2]), "search-compartment");
    }
    return error_response(ErrorKind::kNotFound, "not-found", "No FHIR interaction at " + std::string(path));
  }
};

Router::Router(resources::Repository& repository, RouterOptions options, std::function<std::string()> render_metrics,
               const resources::SearchParameterRegistry* search_parameters)
    : repository_(repository),
      options_(std::move(options)),
      render_metrics_(std::move(render_metrics)),
      search_parameters_(search_parameters),
      workers_(std::make_unique<WorkerPool>(kBundleWorkers)) {}

Router::~Router() = default;

Router::Router(resources::Repository& repository, RouterOptions options, std::function<std::string()> render_metrics,
               const resources::ActiveSearchParameters& active, resources::Reindexer& reindexer)
    : repository_(repository),
      options_(std::move(options)),
      render_metrics_(std::move(render_metrics)),
      search_parameters_(nullptr),
      active_(&active),
      reindexer_(&reindexer),
      workers_(std::make_unique<WorkerPool>(kBundleWorkers)) {}

void Router::set_base_url(std::string base_url) {
  options_.base_url = std::move(base_url);
  std::lock_guard lock(capability_mutex_);
  capability_json_.clear();
}

std::shared_ptr<const resources::SearchParameterRegistry> Router::search_parameters() const {
  if (active_ != nullptr) return active_->search();
  // Not owned: the caller of the constructor keeps it alive.
  return std::shared_ptr<const resources::SearchParameterRegistry>(std::shared_ptr<void>(), search_parameters_);
}

std::string Router::capability_json() const {
  auto search = search_parameters();
  std::lock_guard lock(capability_mutex_);
  if (capability_json_.empty() || capability_for_.get() != search.get()) {
    capability_json_ = capability_statement(repository_.definitions(), options_, search.get());
    capability_for_ = search;  // held, so that its address cannot come back for another registry
    release_free_memory();     // (the JSON tree it was built from: several MiB, once)
  }
  return capability_json_;
}

bool Router::is_blocking(const Request& request) noexcept {
  return request.method != "GET" && request.method != "HEAD";
}

bool Router::answers_later(const Request& request) const noexcept {
  if (is_blocking(request)) return true;
  if ((request.method != "GET" && request.method != "HEAD") || !repository_.store().reads_async()) return false;
  std::string_view path = std::string_view(request.target).substr(0, request.target.find('?'));
  if (!path.starts_with(kFhirBase) || path.size() <= kFhirBase.size() + 1 || path[kFhirBase.size()] != '/')
    return false;
  path.remove_prefix(kFhirBase.size() + 1);
  auto slash = path.find('/');
  return slash != std::string_view::npos && slash > 0 && path.find('/', slash + 1) == std::string_view::npos &&
         std::isupper(static_cast<unsigned char>(path[0])) != 0;
}

std::optional<Response> Router::dispatch(const Request& req, const Completion& done) const {
  std::string_view target = req.target;
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query = qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);

  if (req.rejected_status != 0) {
    Response r;
    switch (req.rejected_status) {
      case 413:
        r = error_response(ErrorKind::kTooLarge, "too-costly", "The request body is larger than the server's limit");
        break;
      case 431:
        r = error_response(ErrorKind::kInvalid, "too-costly", "The request's header fields are too large");
        break;
      default: r = error_response(ErrorKind::kInvalid, "invalid", "The HTTP request is malformed");
    }
    r.status = req.rejected_status;
    r.close = true;
    r.interaction = "rejected";
    return r;
  }
  auto text = [](int status, std::string content_type, std::string body, std::string interaction) {
    Response r;
    r.status = status;
    r.headers.emplace_back("Content-Type", std::move(content_type));
    r.body = std::move(body);
    r.interaction = std::move(interaction);
    return r;
  };
  if (path == "/healthz") return text(200, "text/plain; charset=utf-8", "ok\n", "healthz");
  if (path == "/readyz") {
    if (repository_.store().ping()) return text(200, "text/plain; charset=utf-8", "ready\n", "readyz");
    Response r = text(503, "text/plain; charset=utf-8", "not ready: the database does not answer\n", "readyz");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (path == "/metrics")
    return text(200, "text/plain; version=0.0.4; charset=utf-8", render_metrics_ ? render_metrics_() : std::string(),
                "metrics");
  if (!(path == kFhirBase || path.starts_with("/fhir/"))) {
    Response r = error_response(ErrorKind::kNotFound, "not-found", "Nothing here; the FHIR base is /fhir");
    r.interaction = "unknown";
    return r;
  }
  Impl impl{*this, req, {}, {}, &done};
  auto params = parse_query(query);
  if (!params) {
    Response r = error_response(ErrorKind::kInvalid, "invalid", "The query string has a malformed %-escape");
    r.interaction = "invalid";
    return r;
  }
  impl.params = std::move(*params);
  if (authorizer_ != nullptr)
    if (auto refused = authorizer_->check(req, path.substr(kFhirBase.size()), impl.params)) return refused;
  auto format = negotiate(req, impl.params);
  if (!format) {
    Response r = error_response(format.error());
    r.interaction = "not-acceptable";
    return r;
  }
  impl.format = *format;
  auto r = impl.fhir(path.substr(kFhirBase.size()));
  if (r && r->interaction.empty()) r->interaction = "invalid";
  return r;
}

void Router::handle_async(const Request& request, Completion done) const {
  if (auto r = dispatch(request, done)) done(std::move(*r));
}

Response Router::handle(const Request& request) const {
  std::promise<Response> promise;
  auto future = promise.get_future();
  Completion done = [&promise](Response r) { promise.set_value(std::move(r)); };
  if (auto r = dispatch(request, done)) return std::move(*r);
  return future.get();
}

}  // namespace caduceus::server
