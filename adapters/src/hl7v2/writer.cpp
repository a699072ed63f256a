#include "writer.hpp"

#include <map>
#include <optional>
#include <utility>

#include "caduceus/fhir/datetime.hpp"
#include "caduceus/resources/search_query.hpp"
#include "mapping_util.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using fhir::ErrorKind;
using fhir::Result;
using fhir::json::Value;
using util::codeable;
using util::push;
using util::reference;

// Replaces every {"reference": local} in v by the Type/id the local name stands for (the names replaced are added
// to `used` when given).
void resolve_references(Value& v, const std::map<std::string, std::string>& locals,
                        std::vector<std::string>* used = nullptr) {
  if (v.is_array()) {
    for (Value& item : v.items()) resolve_references(item, locals, used);
  } else if (v.is_object()) {
    for (auto& [key, member] : v.members()) {
      if (key == "reference" && member.is_string()) {
        if (auto it = locals.find(member.text()); it != locals.end()) {
          if (used != nullptr) used->push_back(it->first);
          member = Value::string(it->second);
        }
      } else {
        resolve_references(member, locals, used);
      }
    }
  }
}

// The criteria of a resource with the local names in their values replaced, and their text (Type?a=b&c=d).
std::pair<std::vector<std::pair<std::string, std::string>>, std::string> criteria_of(
    const MappedResource& r, const std::map<std::string, std::string>& locals) {
  std::vector<std::pair<std::string, std::string>> criteria = r.criteria;
  std::string text;
  for (auto& [name, value] : criteria) {
    if (auto it = locals.find(value); it != locals.end()) value = it->second;
    text += (text.empty() ? "" : "&") + name + "=" + value;
  }
  return {std::move(criteria), std::move(text)};
}

// `patch`'s members merged into `body`: array items that body lacks are added, anything else replaced.
void amend(Value& body, const Value& patch) {
  for (const auto& [key, value] : patch.members()) {
    if (key == "resourceType" || key == "id") continue;
    Value* current = body.find(key);
    if (value.is_array() && current != nullptr && current->is_array()) {
      for (const Value& item : value.items()) {
        bool present = false;
        for (const Value& have : current->items()) present = present || have == item;
        if (!present) current->push_back(item);
      }
    } else {
      body.set(key, value);
    }
  }
}

}  // namespace

PreparedMapping prepare_mapping(const resources::Repository& repository, const Mapping& mapping) {
  PreparedMapping out;
  std::map<std::string, std::size_t> by_criteria;  // as write_mapping: the same criteria twice, the same resource
  for (const MappedResource& r : mapping.resources) {
    auto [criteria, text] = criteria_of(r, out.locals);
    auto [it, first] = by_criteria.emplace(r.type + "?" + text, out.ids.size());
    out.ids.push_back(first ? resources::new_resource_id() : out.ids[it->second]);
    if (!r.local.empty()) out.locals[r.local] = r.type + "/" + out.ids.back();
  }
  for (std::size_t i = 0; i < mapping.resources.size(); ++i) {
    const MappedResource& r = mapping.resources[i];
    Value body = r.resource;
    out.uses.emplace_back();
    resolve_references(body, out.locals, &out.uses.back());
    resources::set_id(body, out.ids[i]);
    auto prepared = repository.prepare(r.type, out.ids[i], std::move(body));
    // (a body that fails the check is checked again in the job, which answers the error)
    if (prepared)
      out.writes.push_back(std::move(*prepared));
    else
      out.writes.emplace_back();
  }
  return out;
}

