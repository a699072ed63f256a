#include "schema.hpp"

#include <soci/soci.h>

#include <string>
#include <vector>

namespace caduceus::resources {
namespace {

struct Migration {
  int version;
  const char* name;
  std::vector<const char*> statements;
};

// Append only: a migration, once released, is never edited. Every row carries a tenant key.
const std::vector<Migration>& migrations() {
  static const std::vector<Migration> list = {
      {1,
       "resources and their versions",
       {
           // One row per logical resource: which version is current. `rid` is the key that search index
           // tables (and later audit and consent tables) refer to.
           "CREATE TABLE resource ("
           " rid INTEGER PRIMARY KEY,"
           " tenant INTEGER NOT NULL,"
           " type TEXT NOT NULL,"
           " id TEXT NOT NULL,"
           " version INTEGER NOT NULL,"
           " last_updated INTEGER NOT NULL,"
           " deleted INTEGER NOT NULL,"
           " UNIQUE (tenant, type, id))",
           // Every version ever written, immutable. `seq` orders the whole store: it is the change feed that
           // system history (and later subscriptions) read in order. `body` is an opaque blob whose first byte
           // says its format ('j' = JSON), leaving room for compression and encryption.
           "CREATE TABLE resource_version ("
           " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
           " rid INTEGER NOT NULL REFERENCES resource(rid),"
           " tenant INTEGER NOT NULL,"
           " type TEXT NOT NULL,"
           " id TEXT NOT NULL,"
           " version INTEGER NOT NULL,"
           " last_updated INTEGER NOT NULL,"
           " deleted INTEGER NOT NULL,"
           " method INTEGER NOT NULL,"
           " body BLOB,"
           " UNIQUE (rid, version))",
           "CREATE INDEX resource_version_type ON resource_version (tenant, type, seq)",
           "CREATE INDEX resource_version_instance ON resource_version (tenant, type, id, seq)",
           "CREATE INDEX resource_version_updated ON resource_version (tenant, last_updated)",
       }},
      {2,
       "search index tables",
       {
           // One table per search parameter type, one row per value of the current version of a resource
           // (rewritten with each version, in the same transaction). `rid` ties a row to its resource; `param`
           // is the parameter's code. Lookups go by (tenant, type, param, value...); the rid indexes serve
           // rewrites and the joins of chains and includes.
           "CREATE TABLE idx_string (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, normalized TEXT NOT NULL, exact TEXT NOT NULL)",
           "CREATE INDEX idx_string_value ON idx_string (tenant, type, param, normalized)",
           "CREATE INDEX idx_string_rid ON idx_string (rid)",
           "CREATE TABLE idx_token (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, system TEXT, code TEXT NOT NULL, text TEXT NOT NULL)",
           "CREATE INDEX idx_token_value ON idx_token (tenant, type, param, code, system)",
           "CREATE INDEX idx_token_rid ON idx_token (rid)",
           "CREATE TABLE idx_reference (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, target_type TEXT NOT NULL, target_id TEXT NOT NULL, target_version TEXT NOT NULL,"
           " url TEXT NOT NULL, identifier_system TEXT NOT NULL, identifier_value TEXT NOT NULL)",
           "CREATE INDEX idx_reference_value ON idx_reference (tenant, type, param, target_id, target_type)",
           "CREATE INDEX idx_reference_target ON idx_reference (tenant, target_type, target_id)",
           "CREATE INDEX idx_reference_rid ON idx_reference (rid)",
           "CREATE TABLE idx_date (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL)",
           "CREATE INDEX idx_date_low ON idx_date (tenant, type, param, low)",
           "CREATE INDEX idx_date_high ON idx_date (tenant, type, param, high)",
           "CREATE INDEX idx_date_rid ON idx_date (rid)",
           "CREATE TABLE idx_number (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low REAL NOT NULL, high REAL NOT NULL, value TEXT NOT NULL)",
           "CREATE INDEX idx_number_value ON idx_number (tenant, type, param, low)",
           "CREATE INDEX idx_number_rid ON idx_number (rid)",
           "CREATE TABLE idx_quantity (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low REAL NOT NULL, high REAL NOT NULL, value TEXT NOT NULL,"
           " system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL)",
           "CREATE INDEX idx_quantity_value ON idx_quantity (tenant, type, param, code, low)",
           "CREATE INDEX idx_quantity_rid ON idx_quantity (rid)",
           "CREATE TABLE idx_uri (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, uri TEXT NOT NULL)",
           "CREATE INDEX idx_uri_value ON idx_uri (tenant, type, param, uri)",
           "CREATE INDEX idx_uri_rid ON idx_uri (rid)",
       }},
  };
  return list;
}

}  // namespace

fhir::Result<void> apply_sqlite_migrations(soci::session& sql) {
  const Migration* failing = nullptr;
  try {
    sql << "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
           "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))";
    for (const Migration& m : migrations()) {
      failing = &m;
      soci::transaction txn(sql);
      int seen = 0;
      sql << "SELECT COUNT(*) FROM schema_migrations WHERE version = :v", soci::into(seen), soci::use(m.version);
      if (seen > 0) {
        txn.commit();
        continue;
      }
      for (const char* stmt : m.statements) sql << stmt;
      std::string name = m.name;
      sql << "INSERT INTO schema_migrations(version, name) VALUES(:v, :n)", soci::use(m.version), soci::use(name);
      txn.commit();
    }
  } catch (const std::exception& e) {
    return fhir::fail(fhir::ErrorKind::kUnavailable, "exception",
                      std::string("schema migration ") + (failing ? std::to_string(failing->version) : "setup") +
                          " failed: " + e.what());
  }
  return {};
}

}  // namespace caduceus::resources
