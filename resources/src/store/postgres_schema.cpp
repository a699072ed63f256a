// The PostgreSQL schema: the same tables as SQLite's (schema.cpp), in PostgreSQL's dialect. Append only: a
// migration, once released, is never edited. Every row carries a tenant key.
#include "postgres_schema.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace caduceus::resources {
namespace {

struct Migration {
  int version;
  const char* name;
  std::vector<const char*> statements;
};

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> list = {
      {1,
       "resources and their versions",
       {
           // One row per logical resource: which version is current. `rid` is the key that the search index
           // tables (and later audit and consent tables) refer to.
           "CREATE TABLE resource ("
           " rid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
           " tenant BIGINT NOT NULL,"
           " type TEXT NOT NULL,"
           " id TEXT NOT NULL,"
           " version BIGINT NOT NULL,"
           " last_updated BIGINT NOT NULL,"
           " deleted SMALLINT NOT NULL,"
           " UNIQUE (tenant, type, id))",
           // Every version ever written, immutable. `seq` orders the whole store (the change feed that system
           // history reads): it is taken while the writer holds the store_clock row, so seq order is commit
           // order across every server process. `body`: first byte says its format ('j' = JSON).
           "CREATE TABLE resource_version ("
           " seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
           " rid BIGINT NOT NULL REFERENCES resource(rid),"
           " tenant BIGINT NOT NULL,"
           " type TEXT NOT NULL,"
           " id TEXT NOT NULL,"
           " version BIGINT NOT NULL,"
           " last_updated BIGINT NOT NULL,"
           " deleted SMALLINT NOT NULL,"
           " method SMALLINT NOT NULL,"
           " body BYTEA,"
           " UNIQUE (rid, version))",
           "CREATE INDEX resource_version_type ON resource_version (tenant, type, seq)",
           "CREATE INDEX resource_version_instance ON resource_version (tenant, type, id, seq)",
           "CREATE INDEX resource_version_updated ON resource_version (tenant, last_updated)",
           // One row: the store's clock (the highest lastUpdated given so far). Writers lock it (SELECT ... FOR
           // UPDATE) for the length of their transaction: writes of all server processes are serialized through
           // it, which keeps seq in commit order and lastUpdated from running backwards.
           "CREATE TABLE store_clock (id INTEGER PRIMARY KEY CHECK (id = 1), last_ms BIGINT NOT NULL)",
           "INSERT INTO store_clock VALUES (1, 0)",
       }},
      {2,
       "search index tables",
       {
           // As in SQLite (schema.cpp migration 2): one table per parameter type, keyed by (rid, param, value...).
           "CREATE TABLE idx_string (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, normalized TEXT NOT NULL, exact TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, normalized, exact))",
           "CREATE INDEX idx_string_value ON idx_string (tenant, type, param, normalized text_pattern_ops)",
           "CREATE TABLE idx_token (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, system, code, text))",
           "CREATE INDEX idx_token_value ON idx_token (tenant, type, param, code, system)",
           "CREATE TABLE idx_reference (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, target_type TEXT NOT NULL, target_id TEXT NOT NULL, target_version TEXT NOT NULL,"
           " url TEXT NOT NULL, identifier_system TEXT NOT NULL, identifier_value TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, target_type, target_id, target_version, url, identifier_system,"
           " identifier_value))",
           "CREATE INDEX idx_reference_target ON idx_reference (tenant, target_id, target_type, type, param)",
           "CREATE TABLE idx_date (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low BIGINT NOT NULL, high BIGINT NOT NULL,"
           " PRIMARY KEY (rid, param, low, high))",
           "CREATE INDEX idx_date_value ON idx_date (tenant, type, param, low, high)",
           "CREATE TABLE idx_number (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL, value TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, low, high, value))",
           "CREATE INDEX idx_number_value ON idx_number (tenant, type, param, low)",
           "CREATE TABLE idx_quantity (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL,"
           " value TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, low, high, value, system, code, unit))",
           "CREATE INDEX idx_quantity_value ON idx_quantity (tenant, type, param, code, low)",
           "CREATE TABLE idx_uri (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, uri TEXT NOT NULL, PRIMARY KEY (rid, param, uri))",
           "CREATE INDEX idx_uri_value ON idx_uri (tenant, type, param, uri)",
           "CREATE TABLE idx_composite (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, item BIGINT NOT NULL, component BIGINT NOT NULL,"
           " system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL, normalized TEXT NOT NULL,"
           " exact TEXT NOT NULL, low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL, unit TEXT NOT NULL,"
           " value TEXT NOT NULL, target_type TEXT NOT NULL, target_id TEXT NOT NULL, url TEXT NOT NULL,"
           " uri TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, item, component, system, code, text, normalized, exact, low, high, unit,"
           " target_type, target_id, url, uri))",
           "CREATE INDEX idx_composite_value ON idx_composite (tenant, type, param, component, code, low)",
           // :of-type on Identifier tokens.
           "CREATE TABLE idx_identifier_type (rid BIGINT NOT NULL, tenant BIGINT NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, type_system TEXT NOT NULL, type_code TEXT NOT NULL, value TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, type_system, type_code, value))",
           "CREATE INDEX idx_identifier_type_value ON idx_identifier_type (tenant, type, param, value, type_code)",
           // _text and _content: the text of the current version, one row per resource. (The full-text search
           // over it, with a GIN index, comes with the search port.)
           "CREATE TABLE idx_text (rid BIGINT PRIMARY KEY, tenant BIGINT NOT NULL, narrative TEXT NOT NULL,"
           " content TEXT NOT NULL)",
       }},
      {3,
       "reindex jobs",
       {
           "CREATE TABLE reindex_job (tenant BIGINT NOT NULL, id BIGINT NOT NULL, types TEXT NOT NULL,"
           " params TEXT NOT NULL, search_parameter TEXT NOT NULL, state TEXT NOT NULL,"
           " processed BIGINT NOT NULL, total BIGINT NOT NULL, last_rid BIGINT NOT NULL,"
           " max_rid BIGINT NOT NULL, message TEXT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL,"
           " PRIMARY KEY (tenant, id))",
       }},
      {4,
       "codes by patient",
       {
           // As SQLite's migration 5 (see schema.cpp): the token rows again under the patient that the resource's
           // `patient` parameter refers to, for `patient=X&code=...` in one seek. Deleted by rid (its own index
           // here), filled back from idx_reference and idx_token after each write of index rows.
           "CREATE TABLE idx_patient_token (tenant BIGINT NOT NULL, target_id TEXT NOT NULL,"
           " target_type TEXT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, code TEXT NOT NULL,"
           " system TEXT NOT NULL, rid BIGINT NOT NULL,"
           " PRIMARY KEY (tenant, target_id, target_type, type, param, code, system, rid))",
           "CREATE INDEX idx_patient_token_rid ON idx_patient_token (rid)",
           "INSERT INTO idx_patient_token SELECT r.tenant, r.target_id, r.target_type, t.type, t.param, t.code,"
           " t.system, t.rid FROM idx_reference r JOIN idx_token t ON t.rid = r.rid WHERE r.param = 'patient'"
           " AND r.target_id <> '' AND t.code <> '' AND t.param <> 'identifier' AND substr(t.param, 1, 1) <> '_'"
           " ON CONFLICT DO NOTHING",
       }},
      {5,
       "users",
       {
           // As SQLite's migration 7 (see schema.cpp): the accounts that sign in.
           "CREATE TABLE users (tenant BIGINT NOT NULL, username TEXT NOT NULL, role TEXT NOT NULL,"
           " fhir_user TEXT NOT NULL, password_hash TEXT NOT NULL, must_change_password BIGINT NOT NULL,"
           " disabled BIGINT NOT NULL, totp_secret TEXT NOT NULL, totp_pending TEXT NOT NULL,"
           " totp_last_step BIGINT NOT NULL, failed_count BIGINT NOT NULL, next_attempt BIGINT NOT NULL,"
           " locked_until BIGINT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL,"
           " last_sign_in BIGINT NOT NULL, PRIMARY KEY (tenant, username))",
       }},
      {6,
       "OAuth clients, used client-assertion ids, revoked tokens",
       {
           // As SQLite's migration 6 (see schema.cpp).
           "CREATE TABLE oauth_client (tenant BIGINT NOT NULL, client_id TEXT NOT NULL, name TEXT NOT NULL,"
           " kind TEXT NOT NULL, secret_hash TEXT NOT NULL, jwks TEXT NOT NULL, jwks_url TEXT NOT NULL,"
           " redirect_uris TEXT NOT NULL, scopes TEXT NOT NULL, created BIGINT NOT NULL,"
           " PRIMARY KEY (tenant, client_id))",
           "CREATE TABLE oauth_used_jti (tenant BIGINT NOT NULL, client_id TEXT NOT NULL, jti TEXT NOT NULL,"
           " expires BIGINT NOT NULL, PRIMARY KEY (tenant, client_id, jti))",
           "CREATE INDEX oauth_used_jti_expires ON oauth_used_jti (tenant, expires)",
           "CREATE TABLE oauth_revoked_token (tenant BIGINT NOT NULL, jti TEXT NOT NULL, expires BIGINT NOT NULL,"
           " PRIMARY KEY (tenant, jti))",
       }},
      {7,
       "inbound HL7 v2 messages",
       {
           // As SQLite's migration 8 (see schema.cpp): `raw` and `ack` start with a format byte ('r').
           "CREATE TABLE hl7_inbound (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant BIGINT NOT NULL,"
           " sending_application TEXT NOT NULL, sending_facility TEXT NOT NULL, control_id TEXT NOT NULL,"
           " message_type TEXT NOT NULL, received BIGINT NOT NULL, raw BYTEA NOT NULL, status TEXT NOT NULL,"
           " ack BYTEA NOT NULL, resources TEXT NOT NULL, error TEXT NOT NULL, updated BIGINT NOT NULL)",
           "CREATE UNIQUE INDEX hl7_inbound_control ON hl7_inbound"
           " (tenant, sending_application, sending_facility, control_id) WHERE control_id <> ''",
           "CREATE INDEX hl7_inbound_received ON hl7_inbound (tenant, received)",
       }},
      {8,
       "full text",
       {
           // _text and _content: idx_text holds the text folded by the writer (case and accents, as string search
           // folds them: pg_full_text.hpp), and its tsvectors (the 'simple' configuration: words as they are, no
           // stemming, no stop words, so that it serves every language), each with a GIN index. _text searches the
           // narrative, _content the narrative and the resource's other text (full_text.hpp). (Rows written before this
           // migration hold unfolded text: lower case still matches, accents need a $reindex.)
           "ALTER TABLE idx_text"
           " ADD COLUMN narrative_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', narrative)) STORED,"
           " ADD COLUMN content_tsv tsvector"
           " GENERATED ALWAYS AS (to_tsvector('simple', narrative || ' ' || content)) STORED",
           "CREATE INDEX idx_text_narrative ON idx_text USING gin (narrative_tsv)",
           "CREATE INDEX idx_text_content ON idx_text USING gin (content_tsv)",
       }},
      {9,
       "OAuth grants: authorization codes, refresh tokens, launch contexts, sign-ins in progress",
       {
           // As SQLite's migration 9 (see schema.cpp).
           "CREATE TABLE oauth_grant (tenant BIGINT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,"
           " family TEXT NOT NULL, data TEXT NOT NULL, expires BIGINT NOT NULL, consumed BIGINT NOT NULL,"
           " PRIMARY KEY (tenant, kind, key))",
           "CREATE INDEX oauth_grant_family ON oauth_grant (tenant, family)",
           "CREATE INDEX oauth_grant_expires ON oauth_grant (tenant, expires)",
       }},
      {10,
       "outbound HL7 v2 messages",
       {
           // As SQLite's migration 10 (see schema.cpp).
           "CREATE TABLE hl7_outbound (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant BIGINT NOT NULL,"
           " destination TEXT NOT NULL, message_type TEXT NOT NULL, control_id TEXT NOT NULL, message BYTEA NOT NULL,"
           " source TEXT NOT NULL, status TEXT NOT NULL, attempts BIGINT NOT NULL, last_error TEXT NOT NULL,"
           " ack BYTEA NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL, next_attempt BIGINT NOT NULL)",
           "CREATE INDEX hl7_outbound_pending ON hl7_outbound (tenant, destination, status, id)",
       }},
      {11,
       "HL7 v2 message monitor",
       {
           // As SQLite's migration 11 (see schema.cpp).
           "ALTER TABLE hl7_inbound ADD COLUMN replays BIGINT NOT NULL DEFAULT 0",
           "ALTER TABLE hl7_inbound ADD COLUMN replayed BIGINT NOT NULL DEFAULT 0",
           "CREATE INDEX hl7_outbound_created ON hl7_outbound (tenant, created)",
       }},
      {12,
       "OAuth clients authenticated by mutual TLS",
       {
           // As SQLite's migration 13 (see schema.cpp).
           "ALTER TABLE oauth_client ADD COLUMN tls_subject TEXT NOT NULL DEFAULT ''",
       }},
      {13,
       "full text: one tsvector, made by the writer",
       {
           // The two generated tsvectors of migration 8 (to_tsvector twice over the narrative, two GIN indexes)
           // become one, written by the server (pg_full_text.hpp's tsvector_literal: its words are FTS5's, and
           // PostgreSQL reads that form for about a third of to_tsvector's CPU): the narrative's words with weight
           // A (_text matches `'word':A`), then the content's (_content matches any). Rows already there get it from
           // to_tsvector here (PostgreSQL's parser: a $reindex gives them the writer's words).
           "ALTER TABLE idx_text DROP COLUMN narrative_tsv, DROP COLUMN content_tsv, ADD COLUMN tsv tsvector",
           "UPDATE idx_text SET tsv = setweight(to_tsvector('simple', narrative), 'A') ||"
           " to_tsvector('simple', content)",
           "ALTER TABLE idx_text ALTER COLUMN tsv SET NOT NULL",
           "CREATE INDEX idx_text_tsv ON idx_text USING gin (tsv)",
       }},
      {14,
       "_id and _lastUpdated read from the resource row",
       {
           // As SQLite's migration 14 (see schema.cpp).
           "CREATE INDEX resource_updated ON resource (tenant, type, last_updated)",
           "DELETE FROM idx_token WHERE param = '_id'",
           "DELETE FROM idx_date WHERE param = '_lastUpdated'",
       }},
      {15,
       "resource_version.rid without a foreign key",
       {
           // The version and its resource row are written by one statement (txn_append: the upsert's RETURNING rid
           // feeds the version's INSERT) and resource rows are never deleted, so the key held by construction.
           // Its check was one query per version, planned once per connection and cached: on a connection that
           // first wrote into a near-empty table the cached plan was a sequential scan of `resource`, kept for the
           // connection's life, so that every version read the whole table (a fresh store's import or bench went
           // quadratic: 8,420 scans reading 36 million rows for 8,417 imported resources).
           "ALTER TABLE resource_version DROP CONSTRAINT IF EXISTS resource_version_rid_fkey",
       }},
      {16,
       "idx_identifier_type without a value index",
       {
           // As SQLite's migration 15 (see schema.cpp): :of-type finds its candidates through idx_token_value and
           // checks them on this table's primary key.
           "DROP INDEX IF EXISTS idx_identifier_type_value",
       }},
      {17,
       "idx_composite_value for first components only",
       {
           // As SQLite's migration 16 (see schema.cpp): composite searches find items by their first component.
           "DROP INDEX IF EXISTS idx_composite_value",
           "CREATE INDEX idx_composite_value ON idx_composite (tenant, type, param, component, code, low)"
           " WHERE component = 0",
       }},
      {18,
       "idx_patient_token without status",
       {
           // As SQLite's migration 17 (see schema.cpp).
           "DELETE FROM idx_patient_token WHERE param = 'status'",
       }},
      {19,
       "lz4 for bodies and full text",
       {
           // Values over ~2 KB (most bodies, much of idx_text) are compressed when stored: lz4 costs the writer a
           // fraction of pglz's time (pglz was 6-7 % of the writer backend's CPU in an import) and reads decompress
           // faster. Only new values; a server built without lz4 keeps pglz.
           "DO $$ BEGIN "
           "ALTER TABLE resource_version ALTER COLUMN body SET COMPRESSION lz4; "
           "ALTER TABLE idx_text ALTER COLUMN narrative SET COMPRESSION lz4, ALTER COLUMN content SET COMPRESSION lz4; "
           "EXCEPTION WHEN feature_not_supported THEN NULL; END $$",
       }},
      {20,
       "no planner statistics for bodies and full text",
       {
           // No query filters or joins on them: ANALYZE (and autovacuum's) would read and detoast them for nothing
           // (a third of resource_version's ANALYZE).
           "ALTER TABLE resource_version ALTER COLUMN body SET STATISTICS 0",
           "ALTER TABLE idx_text ALTER COLUMN narrative SET STATISTICS 0, ALTER COLUMN content SET STATISTICS 0",
       }},
      {21,
       "indexes waiting for the end of a bulk load",
       {
           // As SQLite's migration 19: drop_value_indexes() notes here what it dropped.
           "CREATE TABLE deferred_index (name TEXT PRIMARY KEY, sql TEXT NOT NULL)",
       }},
      {22,
       "search index rows found by rid",
       {
           // The value tables' primary keys were every column of a row after rid: each row written cost a descent
           // of that key, comparing its text columns one by one (a fifth of the writer backend's instructions in an
           // import). Nothing needs them unique: a version's rows are written once, each distinct (IndexBatch), and
           // deleted by rid before the next version's. A plain index on rid serves those deletes and the checks
           // of a match by rid (:of-type, _has, sorting), and its equal keys share one entry (deduplication).
           "ALTER TABLE idx_string DROP CONSTRAINT idx_string_pkey",
           "CREATE INDEX idx_string_rid ON idx_string (rid)",
           "ALTER TABLE idx_token DROP CONSTRAINT idx_token_pkey",
           "CREATE INDEX idx_token_rid ON idx_token (rid)",
           "ALTER TABLE idx_reference DROP CONSTRAINT idx_reference_pkey",
           "CREATE INDEX idx_reference_rid ON idx_reference (rid)",
           "ALTER TABLE idx_date DROP CONSTRAINT idx_date_pkey",
           "CREATE INDEX idx_date_rid ON idx_date (rid)",
           "ALTER TABLE idx_number DROP CONSTRAINT idx_number_pkey",
           "CREATE INDEX idx_number_rid ON idx_number (rid)",
           "ALTER TABLE idx_quantity DROP CONSTRAINT idx_quantity_pkey",
           "CREATE INDEX idx_quantity_rid ON idx_quantity (rid)",
           "ALTER TABLE idx_uri DROP CONSTRAINT idx_uri_pkey",
           "CREATE INDEX idx_uri_rid ON idx_uri (rid)",
           "ALTER TABLE idx_composite DROP CONSTRAINT idx_composite_pkey",
           "CREATE INDEX idx_composite_rid ON idx_composite (rid)",
           "ALTER TABLE idx_identifier_type DROP CONSTRAINT idx_identifier_type_pkey",
           "CREATE INDEX idx_identifier_type_rid ON idx_identifier_type (rid)",
           // idx_patient_token stays unique (kPatientTokenFill can meet a pair twice), by a key that starts with
           // rid (rows appended in rid order: a cheap descent); the search's (patient, code) order becomes an
           // index of its own, which a bulk load builds once at its end.
           "ALTER TABLE idx_patient_token DROP CONSTRAINT idx_patient_token_pkey",
           "ALTER TABLE idx_patient_token ADD PRIMARY KEY (rid, param, code, system, target_id, target_type)",
           "DROP INDEX idx_patient_token_rid",
           "CREATE INDEX idx_patient_token_value ON idx_patient_token (tenant, target_id, target_type, type, param,"
           " code, system, rid)",
       }},
  };
  return list;
}

}  // namespace

