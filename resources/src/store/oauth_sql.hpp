#pragma once

#include <memory>

#include "caduceus/resources/store/oauth_tables.hpp"

namespace soci {
class session;
}

namespace caduceus::resources {

// OAuthTables over a SOCI session that is inside a transaction (the store's writer). The SQL is portable
// (SQLite and PostgreSQL): plain INSERT, SELECT, DELETE and ON CONFLICT DO NOTHING.
std::unique_ptr<OAuthTables> make_sql_oauth_tables(soci::session& sql);

}  // namespace caduceus::resources
