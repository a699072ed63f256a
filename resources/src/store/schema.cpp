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