fhir::Result<std::vector<std::pair<std::string, std::string>>> deferred_indexes(pg::Connection& conn) {
  // (Largest table first: two connections building them finish together.)
  auto r = conn.exec(
      "SELECT d.name, d.sql FROM deferred_index d LEFT JOIN pg_class t ON t.relkind = 'r' AND t.relname = "
      "substring(d.sql FROM ' ON (?:[^ .]+\\.)?([^ .]+) USING ') AND t.relnamespace = "
      "(SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
      "ORDER BY coalesce(pg_relation_size(t.oid), 0) DESC, d.name",
      {});
  if (!r) return std::unexpected(pg::to_error(r.error(), "the deferred indexes"));
  std::vector<std::pair<std::string, std::string>> out;
  for (int i = 0; i < r->rows(); ++i) out.emplace_back(r->text(i, 0), r->text(i, 1));
  return out;
}

fhir::Result<void> build_deferred_index(pg::Connection& conn, const std::string& name, const std::string& sql) {
  if (auto r = conn.exec(sql); !r) return std::unexpected(pg::to_error(r.error(), "building index " + name));
  if (auto r = conn.exec("DELETE FROM deferred_index WHERE name = $1", {pg::Param(name)}); !r)
    return std::unexpected(pg::to_error(r.error(), "building index " + name));
  return {};
}