Result<std::vector<std::string>> write_mapping(
    resources::Repository& repository, resources::Transaction& txn, resources::TenantId tenant, const Mapping& mapping,
    const std::shared_ptr<const resources::SearchParameterRegistry>& registry,
    const resources::InboundMessageRecord& message, bool keep_unchanged, const PreparedMapping* prepared) {
  if (prepared != nullptr && prepared->ids.size() != mapping.resources.size()) prepared = nullptr;
  const resources::Definitions& definitions = repository.definitions();
  resources::SearchLimits limits;
  limits.strict = true;
  // 1. Which resource each one is.
  std::map<std::string, std::string> locals;  // local name -> Type/id
  std::vector<std::string> ids;
  std::vector<bool> exists;
  std::map<std::string, std::size_t> by_criteria;  // Type?criteria -> the first resource of the message with them
  for (const MappedResource& r : mapping.resources) {
    auto [criteria, text] = criteria_of(r, locals);
    // The same criteria twice in one message (one specimen under two orders): the same resource, written again.
    if (auto [it, first] = by_criteria.emplace(r.type + "?" + text, ids.size()); !first) {
      exists.push_back(true);
      ids.push_back(ids[it->second]);
      if (!r.local.empty()) locals[r.local] = r.type + "/" + ids.back();
      continue;
    }
    auto query = resources::parse_search(r.type, criteria, *registry, definitions, limits);
    if (!query) return std::unexpected(query.error());
    auto matches = txn.search_ids(tenant, *query, 8);
    if (!matches) return std::unexpected(matches.error());
    std::vector<std::string> found;
    for (const auto& [type, id] : *matches) {
      bool taken = false;  // matched by an earlier resource of this message (A40: the survivor has both ids)
      for (std::size_t i = 0; i < ids.size(); ++i) taken = taken || (mapping.resources[i].type == type && ids[i] == id);
      if (!taken) found.push_back(id);
    }
    if (found.size() > 1)
      return fhir::fail(ErrorKind::kPreconditionFailed, "multiple-matches",
                        std::to_string(found.size()) + " " + r.type + " resources match '" + text +
                            "': the message cannot tell which one it is about",
                        r.type);
    exists.push_back(!found.empty());
    // (a new one: the id prepared for it, whose body may then be written as prepared)
    ids.push_back(!found.empty()        ? found.front()
                  : prepared != nullptr ? prepared->ids[ids.size()]
                                        : resources::new_resource_id());
    if (!r.local.empty()) locals[r.local] = r.type + "/" + ids.back();
  }

  // 2.-3. The writes.
  std::vector<std::string> written;
  Value targets = Value::array();
  for (std::size_t i = 0; i < mapping.resources.size(); ++i) {
    const MappedResource& r = mapping.resources[i];
    // Prepared before the job: written as it is when it is a plain write (no amend of a match, no comparison) and
    // every local name its body refers to stands for what was predicted.
    if (prepared != nullptr && prepared->writes[i] && !keep_unchanged &&
        (r.write == MappedResource::Write::kUpdate || !exists[i])) {
      bool same = true;
      for (const std::string& name : prepared->uses[i]) {
        auto want = prepared->locals.find(name);
        auto have = locals.find(name);
        same = same && want != prepared->locals.end() && have != locals.end() && want->second == have->second;
      }
      if (same) {
        auto w = repository.update_in(txn, tenant, r.type, ids[i], *prepared->writes[i]);
        if (!w) return std::unexpected(w.error());
        std::string ref = w->record.type + "/" + w->record.id + "/_history/" + std::to_string(w->record.version);
        targets.push_back(reference(ref));
        written.push_back(std::move(ref));
        continue;
      }
    }
    Value body = r.resource;
    resolve_references(body, locals);                 // (before an amend compares it with what is stored)
    std::optional<resources::VersionRecord> current;  // (read when it counts)
    std::optional<Value> stored;                      // its body without meta
    if ((r.write == MappedResource::Write::kAmend || keep_unchanged) && exists[i]) {
      auto found = txn.current_record(tenant, r.type, ids[i]);
      if (!found) return std::unexpected(found.error());
      if (*found && !(*found)->deleted) {
        auto parsed = fhir::json::parse((*found)->body);
        if (!parsed) return std::unexpected(parsed.error());
        parsed->erase("meta");
        current = std::move(**found);
        stored = std::move(*parsed);
      }
    }
    if (r.write == MappedResource::Write::kAmend && stored) {
      Value merged = *stored;
      amend(merged, body);
      body = std::move(merged);
    }
    resources::set_id(body, ids[i]);
    if (keep_unchanged && stored && *stored == body) {
      std::string ref = r.type + "/" + ids[i] + "/_history/" + std::to_string(current->version);
      targets.push_back(reference(ref));
      written.push_back(std::move(ref));
      continue;
    }
    // (Found by its criteria above, in this transaction: written by id, without searching again.)
    auto w = repository.update_in(txn, tenant, r.type, ids[i], std::move(body));
    if (!w) return std::unexpected(w.error());
    std::string ref = w->record.type + "/" + w->record.id + "/_history/" + std::to_string(w->record.version);
    targets.push_back(reference(ref));
    written.push_back(std::move(ref));
  }

  // 4. The Provenance of the message.
  std::string message_id = std::to_string(message.id);
  Value p = Value::object();
  p.set("resourceType", Value::string("Provenance"));
  p.set("target", std::move(targets));
  if (!mapping.occurred.empty()) p.set("occurredDateTime", Value::string(mapping.occurred));
  p.set("recorded", Value::string(fhir::format_instant(txn.now_ms())));
  p.set("activity", codeable("http://terminology.hl7.org/CodeSystem/v3-DataOperation", "UPDATE", "revise"));
  Value agent = Value::object();
  agent.set("type", codeable("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"));
  Value who = Value::object();
  std::string sender = message.sending_application;
  if (!message.sending_facility.empty()) sender += (sender.empty() ? "" : " at ") + message.sending_facility;
  who.set("display", Value::string(sender.empty() ? "unknown HL7 v2 sender" : sender));
  agent.set("who", std::move(who));
  push(p, "agent", std::move(agent));
  Value entity = Value::object();
  entity.set("role", Value::string("source"));
  Value what = Value::object();
  Value identifier = Value::object();
  identifier.set("system", Value::string("urn:caduceus:hl7v2:message"));
  identifier.set("value", Value::string(message_id));
  what.set("identifier", std::move(identifier));
  what.set("display", Value::string("HL7 v2 " + message.message_type + " " + message.control_id));
  entity.set("what", std::move(what));
  push(p, "entity", std::move(entity));
  std::string provenance_id = "hl7v2-" + message_id;
  resources::set_id(p, provenance_id);
  auto w = repository.update_in(txn, tenant, "Provenance", provenance_id, std::move(p));
  if (!w) return std::unexpected(w.error());
  written.push_back(w->record.type + "/" + w->record.id + "/_history/" + std::to_string(w->record.version));
  return written;
}

}  // namespace caduceus::adapters::hl7v2
