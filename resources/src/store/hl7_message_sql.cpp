#include "hl7_message_sql.hpp"

#include <string>

namespace caduceus::resources {

SqlQuery hl7_message_list_sql(TenantId tenant, const Hl7MessageQuery& query, bool inbound, bool postgres) {
  SqlQuery q;
  q.sql = inbound ? kHl7InboundSelect : kHl7OutboundSelect;
  q.binds = {std::int64_t{tenant}};
  const std::string time = inbound ? "received" : "created";
  if (!query.message_type.empty()) {
    // Equal, or a prefix ending at a component separator ("ADT^A01" matches "ADT^A01^ADT_A01").
    q.sql += " AND (message_type = ? OR substr(message_type, 1, ?) = ?)";
    q.binds.emplace_back(query.message_type);
    q.binds.emplace_back(static_cast<std::int64_t>(query.message_type.size() + 1));
    q.binds.emplace_back(query.message_type + "^");
  }
  if (!query.statuses.empty()) {
    q.sql += " AND status IN (";
    for (std::size_t i = 0; i < query.statuses.size(); ++i) {
      q.sql += i == 0 ? "?" : ", ?";
      q.binds.emplace_back(query.statuses[i]);
    }
    q.sql += ")";
  }
  if (!query.control_id.empty()) {
    q.sql += " AND control_id = ?";
    q.binds.emplace_back(query.control_id);
  }
  if (query.since_ms) {
    q.sql += " AND " + time + " >= ?";
    q.binds.emplace_back(*query.since_ms);
  }
  if (query.until_ms) {
    q.sql += " AND " + time + " < ?";
    q.binds.emplace_back(*query.until_ms);
  }
  if (inbound && !query.resource.empty()) {
    // `resources` is a space-separated list of Type/id/_history/N.
    q.sql += postgres ? " AND strpos(' ' || resources, ?) > 0" : " AND instr(' ' || resources, ?) > 0";
    q.binds.emplace_back(" " + query.resource + "/_history/");
  }
  if (!inbound && !query.destination.empty()) {
    q.sql += " AND destination = ?";
    q.binds.emplace_back(query.destination);
  }
  if (query.before) {
    q.sql += " AND (" + time + " < ? OR (" + time + " = ? AND id < ?))";
    q.binds.emplace_back(query.before->first);
    q.binds.emplace_back(query.before->first);
    q.binds.emplace_back(query.before->second);
  }
  q.sql += " ORDER BY " + time + " DESC, id DESC LIMIT ?";
  q.binds.emplace_back(static_cast<std::int64_t>(query.limit));
  return q;
}

}  // namespace caduceus::resources