fhir::Result<bool> drop_value_indexes(pg::Connection& conn) {
  auto step = [&](const std::string& sql, const std::vector<pg::Param>& params = {}) -> fhir::Result<pg::Result> {
    auto r = params.empty() ? conn.exec(sql) : conn.exec(sql, params);
    if (!r) {
      (void)conn.exec("ROLLBACK");
      return std::unexpected(pg::to_error(r.error(), "deferring the search indexes"));
    }
    return std::move(*r);
  };
  if (auto r = step("BEGIN"); !r) return std::unexpected(r.error());
  if (auto r = step("SELECT 1 FROM store_clock WHERE id = 1 FOR UPDATE"); !r) return std::unexpected(r.error());
  auto any = step("SELECT 1 FROM resource LIMIT 1");
  if (!any) return std::unexpected(any.error());
  if (any->rows() > 0) {
    (void)conn.exec("ROLLBACK");
    return false;  // (rebuilding what is there could cost more than the load saves)
  }
  auto indexes = step(
      "SELECT i.relname::text, regexp_replace(pg_get_indexdef(i.oid), '^CREATE INDEX ', 'CREATE INDEX IF NOT EXISTS "
      "'), quote_ident(i.relname) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = "
      "x.indrelid "
      "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = current_schema() AND (t.relname LIKE 'idx\\_%' "
      "OR t.relname IN ('resource', 'resource_version')) AND NOT x.indisunique ORDER BY 1");
  if (!indexes) return std::unexpected(indexes.error());
  for (int i = 0; i < indexes->rows(); ++i) {
    const std::string name = indexes->text(i, 0), sql = indexes->text(i, 1);
    if (auto r = step("INSERT INTO deferred_index (name, sql) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET sql "
                      "= excluded.sql",
                      {pg::Param(name), pg::Param(sql)});
        !r)
      return std::unexpected(r.error());
    if (auto r = step("DROP INDEX " + indexes->text(i, 2)); !r) return std::unexpected(r.error());
  }
  if (auto r = step("COMMIT"); !r) return std::unexpected(r.error());
  return indexes->rows() > 0;
}

