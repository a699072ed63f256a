#pragma once
// The SQL of the HL7 v2 message monitor's lists, shared by both backends (not a public interface).

#include "caduceus/resources/store/store.hpp"
#include "search_sql.hpp"

namespace caduceus::resources {

// The columns of hl7_inbound as the stores read them (id, sending_application, sending_facility, control_id,
// message_type, received, raw, status, ack, resources, error, updated, replays, replayed), with `WHERE tenant = ?`.
inline constexpr const char* kHl7InboundSelect =
    "SELECT id, sending_application, sending_facility, control_id, message_type, received, raw, status, ack, "
    "resources, error, updated, replays, replayed FROM hl7_inbound WHERE tenant = ?";
// The columns of hl7_outbound (id, destination, message_type, control_id, message, source, status, attempts,
// last_error, ack, created, updated, next_attempt), with `WHERE tenant = ?`.
inline constexpr const char* kHl7OutboundSelect =
    "SELECT id, destination, message_type, control_id, message, source, status, attempts, last_error, ack, "
    "created, updated, next_attempt FROM hl7_outbound WHERE tenant = ?";

// The list of `query` over hl7_inbound (inbound) or hl7_outbound, in the SQLite dialect with `?` placeholders
// (`postgres`: the functions PostgreSQL has instead; the placeholders are renumbered by the caller).
SqlQuery hl7_message_list_sql(TenantId tenant, const Hl7MessageQuery& query, bool inbound, bool postgres);

}  // namespace caduceus::resources
