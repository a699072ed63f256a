#include "bundle.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "caduceus/fhir/datetime.hpp"
#include "caduceus/fhir/json_patch.hpp"
#include "caduceus/fhir/outcome.hpp"
#include "caduceus/fhir/string_map.hpp"
#include "caduceus/resources/fhirpath_patch.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/server/errors.hpp"
#include "url.hpp"

namespace caduceus::server {

using fhir::ErrorKind;
using fhir::Result;
namespace json = fhir::json;
using resources::set_id;
using resources::stamp_meta;
using resources::VersionRecord;

namespace {

std::string status_text(int status) {
  switch (status) {
    case 200: return "200 OK";
    case 201: return "201 Created";
    case 204: return "204 No Content";
    case 304: return "304 Not Modified";
    case 400: return "400 Bad Request";
    case 403: return "403 Forbidden";
    case 404: return "404 Not Found";
    case 405: return "405 Method Not Allowed";
    case 409: return "409 Conflict";
    case 410: return "410 Gone";
    case 412: return "412 Precondition Failed";
    case 413: return "413 Payload Too Large";
    case 422: return "422 Unprocessable Entity";
    case 501: return "501 Not Implemented";
    case 503: return "503 Service Unavailable";
    default: return std::to_string(status);
  }
}

std::optional<std::int64_t> version_of_etag(std::string_view tag) {
  while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
  while (!tag.empty() && tag.back() == ' ') tag.remove_suffix(1);
  if (tag.starts_with("W/")) tag.remove_prefix(2);
  if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"') tag = tag.substr(1, tag.size() - 2);
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(tag.data(), tag.data() + tag.size(), v);
  if (ec != std::errc() || ptr != tag.data() + tag.size() || v < 1) return std::nullopt;
  return v;
}

std::string etag(std::int64_t version) {
  return "W/\"" + std::to_string(version) + "\"";
}

const std::string* string_member(const json::Value& v, std::string_view key) {
  const json::Value* m = v.is_object() ? v.find(key) : nullptr;
  return m != nullptr && m->is_string() ? &m->text() : nullptr;
}

// Calls f(text) for every `reference` string at any depth (extensions and contained resources included); when f
// returns a value, the reference becomes it. Stops at the first error f returns.
template <class F>
Result<void> rewrite_references(json::Value& v, F&& f) {
  if (v.is_array()) {
    for (json::Value& item : v.items())
      if (auto ok = rewrite_references(item, f); !ok) return ok;
  } else if (v.is_object()) {
    for (auto& [key, value] : v.members()) {
      if (std::string_view(key) == "reference" && value.is_string()) {  // (the lengths first)
        auto replaced = f(value.text());
        if (!replaced) return std::unexpected(std::move(replaced.error()));
        if (*replaced) value = json::Value::string(std::move(**replaced));
        continue;
      }
      if (auto ok = rewrite_references(value, f); !ok) return ok;
    }
  }
  return {};
}

bool is_absolute(std::string_view url) {
  return url.starts_with("http://") || url.starts_with("https://");
}
bool is_urn(std::string_view url) {
  return url.starts_with("urn:uuid:") || url.starts_with("urn:oid:");
}

// The base of an absolute URL that ends in Type/id (what is before them), or empty.
std::string base_of(std::string_view full_url) {
  if (!is_absolute(full_url)) return {};
  auto last = full_url.rfind('/');
  if (last == std::string_view::npos || last == 0) return {};
  auto second = full_url.rfind('/', last - 1);
  if (second == std::string_view::npos) return {};
  return std::string(full_url.substr(0, second));
}

// One entry of the Bundle, as read and checked before any write.
struct Entry {
  std::size_t index = 0;
  std::string path;  // "Bundle.entry[3]"
  std::string full_url;
  std::string method;  // GET, HEAD, POST, PUT, DELETE, PATCH
  std::string url;     // request.url relative to the base ("Patient/1", "Patient?name=x")
  std::string type, id;
  std::string if_none_exist;  // POST: the query
  std::optional<std::int64_t> if_match;
  std::string if_none_match, if_modified_since;
  json::Value resource;  // POST, PUT: with its id, references rewritten (but the dynamic ones)
  bool dynamic = false;  // holds references resolved only inside the write job
  std::optional<resources::IndexValues> index_values;  // extracted before the job (unless dynamic)
  // Serialized before the job, to be completed with its version and time (not for a dynamic or conditional entry).
  std::optional<resources::PreparedBody> body;
  std::shared_ptr<const void> guard;
  std::optional<resources::SearchQuery> if_none_exist_query;
  // Conditional update or delete (request.url "Type?query"): the query, parsed; the id is decided in the job.
  std::string condition;
  std::optional<resources::SearchQuery> condition_query;
  bool body_has_id = false;  // conditional PUT: the body carries an id (else e.id is a fresh one)
  // PATCH: a JSON Patch (from a Binary's data) or a FHIRPath Patch (a Parameters), applied inside the write job to
  // the version current there.
  std::optional<json::Value> json_patch;
  std::optional<resources::FhirPathPatch> fhirpath_patch;
};

// What one run of the write job leaves for an entry (overwritten by every run).
struct EntryResult {
  int status = 0;
  std::optional<VersionRecord> record;  // written, or (ifNoneExist match) the existing current version
  std::string location;                 // Type/id/_history/v
  std::string outcome;                  // OperationOutcome JSON (batch failures, GET errors)
  std::optional<json::Value> resource;  // GET answers
  std::string etag, last_modified;
  std::string id;  // conditional PUT or DELETE: the id this run decided on (empty otherwise)
};

struct Plan {
  std::vector<Entry> entries;
  std::shared_ptr<const resources::SearchParameterRegistry> registry;  // the queries point into it
  std::map<std::string, resources::SearchQuery> conditional;           // conditional references
  std::map<std::string, std::string> resolved;                         // per run: dynamic key -> Type/id
  std::map<std::string, std::string> targets;  // fullUrl -> Type/id of the entries known before the job
  std::vector<EntryResult> results;
  std::vector<std::shared_ptr<const void>> guards;  // per run: of the indexes extracted in the job
};

fhir::Error entry_error(const Entry& e, fhir::Error error) {
  std::string where = e.path + (e.full_url.empty() ? "" : " (fullUrl " + e.full_url + ")") + ": ";
  for (fhir::Issue& issue : error.issues) {
    issue.diagnostics = where + issue.diagnostics;
    // (A refusal by the token names the entry: its resource is what the token may not write.)
    if (issue.expression.empty() || error.kind == ErrorKind::kForbidden) issue.expression = e.path;
  }
  return error;
}

std::unexpected<fhir::Error> entry_fail(const Entry& e, ErrorKind kind, std::string code, std::string diagnostics,
                                        std::string expression = {}) {
  return std::unexpected(
      entry_error(e, fhir::Error::make(kind, std::move(code), std::move(diagnostics), std::move(expression))));
}

// The bytes of base64 text (RFC 4648, padded; whitespace ignored), or nullopt when it is not base64.
std::optional<std::string> decode_base64(std::string_view text) {
  std::string clean;
  clean.reserve(text.size());
  for (char c : text)
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') clean += c;
  if (clean.empty() || clean.size() % 4 != 0) return std::nullopt;
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  std::size_t padding = clean.ends_with("==") ? 2 : clean.ends_with("=") ? 1 : 0;
  out.resize(static_cast<std::size_t>(n) - padding);
  return out;
}

// A patch of a PATCH entry that does not apply: the issues name the entry's resource (the Parameters' operation,
// or the Binary's data for a JSON Patch, whose pointer goes to the diagnostics).
fhir::Error patch_error(const Entry& e, fhir::Error error) {
  for (fhir::Issue& issue : error.issues) {
    if (issue.expression.starts_with("Parameters")) {
      issue.expression = e.path + ".resource" + issue.expression.substr(std::string_view("Parameters").size());
    } else if (e.json_patch) {
      if (!issue.expression.empty()) issue.diagnostics += " (JSON Patch " + issue.expression + ")";
      issue.expression = e.path + ".resource.data";
    }
  }
  return entry_error(e, std::move(error));
}

}  // namespace

BundleOutcome BundleProcessor::process(json::Value&& bundle) const {
  BundleOutcome out;
  auto fail_all = [&](const fhir::Error& e) {
    out.status = http_status(e.kind);
    out.body = fhir::operation_outcome_json(e.issues);
    out.written.clear();
    return out;
  };
  const std::string* rt = string_member(bundle, "resourceType");
  if (rt == nullptr || *rt != "Bundle")
    return fail_all(fhir::Error::make(ErrorKind::kInvalid, "invalid",
                                      "POST [base] takes a Bundle of type batch or transaction",
                                      "Bundle.resourceType"));
  const std::string* type = string_member(bundle, "type");
  if (type == nullptr || (*type != "batch" && *type != "transaction"))
    return fail_all(fhir::Error::make(
        ErrorKind::kInvalid, "invalid",
        "Bundle.type must be batch or transaction, not '" + (type ? *type : std::string()) + "'", "Bundle.type"));
  const bool batch = *type == "batch";
  json::Value no_entries = json::Value::array();
  json::Value* entries = bundle.find("entry");
  if (entries == nullptr) entries = &no_entries;
  if (!entries->is_array())
    return fail_all(
        fhir::Error::make(ErrorKind::kInvalid, "structure", "Bundle.entry must be an array", "Bundle.entry"));
  if (entries->items().size() > options_.max_entries)
    return fail_all(fhir::Error::make(ErrorKind::kTooLarge, "too-costly",
                                      "The Bundle has " + std::to_string(entries->items().size()) +
                                          " entries; this server takes at most " + std::to_string(options_.max_entries),
                                      "Bundle.entry"));
  const auto& defs = repo_.definitions();
  const std::string& base = options_.base_url;

  // Reads one entry's request (no writes, no references yet).
  auto read_entry = [&](std::size_t i) -> Result<Entry> {
    Entry e;
    e.index = i;
    e.path = "Bundle.entry[" + std::to_string(i) + "]";
    json::Value& raw = entries->items()[i];  // (its resource is moved into the entry: each is read once)
    if (!raw.is_object()) return entry_fail(e, ErrorKind::kInvalid, "structure", "An entry must be an object");
    if (const std::string* fu = string_member(raw, "fullUrl")) e.full_url = *fu;
    const json::Value* request = raw.find("request");
    if (request == nullptr || !request->is_object())
      return entry_fail(e, ErrorKind::kInvalid, "required", "The entry has no request", e.path + ".request");
    const std::string* method = string_member(*request, "method");
    if (method == nullptr)
      return entry_fail(e, ErrorKind::kInvalid, "required", "request.method is missing", e.path + ".request.method");
    e.method = *method;
    if (e.method != "GET" && e.method != "HEAD" && e.method != "POST" && e.method != "PUT" && e.method != "DELETE" &&
        e.method != "PATCH")
      return entry_fail(e, ErrorKind::kInvalid, "code-invalid", "request.method '" + e.method + "' is not an HTTP verb",
                        e.path + ".request.method");
    const std::string* url = string_member(*request, "url");
    if (url == nullptr || url->empty())
      return entry_fail(e, ErrorKind::kInvalid, "required", "request.url is missing", e.path + ".request.url");
    std::string_view u = *url;
    if (u.starts_with(base + "/")) u.remove_prefix(base.size() + 1);
    if (is_absolute(u))
      return entry_fail(e, ErrorKind::kInvalid, "invalid",
                        "request.url '" + *url + "' is not on this server (" + base + ")", e.path + ".request.url");
    while (u.starts_with("/")) u.remove_prefix(1);
    e.url = std::string(u);
    if (const std::string* s = string_member(*request, "ifMatch")) {
      e.if_match = version_of_etag(*s);
      if (!e.if_match)
        return entry_fail(e, ErrorKind::kInvalid, "invalid", "request.ifMatch '" + *s + "' is not an ETag (W/\"n\")",
                          e.path + ".request.ifMatch");
    }
    if (const std::string* s = string_member(*request, "ifNoneMatch")) e.if_none_match = *s;
    if (const std::string* s = string_member(*request, "ifModifiedSince")) e.if_modified_since = *s;
    if (e.method == "GET" || e.method == "HEAD") return e;

    auto q = e.url.find('?');
    std::string path = e.url.substr(0, q);
    auto slash = path.find('/');
    e.type = path.substr(0, slash);
    if (slash != std::string::npos) e.id = path.substr(slash + 1);
    if (!defs.is_resource_type(e.type))
      return entry_fail(e, ErrorKind::kInvalid, "not-supported",
                        "request.url '" + e.url + "': '" + e.type + "' is not a resource type of FHIR R4",
                        e.path + ".request.url");
    if (q != std::string::npos && e.method != "POST") {
      // Conditional update or delete: "Type?query", no id.
      e.condition = e.url.substr(q + 1);
      if (slash != std::string::npos || e.condition.empty())
        return entry_fail(e, ErrorKind::kInvalid, "invalid",
                          "request.url '" + e.url + "' must be [type]?[search] for a conditional " +
                              (e.method == "PUT"     ? "update"
                               : e.method == "PATCH" ? "patch"
                                                     : "delete"),
                          e.path + ".request.url");
    }
    bool wants_id = e.method != "POST" && e.condition.empty();
    if (wants_id ? (!resources::is_valid_id(e.id) || e.id.find('/') != std::string::npos)
                 : (slash != std::string::npos || (q != std::string::npos && e.condition.empty())))
      return entry_fail(
          e, ErrorKind::kInvalid, "invalid",
          "request.url '" + e.url + "' must be " + (wants_id ? "[type]/[id]" : "[type]") + " for " + e.method,
          e.path + ".request.url");
    if (e.method == "DELETE") return e;
    json::Value* resource = raw.find("resource");
    if (resource == nullptr || !resource->is_object())
      return entry_fail(e, ErrorKind::kInvalid, "required", e.method + " needs a resource", e.path + ".resource");
    const std::string* rtype = string_member(*resource, "resourceType");
    if (e.method == "PATCH") {
      // The patch: a Binary holding a JSON Patch, or a Parameters (FHIRPath Patch).
      if (rtype != nullptr && *rtype == "Parameters") {
        auto parsed = resources::FhirPathPatch::parse(*resource);
        if (!parsed) return std::unexpected(patch_error(e, std::move(parsed.error())));
        e.fhirpath_patch = std::move(*parsed);
        return e;
      }
      if (rtype == nullptr || *rtype != "Binary")
        return entry_fail(e, ErrorKind::kInvalid, "invalid",
                          "A PATCH entry's resource is a Parameters (FHIRPath Patch) or a Binary holding a JSON Patch, "
                          "not '" +
                              (rtype ? *rtype : std::string()) + "'",
                          e.path + ".resource.resourceType");
      const std::string* content_type = string_member(*resource, "contentType");
      std::string_view media = content_type != nullptr ? std::string_view(*content_type) : std::string_view();
      media = media.substr(0, media.find(';'));
      while (media.ends_with(' ')) media.remove_suffix(1);
      if (media != "application/json-patch+json")
        return entry_fail(e, ErrorKind::kUnsupportedMediaType, "not-supported",
                          "A PATCH entry's Binary holds a JSON Patch (contentType application/json-patch+json), not '" +
                              (content_type ? *content_type : std::string()) + "'",
                          e.path + ".resource.contentType");
      const std::string* data = string_member(*resource, "data");
      auto bytes = data != nullptr ? decode_base64(*data) : std::nullopt;
      if (!bytes)
        return entry_fail(e, ErrorKind::kInvalid, "invalid", "The Binary's data must be the base64 of a JSON Patch",
                          e.path + ".resource.data");
      auto document = json::parse(*bytes);
      if (!document || !document->is_array())
        return entry_fail(e, ErrorKind::kInvalid, "structure",
                          "The Binary's data is not a JSON Patch (RFC 6902: an array of operations)" +
                              (document ? std::string() : ": " + document.error().issues.front().diagnostics),
                          e.path + ".resource.data");
      e.json_patch = std::move(*document);
      return e;
    }
    if (rtype == nullptr || *rtype != e.type)
      return entry_fail(e, ErrorKind::kInvalid, "invalid",
                        "The resource's resourceType '" + (rtype ? *rtype : std::string()) +
                            "' does not match request.url '" + e.url + "'",
                        e.path + ".resource.resourceType");
    e.resource = std::move(*resource);
    if (const std::string* s = string_member(*request, "ifNoneExist"); s != nullptr && e.method == "POST") {
      std::string_view cond = *s;
      if (cond.starts_with(e.type + "?")) cond.remove_prefix(e.type.size() + 1);
      if (cond.starts_with("?")) cond.remove_prefix(1);
      e.if_none_exist = std::string(cond);
    }
    return e;
  };

  auto parse_condition = [&](const Entry& e, std::string_view type, std::string_view query,
                             const std::string& expression) -> Result<resources::SearchQuery> {
    if (registry_ == nullptr)
      return entry_fail(e, ErrorKind::kNotSupported, "not-supported",
                        "Conditional references and ifNoneExist need search (--search-index true)", expression);
    auto params = parse_query(query);
    if (!params || params->empty())
      return entry_fail(e, ErrorKind::kInvalid, "invalid", "'" + std::string(query) + "' is not a search query",
                        expression);
    resources::SearchLimits limits;
    limits.strict = true;  // an unknown parameter would match everything
    auto parsed = resources::parse_search(type, *params, *registry_, defs, limits);
    if (!parsed) {
      fhir::Error err = parsed.error();
      for (auto& issue : err.issues) issue.expression = expression;
      return std::unexpected(entry_error(e, std::move(err)));
    }
    return parsed;
  };

  // Builds the plan of the write entries: ids, references, checks, index values. For a batch `entries_in` holds
  // one entry.
  auto make_plan = [&](std::vector<Entry> list) -> Result<std::shared_ptr<Plan>> {
    auto plan = std::make_shared<Plan>();
    plan->registry = registry_;
    // fullUrl -> Type/id (static) or "" (dynamic: ifNoneExist decides inside the job)
    fhir::StringMap<std::string> targets;  // (found by string_view: no key to build)
    std::set<std::string> touched;         // Type/id of PUT and DELETE entries
    for (Entry& e : list) {
      if (e.method == "GET" || e.method == "HEAD") continue;
      if (e.method == "POST") e.id = resources::new_resource_id();
      if (!e.condition.empty()) {
        auto q = parse_condition(e, e.type, e.condition, e.path + ".request.url");
        if (!q) return std::unexpected(q.error());
        e.condition_query = std::move(*q);
        if (e.method == "PUT") {
          // The id if nothing matches: the body's, else a fresh one (fixed here, so every run of the job agrees).
          const std::string* body_id = string_member(e.resource, "id");
          e.body_has_id = body_id != nullptr;
          e.id = body_id != nullptr ? *body_id : resources::new_resource_id();
          if (!resources::is_valid_id(e.id))
            return entry_fail(e, ErrorKind::kInvalid, "invalid", "The resource's id '" + e.id + "' is not a FHIR id",
                              e.path + ".resource.id");
          e.dynamic = true;  // the id, hence the index values, are known only inside the job
          if (!e.full_url.empty() && !batch) targets[e.full_url] = "";
        }
        if (e.method == "PATCH" && !e.full_url.empty() && !batch) targets[e.full_url] = "";
        continue;
      }
      std::string key = e.type + "/" + e.id;
      if (e.method != "POST" && !touched.insert(key).second)
        return entry_fail(e, ErrorKind::kInvalid, "business-rule",
                          key + " is the target of another entry too: a transaction writes a resource once",
                          e.path + ".request.url");
      if (!e.full_url.empty()) {
        if (!batch) targets[e.full_url] = e.method == "POST" && !e.if_none_exist.empty() ? "" : key;
      }
      if (e.method == "POST" && !e.if_none_exist.empty()) {
        auto q = parse_condition(e, e.type, e.if_none_exist, e.path + ".request.ifNoneExist");
        if (!q) return std::unexpected(q.error());
        e.if_none_exist_query = std::move(*q);
      }
    }
    std::vector<fhir::Issue> structure_issues;
    ErrorKind structure_kind = ErrorKind::kInvalid;
    for (Entry& e : list) {
      if (e.method != "POST" && e.method != "PUT") continue;
      if (e.method == "POST" || (!e.condition.empty() && !e.body_has_id)) set_id(e.resource, e.id);
      const std::string ref_base = is_absolute(e.full_url) ? base_of(e.full_url) : base;
      auto rewritten =
          rewrite_references(e.resource, [&](const std::string& ref) -> Result<std::optional<std::string>> {
            if (ref.starts_with("#")) return std::optional<std::string>{};
            const bool whole = is_urn(ref) || is_absolute(ref);
            const std::string joined = whole ? std::string() : ref_base + "/" + ref;
            if (auto it = targets.find(whole ? std::string_view(ref) : std::string_view(joined)); it != targets.end()) {
              if (it->second.empty()) {
                e.dynamic = true;
                return std::optional<std::string>{};
              }
              return std::optional<std::string>{it->second};
            }
            if (is_urn(ref))
              return entry_fail(e, ErrorKind::kInvalid, "not-found",
                                batch ? "Reference '" + ref + "': entries of a batch may not refer to each other"
                                      : "Reference '" + ref + "' is to no fullUrl of the Bundle",
                                e.path + ".resource");
            auto q = ref.find('?');
            if (q != std::string::npos && !is_absolute(ref)) {
              std::string rtype = ref.substr(0, q);
              if (!defs.is_resource_type(rtype))
                return entry_fail(e, ErrorKind::kInvalid, "invalid",
                                  "Conditional reference '" + ref + "': '" + rtype + "' is not a resource type",
                                  e.path + ".resource");
              if (!plan->conditional.contains(ref)) {
                auto parsed = parse_condition(e, rtype, std::string_view(ref).substr(q + 1), e.path + ".resource");
                if (!parsed) return std::unexpected(parsed.error());
                plan->conditional.emplace(ref, std::move(*parsed));
              }
              e.dynamic = true;
            }
            return std::optional<std::string>{};
          });
      if (!rewritten) return std::unexpected(rewritten.error());
      std::vector<fhir::Issue> issues = repo_.check(
          e.type, e.resource, e.method == "PUT" && e.condition.empty() ? std::optional(e.id) : std::nullopt);
      if (issues.empty() && options_.check) {
        // What the server checks beyond the structure (a custom SearchParameter that must be usable).
        if (auto ok = options_.check(e.type, e.resource, e.method == "PUT" ? e.id : std::string()); !ok)
          issues = std::move(ok.error().issues);
        if (!issues.empty()) structure_kind = ErrorKind::kInvalid;
      }
      for (fhir::Issue& issue : issues) {
        std::string expr = issue.expression;
        if (expr.starts_with(e.type))
          expr = e.path + ".resource" + expr.substr(e.type.size());
        else if (expr.empty())
          expr = e.path + ".resource";
        else
          expr = e.path + ".resource." + expr;
        issue.expression = std::move(expr);
        issue.diagnostics =
            e.path + (e.full_url.empty() ? "" : " (fullUrl " + e.full_url + ")") + ": " + issue.diagnostics;
        if (issue.severity == fhir::Severity::kError || issue.severity == fhir::Severity::kFatal)
          structure_issues.push_back(std::move(issue));
      }
      if (!e.dynamic) e.index_values = repo_.index_values(e.resource, e.guard);
      if (!e.dynamic && e.condition.empty() && (e.method == "POST" || e.method == "PUT"))
        e.body = resources::PreparedBody::make(e.resource);
    }
    if (!structure_issues.empty()) return std::unexpected(fhir::Error{structure_kind, std::move(structure_issues)});
    for (const auto& [url, key] : targets)
      if (!key.empty()) plan->targets.emplace(url, key);
    plan->entries = std::move(list);
    plan->results.resize(plan->entries.size());
    return plan;
  };

  const resources::TenantId tenant = options_.tenant;
  // The write job: every write entry of the plan, in the spec's order. Runs again from scratch after a rollback.
  auto work = [this, tenant](std::shared_ptr<Plan> plan) {
    return [this, tenant, plan](resources::Transaction& txn) -> Result<void> {
      for (EntryResult& r : plan->results) r = EntryResult{};
      plan->resolved.clear();
      plan->guards.clear();
      auto& entries = plan->entries;
      auto location = [](const VersionRecord& v) {
        return v.type + "/" + v.id + "/_history/" + std::to_string(v.version);
      };
      // The resources the PUT and DELETE entries write (a transaction writes a resource once); conditional entries
      // claim theirs when the job finds it.
      std::set<std::string> claimed;
      for (const Entry& e : entries)
        if ((e.method == "PUT" || e.method == "DELETE" || e.method == "PATCH") && e.condition.empty())
          claimed.insert(e.type + "/" + e.id);
      auto claim = [&](const Entry& e, const std::string& id) { return claimed.insert(e.type + "/" + id).second; };
      auto taken = [](const Entry& e, const std::string& id) {
        return "Conditional " +
               std::string(e.method == "PUT"     ? "update"
                           : e.method == "PATCH" ? "patch"
                                                 : "delete") +
               " '" + e.url + "' picks " + e.type + "/" + id +
               ", the target of another entry too: a transaction writes a resource once";
      };
      auto check_version = [&](const Entry& e, const std::string& id, std::int64_t current) -> Result<void> {
        if (e.if_match && *e.if_match != current)
          return entry_fail(e, ErrorKind::kPreconditionFailed, "conflict",
                            "Version " + std::to_string(*e.if_match) + " of " + e.type + "/" + id +
                                " is not the current one (" + std::to_string(current) + ")",
                            e.path + ".request.ifMatch");
        return {};
      };
      // DELETE
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        if (e.method != "DELETE") continue;
        EntryResult& r = plan->results[i];
        std::string id = e.id;
        if (e.condition_query) {
          auto ids = txn.search_ids(tenant, *e.condition_query, 2);
          if (!ids) return std::unexpected(entry_error(e, ids.error()));
          if (ids->size() > 1)
            return entry_fail(e, ErrorKind::kPreconditionFailed, "multiple-matches",
                              "Conditional delete '" + e.url + "' matches several resources", e.path + ".request.url");
          if (ids->empty()) {
            r.status = 204;
            continue;
          }
          id = (*ids)[0].second;
          if (!claim(e, id))
            return entry_fail(e, ErrorKind::kInvalid, "business-rule", taken(e, id), e.path + ".request.url");
          r.id = id;
        }
        auto cur = txn.current(tenant, e.type, id);
        if (!cur) return std::unexpected(entry_error(e, cur.error()));
        std::int64_t version = *cur ? (*cur)->version : 0;
        if (auto ok = check_version(e, id, version); !ok) return ok;
        r.status = 204;
        if (!*cur || (*cur)->deleted) continue;
        VersionRecord rec;
        rec.type = e.type;
        rec.id = id;
        rec.version = version + 1;
        rec.last_updated_ms = txn.now_ms();
        rec.deleted = true;
        rec.method = resources::Method::kDelete;
        auto seq = txn.append(tenant, rec);
        if (!seq) return std::unexpected(entry_error(e, seq.error()));
        rec.seq = *seq;
        r.status = 200;
        r.location = location(rec);
        r.record = std::move(rec);
      }
      // Conditional references, once each.
      for (const auto& [ref, query] : plan->conditional) {
        auto ids = txn.search_ids(tenant, query, 2);
        if (ids && ids->size() == 1) {
          plan->resolved[ref] = (*ids)[0].first + "/" + (*ids)[0].second;
          continue;
        }
        // The first entry that uses it, to name in the error.
        const Entry* user = &entries.front();
        for (const Entry& e : entries) {
          bool uses = false;
          json::Value copy = e.resource;
          (void)rewrite_references(copy, [&](const std::string& r) -> Result<std::optional<std::string>> {
            if (r == ref) uses = true;
            return std::optional<std::string>{};
          });
          if (uses) {
            user = &e;
            break;
          }
        }
        const Entry& named = *user;
        if (!ids) return std::unexpected(entry_error(named, ids.error()));
        if (ids->size() != 1)
          return entry_fail(named, ErrorKind::kPreconditionFailed, ids->empty() ? "not-found" : "multiple-matches",
                            "Conditional reference '" + ref + "' matches " +
                                (ids->empty() ? std::string("no resource") : std::string("several resources")),
                            named.path + ".resource");
        plan->resolved[ref] = (*ids)[0].first + "/" + (*ids)[0].second;
      }
      // Conditional updates and patches find their target before any POST is written (their fullUrls may be
      // referred to).
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        if ((e.method != "PUT" && e.method != "PATCH") || !e.condition_query) continue;
        auto ids = txn.search_ids(tenant, *e.condition_query, 2);
        if (!ids) return std::unexpected(entry_error(e, ids.error()));
        const std::string what = e.method == "PUT" ? "update" : "patch";
        if (ids->size() > 1)
          return entry_fail(e, ErrorKind::kPreconditionFailed, "multiple-matches",
                            "Conditional " + what + " '" + e.url + "' matches several resources",
                            e.path + ".request.url");
        if (ids->empty() && e.method == "PATCH")
          return entry_fail(e, ErrorKind::kNotFound, "not-found",
                            "Conditional patch '" + e.url + "' matches no resource", e.path + ".request.url");
        std::string id = e.id;
        if (ids->size() == 1) {
          id = (*ids)[0].second;
          if (e.body_has_id && id != e.id)
            return entry_fail(
                e, ErrorKind::kInvalid, "invalid",
                "The resource's id '" + e.id + "' is not that of the match of '" + e.url + "' (" + id + ")",
                e.path + ".resource.id");
        } else if (e.body_has_id) {
          // No match, but the body names an id: it must not be a live resource the criteria do not select.
          auto cur = txn.current(tenant, e.type, id);
          if (!cur) return std::unexpected(entry_error(e, cur.error()));
          if (*cur && !(*cur)->deleted)
            return entry_fail(e, ErrorKind::kConflict, "conflict",
                              e.type + "/" + id + " exists but does not match '" + e.url + "'",
                              e.path + ".resource.id");
        }
        if (!claim(e, id))
          return entry_fail(e, ErrorKind::kInvalid, "business-rule", taken(e, id), e.path + ".request.url");
        plan->results[i].id = id;
        if (!e.full_url.empty()) plan->resolved[e.full_url] = e.type + "/" + id;
      }
      // ifNoneExist, before any POST is written (their fullUrls may be referred to by the others).
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        if (e.method != "POST") continue;
        if (!e.if_none_exist_query) {
          if (!e.full_url.empty()) plan->resolved[e.full_url] = e.type + "/" + e.id;
          continue;
        }
        auto ids = txn.search_ids(tenant, *e.if_none_exist_query, 2);
        if (!ids) return std::unexpected(entry_error(e, ids.error()));
        if (ids->size() > 1)
          return entry_fail(e, ErrorKind::kPreconditionFailed, "multiple-matches",
                            "ifNoneExist '" + e.if_none_exist + "' matches several resources",
                            e.path + ".request.ifNoneExist");
        if (ids->empty()) {
          if (!e.full_url.empty()) plan->resolved[e.full_url] = e.type + "/" + e.id;
          continue;
        }
        const auto& [type, id] = (*ids)[0];
        auto cur = txn.current(tenant, type, id);
        if (!cur) return std::unexpected(entry_error(e, cur.error()));
        EntryResult& r = plan->results[i];
        r.status = 200;
        VersionRecord rec;
        rec.type = type;
        rec.id = id;
        rec.version = *cur ? (*cur)->version : 1;
        rec.last_updated_ms = *cur ? (*cur)->last_updated_ms : 0;
        r.location = location(rec);
        r.record = std::move(rec);
        if (!e.full_url.empty()) plan->resolved[e.full_url] = type + "/" + id;
      }
      auto write = [&](std::size_t i, std::int64_t version, resources::Method method, bool created,
                       const json::Value* patched = nullptr) -> Result<void> {
        const Entry& e = entries[i];
        const std::string& id = plan->results[i].id.empty() ? e.id : plan->results[i].id;
        // The body: serialized before the job, or made here from the entry (or the patch's result) with the
        // references and the id that only the job knows, then indexed anew.
        const bool indexed_here = e.dynamic || patched != nullptr;
        std::optional<json::Value> resource;
        std::optional<resources::IndexValues> own_index;
        if (!e.body || patched != nullptr) {
          resource = patched != nullptr ? *patched : e.resource;
          if (!e.condition.empty()) set_id(*resource, id);
          if (indexed_here) {
            (void)rewrite_references(*resource, [&](const std::string& ref) -> Result<std::optional<std::string>> {
              if (auto it = plan->resolved.find(ref); it != plan->resolved.end())
                return std::optional<std::string>{it->second};
              return std::optional<std::string>{};
            });
            std::shared_ptr<const void> guard;
            own_index = repo_.index_values(*resource, guard);
            plan->guards.push_back(std::move(guard));
          }
        }
        auto rec =
            resources::append_version(txn, tenant, e.type, id, version, method,
                                      indexed_here ? own_index : e.index_values, [&](std::int64_t v, std::int64_t ms) {
                                        if (!resource) return e.body->body(v, ms);
                                        stamp_meta(*resource, v, ms);
                                        return json::write(*resource);
                                      });
        if (!rec) return std::unexpected(entry_error(e, rec.error()));
        EntryResult& r = plan->results[i];
        r.status = created ? 201 : 200;
        r.location = location(*rec);
        r.record = std::move(*rec);
        return {};
      };
      // POST
      for (std::size_t i = 0; i < entries.size(); ++i)
        if (entries[i].method == "POST" && plan->results[i].status == 0)
          if (auto ok = write(i, 1, resources::Method::kCreate, true); !ok) return ok;
      // A PATCH: the version current in this transaction, patched, checked and written as the next one.
      auto patch_entry = [&](std::size_t i) -> Result<void> {
        const Entry& e = entries[i];
        const std::string id = plan->results[i].id.empty() ? e.id : plan->results[i].id;
        const std::string where = e.type + "/" + id;
        auto cur = txn.current_record(tenant, e.type, id);
        if (!cur) return std::unexpected(entry_error(e, cur.error()));
        if (!*cur)
          return entry_fail(e, ErrorKind::kNotFound, "not-found", "Resource " + where + " does not exist",
                            e.path + ".request.url");
        if ((*cur)->deleted)
          return entry_fail(e, ErrorKind::kGone, "deleted",
                            "Resource " + where + " was deleted (version " + std::to_string((*cur)->version) + ")",
                            e.path + ".request.url");
        if (auto ok = check_version(e, id, (*cur)->version); !ok) return ok;
        auto body = json::parse((*cur)->body);
        if (!body)
          return entry_fail(e, ErrorKind::kInternal, "exception", "The stored version of " + where + " is unreadable");
        auto applied = e.fhirpath_patch ? e.fhirpath_patch->apply(*body, repo_.definitions())
                                        : json::apply_patch(*body, *e.json_patch);
        if (!applied) return std::unexpected(patch_error(e, std::move(applied.error())));
        const std::string* rt = string_member(*body, "resourceType");
        if (rt == nullptr || *rt != e.type)
          return entry_fail(e, ErrorKind::kUnprocessable, "processing",
                            "The patch would change the resourceType of " + where + ", which cannot change",
                            e.path + ".resource");
        const std::string* new_id = string_member(*body, "id");
        if (new_id == nullptr || *new_id != id)
          return entry_fail(e, ErrorKind::kUnprocessable, "processing",
                            "The patch would change the id of " + where + ", which cannot change",
                            e.path + ".resource");
        // References the patch adds to entries of this Bundle (by fullUrl) become the entries' Type/id.
        (void)rewrite_references(*body, [&](const std::string& ref) -> Result<std::optional<std::string>> {
          if (auto it = plan->resolved.find(ref); it != plan->resolved.end())
            return std::optional<std::string>{it->second};
          if (auto it = plan->targets.find(ref); it != plan->targets.end())
            return std::optional<std::string>{it->second};
          return std::optional<std::string>{};
        });
        std::vector<fhir::Issue> issues = repo_.check(e.type, *body, id);
        if (issues.empty() && options_.check)
          if (auto ok = options_.check(e.type, *body, id); !ok) issues = std::move(ok.error().issues);
        std::erase_if(issues, [](const fhir::Issue& issue) {
          return issue.severity != fhir::Severity::kError && issue.severity != fhir::Severity::kFatal;
        });
        if (!issues.empty()) {
          // What the patched resource breaks: the element goes to the diagnostics, the entry is the expression.
          for (fhir::Issue& issue : issues) {
            if (!issue.expression.empty())
              issue.diagnostics = "the patched " + where + ": " + issue.expression + ": " + issue.diagnostics;
            issue.expression = e.path;
          }
          return std::unexpected(entry_error(e, fhir::Error{ErrorKind::kUnprocessable, std::move(issues)}));
        }
        return write(i, (*cur)->version + 1, resources::Method::kUpdate, false, &*body);
      };
      // PUT and PATCH
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        if (e.method == "PATCH") {
          if (auto ok = patch_entry(i); !ok) return ok;
          continue;
        }
        if (e.method != "PUT") continue;
        const std::string id = plan->results[i].id.empty() ? e.id : plan->results[i].id;
        auto cur = txn.current(tenant, e.type, id);
        if (!cur) return std::unexpected(entry_error(e, cur.error()));
        std::int64_t version = *cur ? (*cur)->version : 0;
        if (auto ok = check_version(e, id, version); !ok) return ok;
        if (e.if_none_match == "*" && *cur && !(*cur)->deleted)
          return entry_fail(e, ErrorKind::kPreconditionFailed, "duplicate",
                            e.type + "/" + id + " exists (ifNoneMatch *)", e.path + ".request.ifNoneMatch");
        if (auto ok = write(i, version + 1, resources::Method::kUpdate, !*cur || (*cur)->deleted); !ok) return ok;
      }
      return {};
    };
  };

  // A GET entry, through the router.
  auto get_entry = [&](const Entry& e, EntryResult& r) {
    if (!get_) {
      r.status = 501;
      r.outcome =
          fhir::operation_outcome_json(entry_error(e, fhir::Error::make(ErrorKind::kNotSupported, "not-supported",
                                                                        "GET entries are not served here"))
                                           .issues);
      return;
    }
    Request sub;
    sub.method = e.method;
    sub.target = "/fhir/" + e.url;
    sub.headers.emplace_back("accept", "application/fhir+json");
    if (!e.if_none_match.empty()) sub.headers.emplace_back("if-none-match", e.if_none_match);
    if (!e.if_modified_since.empty()) {
      // request.ifModifiedSince is an instant; the router reads an HTTP date.
      auto range = fhir::datetime_range(e.if_modified_since);
      sub.headers.emplace_back("if-modified-since", range ? fhir::format_http_date(range->first) : e.if_modified_since);
    }
    Response resp = get_(sub);
    r.status = resp.status;
    for (const auto& [name, value] : resp.headers) {
      if (name == "ETag") r.etag = value;
      if (name == "Last-Modified")
        if (auto ms = fhir::parse_http_date(value)) r.last_modified = fhir::format_instant(*ms);
    }
    if (resp.body.empty() || e.method == "HEAD") return;
    if (resp.status >= 400) {
      r.outcome = std::move(resp.body);
    } else if (auto parsed = json::parse(resp.body)) {
      r.resource = std::move(*parsed);
    }
  };

  // The response entry for one request entry.
  auto response_entry = [&](std::string& b, const EntryResult& r, bool is_get) {
    b += "{";
    bool written = r.record && !r.record->deleted && !is_get;
    if (written) {
      b += "\"fullUrl\":";
      json::append_quoted(b, base + "/" + r.record->type + "/" + r.record->id);
      if (options_.return_resources && !r.record->body.empty()) {
        b += ",\"resource\":";
        b += r.record->body;
      }
      b += ",";
    } else if (r.resource) {
      b += "\"resource\":";
      json::write_to(b, *r.resource);
      b += ",";
    }
    b += "\"response\":{\"status\":";
    json::append_quoted(b, status_text(r.status));
    if (!r.location.empty()) {
      b += ",\"location\":";
      json::append_quoted(b, r.location);
    }
    if (r.record) {
      b += ",\"etag\":";
      json::append_quoted(b, etag(r.record->version));
      if (r.record->last_updated_ms != 0) {
        b += ",\"lastModified\":";
        json::append_quoted(b, fhir::format_instant(r.record->last_updated_ms));
      }
    } else {
      if (!r.etag.empty()) {
        b += ",\"etag\":";
        json::append_quoted(b, r.etag);
      }
      if (!r.last_modified.empty()) {
        b += ",\"lastModified\":";
        json::append_quoted(b, r.last_modified);
      }
    }
    if (!r.outcome.empty()) {
      b += ",\"outcome\":";
      b += r.outcome;
    }
    b += "}}";
  };

  auto bundle_text = [&](const std::vector<EntryResult>& results, const std::vector<bool>& gets) {
    std::string b = "{\"resourceType\":\"Bundle\",\"id\":";
    json::append_quoted(b, resources::new_resource_id());
    b += ",\"type\":";
    json::append_quoted(b, batch ? "batch-response" : "transaction-response");
    b += ",\"link\":[{\"relation\":\"self\",\"url\":";
    json::append_quoted(b, base);
    b += "}]";
    if (!results.empty()) {
      b += ",\"entry\":[";
      for (std::size_t i = 0; i < results.size(); ++i) {
        if (i != 0) b += ",";
        response_entry(b, results[i], gets[i]);
      }
      b += "]";
    }
    b += "}";
    return b;
  };

  const std::size_t n = entries->items().size();
  std::vector<EntryResult> results(n);
  std::vector<bool> gets(n, false);

  if (!batch) {
    std::vector<Entry> list;
    list.reserve(n);
    std::set<std::string> full_urls;
    for (std::size_t i = 0; i < n; ++i) {
      auto e = read_entry(i);
      if (!e) return fail_all(e.error());
      if (!e->full_url.empty() && !full_urls.insert(e->full_url).second)
        return fail_all(entry_error(
            *e, fhir::Error::make(ErrorKind::kInvalid, "duplicate",
                                  "fullUrl '" + e->full_url + "' is used by another entry", e->path + ".fullUrl")));
      gets[i] = e->method == "GET" || e->method == "HEAD";
      list.push_back(std::move(*e));
    }
    std::vector<Entry> reads;
    for (const Entry& e : list)
      if (e.method == "GET" || e.method == "HEAD") reads.push_back(e);
    auto plan = make_plan(std::move(list));
    if (!plan) return fail_all(plan.error());
    bool any_write = std::any_of((*plan)->entries.begin(), (*plan)->entries.end(),
                                 [](const Entry& e) { return e.method != "GET" && e.method != "HEAD"; });
    if (any_write) {
      auto committed = repo_.store().write(work(*plan));
      if (!committed) return fail_all(committed.error());
    }
    for (std::size_t i = 0; i < n; ++i) {
      results[i] = std::move((*plan)->results[i]);
      if (results[i].record && (*plan)->entries[i].method != "POST") out.written.push_back(*results[i].record);
      if (results[i].record && (*plan)->entries[i].method == "POST" && results[i].status == 201)
        out.written.push_back(*results[i].record);
    }
    for (const Entry& e : reads) get_entry(e, results[e.index]);
    out.body = bundle_text(results, gets);
    return out;
  }

  // batch: each entry on its own, in order.
  std::set<std::string> full_urls;
  for (std::size_t i = 0; i < n; ++i) {
    auto failed = [&](const fhir::Error& err) {
      results[i].status = http_status(err.kind);
      results[i].outcome = fhir::operation_outcome_json(err.issues);
      out.failed.emplace_back(i, err);
    };
    auto e = read_entry(i);
    if (!e) {
      failed(e.error());
      continue;
    }
    if (!e->full_url.empty() && !full_urls.insert(e->full_url).second) {
      failed(entry_error(
          *e, fhir::Error::make(ErrorKind::kInvalid, "duplicate",
                                "fullUrl '" + e->full_url + "' is used by another entry", e->path + ".fullUrl")));
      continue;
    }
    if (e->method == "GET" || e->method == "HEAD") {
      gets[i] = true;
      get_entry(*e, results[i]);
      continue;
    }
    std::vector<Entry> one;
    one.push_back(std::move(*e));
    auto plan = make_plan(std::move(one));
    if (!plan) {
      failed(plan.error());
      continue;
    }
    auto committed = repo_.store().write(work(*plan));
    if (!committed) {
      failed(committed.error());
      continue;
    }
    results[i] = std::move((*plan)->results[0]);
    if (results[i].record && !((*plan)->entries[0].method == "POST" && results[i].status == 200))
      out.written.push_back(*results[i].record);
  }
  out.body = bundle_text(results, gets);
  return out;
}

}  // namespace caduceus::server