fhir::Result<void> apply_postgres_migrations(pg::Connection& conn) {
  const std::vector<pg::Param> key{pg::Param(kMigrationLockKey)};
  if (auto locked = conn.exec("SELECT pg_advisory_lock($1::bigint)", key); !locked)
    return std::unexpected(pg::to_error(locked.error(), "schema migrations: cannot take the advisory lock"));
  auto result = [&]() -> fhir::Result<void> {
    auto step = [&](const std::string& sql, const Migration* m) -> fhir::Result<void> {
      if (auto r = conn.exec(sql); !r) {
        (void)conn.exec("ROLLBACK");
        return std::unexpected(pg::to_error(
            r.error(),
            "schema migration " + (m != nullptr ? std::to_string(m->version) : std::string("setup")) + " failed"));
      }
      return {};
    };
    if (auto r = step("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT "
                      "NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                      nullptr);
        !r)
      return r;
    // The indexes of a bulk load that stopped before its end are built first (a migration could change one).
    auto waiting_table = conn.exec("SELECT to_regclass('deferred_index') IS NOT NULL", {});
    if (!waiting_table) return std::unexpected(pg::to_error(waiting_table.error(), "schema migrations"));
    if (waiting_table->i64(0, 0) != 0) {
      auto waiting = deferred_indexes(conn);
      if (!waiting) return std::unexpected(waiting.error());
      for (const auto& [name, sql] : *waiting)
        if (auto built = build_deferred_index(conn, name, sql); !built) return built;
    }
    auto applied = conn.exec("SELECT version FROM schema_migrations", {});  // (binary results)
    if (!applied) return std::unexpected(pg::to_error(applied.error(), "schema migrations"));
    std::vector<std::int64_t> seen;
    for (int i = 0; i < applied->rows(); ++i) seen.push_back(applied->i64(i, 0));
    for (const Migration& m : migrations()) {
      if (std::find(seen.begin(), seen.end(), m.version) != seen.end()) continue;
      if (auto r = step("BEGIN", &m); !r) return r;
      for (const char* stmt : m.statements)
        if (auto r = step(stmt, &m); !r) return r;
      if (auto r = conn.exec("INSERT INTO schema_migrations(version, name) VALUES ($1, $2)",
                             {pg::Param(m.version), pg::Param(m.name)});
          !r) {
        (void)conn.exec("ROLLBACK");
        return std::unexpected(pg::to_error(r.error(), "schema migration " + std::to_string(m.version)));
      }
      if (auto r = step("COMMIT", &m); !r) return r;
    }
    return {};
  }();
  (void)conn.exec("SELECT pg_advisory_unlock($1::bigint)", key);
  return result;
}

}  // namespace caduceus::resources
