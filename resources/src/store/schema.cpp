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
           // One table per search parameter type, one row per distinct value of the current version of a
           // resource (rewritten with each version, in the same transaction). The tables are clustered by
           // (rid, param, value): deleting a resource's rows, and joining from a resource to its values (chains,
           // includes), walk the primary key; one secondary index per table serves lookups by value. `param` is
           // the parameter's code; a token or quantity without a system has system ''.
           "CREATE TABLE idx_string (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, normalized TEXT NOT NULL, exact TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, normalized, exact)) WITHOUT ROWID",
           "CREATE INDEX idx_string_value ON idx_string (tenant, type, param, normalized)",
           "CREATE TABLE idx_token (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, system, code, text)) WITHOUT ROWID",
           "CREATE INDEX idx_token_value ON idx_token (tenant, type, param, code, system)",
           "CREATE TABLE idx_reference (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, target_type TEXT NOT NULL, target_id TEXT NOT NULL, target_version TEXT NOT NULL,"
           " url TEXT NOT NULL, identifier_system TEXT NOT NULL, identifier_value TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, target_type, target_id, target_version, url, identifier_system,"
           " identifier_value)) WITHOUT ROWID",
           "CREATE INDEX idx_reference_target ON idx_reference (tenant, target_id, target_type, type, param)",
           "CREATE TABLE idx_date (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL,"
           " PRIMARY KEY (rid, param, low, high)) WITHOUT ROWID",
           "CREATE INDEX idx_date_value ON idx_date (tenant, type, param, low, high)",
           "CREATE TABLE idx_number (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low REAL NOT NULL, high REAL NOT NULL, value TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, low, high, value)) WITHOUT ROWID",
           "CREATE INDEX idx_number_value ON idx_number (tenant, type, param, low)",
           "CREATE TABLE idx_quantity (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, low REAL NOT NULL, high REAL NOT NULL, value TEXT NOT NULL,"
           " system TEXT NOT NULL, code TEXT NOT NULL, unit TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, low, high, value, system, code, unit)) WITHOUT ROWID",
           "CREATE INDEX idx_quantity_value ON idx_quantity (tenant, type, param, code, low)",
           "CREATE TABLE idx_uri (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, uri TEXT NOT NULL, PRIMARY KEY (rid, param, uri)) WITHOUT ROWID",
           "CREATE INDEX idx_uri_value ON idx_uri (tenant, type, param, uri)",
           // Composite parameters: one row per component value of each item (`item` groups the components
           // that belong together), with the columns of the component's type.
           "CREATE TABLE idx_composite (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, item INTEGER NOT NULL, component INTEGER NOT NULL,"
           " system TEXT NOT NULL, code TEXT NOT NULL, text TEXT NOT NULL, normalized TEXT NOT NULL,"
           " exact TEXT NOT NULL, low REAL NOT NULL, high REAL NOT NULL, unit TEXT NOT NULL, value TEXT NOT NULL,"
           " target_type TEXT NOT NULL, target_id TEXT NOT NULL, url TEXT NOT NULL, uri TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, item, component, system, code, text, normalized, exact, low, high, unit,"
           " target_type, target_id, url, uri)) WITHOUT ROWID",
           "CREATE INDEX idx_composite_value ON idx_composite (tenant, type, param, component, code, low)",
       }},
      {3,
       "reindex jobs",
       {
           // Background jobs that (re)write index rows, with their progress: an unfinished one is resumed at start.
           // `types` and `params` are space-separated lists (empty: all).
           "CREATE TABLE reindex_job (tenant INTEGER NOT NULL, id INTEGER NOT NULL, types TEXT NOT NULL,"
           " params TEXT NOT NULL, search_parameter TEXT NOT NULL, state TEXT NOT NULL,"
           " processed INTEGER NOT NULL, total INTEGER NOT NULL, last_rid INTEGER NOT NULL,"
           " max_rid INTEGER NOT NULL, message TEXT NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL,"
           " PRIMARY KEY (tenant, id))",
       }},
      {4,
       "full-text index and identifier types",
       {
           // _text and _content: one row per resource (rowid = resource.rid) for its current version, replaced
           // with each version in the same transaction as the other index rows. `narrative` is text.div without
           // its markup; `content` the text of its other string elements (full_text.hpp). unicode61 with
           // remove_diacritics 2 folds case and accents ("Hélène" is found by "helene"). The table keeps its own copy
           // of the text, so that a row can be deleted by rowid alone.
           "CREATE VIRTUAL TABLE idx_text USING fts5(narrative, content,"
           " tokenize = 'unicode61 remove_diacritics 2')",
           // :of-type on Identifier tokens: one row per coding of Identifier.type, with the identifier's value.
           "CREATE TABLE idx_identifier_type (rid INTEGER NOT NULL, tenant INTEGER NOT NULL, type TEXT NOT NULL,"
           " param TEXT NOT NULL, type_system TEXT NOT NULL, type_code TEXT NOT NULL, value TEXT NOT NULL,"
           " PRIMARY KEY (rid, param, type_system, type_code, value)) WITHOUT ROWID",
           "CREATE INDEX idx_identifier_type_value ON idx_identifier_type (tenant, type, param, value, type_code)",
       }},
      {5,
       "codes by patient",
       {
           // The token rows of a resource again, under the patient its `patient` parameter refers to, so that the
           // chart's searches (`Observation?patient=X&code=...`) find their matches with one seek instead of
           // checking the code of every resource of the patient. Kept from idx_reference and idx_token by the
           // writer (the `patient` rows are the truth); the common parameters (`_id`, `_tag`, ...) and
           // `identifier` are left out, as are codeless rows.
           "CREATE TABLE idx_patient_token (tenant INTEGER NOT NULL, target_id TEXT NOT NULL,"
           " target_type TEXT NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, code TEXT NOT NULL,"
           " system TEXT NOT NULL, rid INTEGER NOT NULL,"
           " PRIMARY KEY (tenant, target_id, target_type, type, param, code, system, rid)) WITHOUT ROWID",
           "INSERT OR IGNORE INTO idx_patient_token SELECT r.tenant, r.target_id, r.target_type, t.type, t.param,"
           " t.code, t.system, t.rid FROM idx_reference r JOIN idx_token t ON t.rid = r.rid"
           " WHERE r.param = 'patient' AND r.target_id <> '' AND t.code <> '' AND t.param <> 'identifier'"
           " AND substr(t.param, 1, 1) <> '_'",
       }},
      {6,
       "OAuth clients, used client-assertion ids, revoked tokens",
       {
           // Registered SMART clients. `kind`: public, confidential-symmetric (secret_hash: a salted hash, never
           // the secret), confidential-asymmetric (jwks by value, or jwks_url). Lists are space-separated.
           "CREATE TABLE oauth_client (tenant INTEGER NOT NULL, client_id TEXT NOT NULL, name TEXT NOT NULL,"
           " kind TEXT NOT NULL, secret_hash TEXT NOT NULL, jwks TEXT NOT NULL, jwks_url TEXT NOT NULL,"
           " redirect_uris TEXT NOT NULL, scopes TEXT NOT NULL, created INTEGER NOT NULL,"
           " PRIMARY KEY (tenant, client_id))",
           // The `jti` of every client assertion accepted, until it expires: a replay is refused.
           "CREATE TABLE oauth_used_jti (tenant INTEGER NOT NULL, client_id TEXT NOT NULL, jti TEXT NOT NULL,"
           " expires INTEGER NOT NULL, PRIMARY KEY (tenant, client_id, jti))",
           "CREATE INDEX oauth_used_jti_expires ON oauth_used_jti (tenant, expires)",
           // Access tokens revoked before their expiry (RFC 7009), until they would have expired.
           "CREATE TABLE oauth_revoked_token (tenant INTEGER NOT NULL, jti TEXT NOT NULL, expires INTEGER NOT NULL,"
           " PRIMARY KEY (tenant, jti))",
       }},
      {7,
       "users",
       {
           // The accounts that sign in (server/auth UserDirectory). password_hash: Argon2id, encoded with its
           // parameters. totp_*: the second factor, a secret with a format prefix ("plain:"; room for encryption
           // at rest) and the time step of the last accepted code. Times in ms since the epoch, 0 = never.
           "CREATE TABLE users (tenant INTEGER NOT NULL, username TEXT NOT NULL, role TEXT NOT NULL,"
           " fhir_user TEXT NOT NULL, password_hash TEXT NOT NULL, must_change_password INTEGER NOT NULL,"
           " disabled INTEGER NOT NULL, totp_secret TEXT NOT NULL, totp_pending TEXT NOT NULL,"
           " totp_last_step BIGINT NOT NULL, failed_count BIGINT NOT NULL, next_attempt BIGINT NOT NULL,"
           " locked_until BIGINT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL,"
           " last_sign_in BIGINT NOT NULL, PRIMARY KEY (tenant, username))",
       }},
      {8,
       "inbound HL7 v2 messages",
       {
           // Every HL7 v2 message received (adapters), stored before it is acknowledged: the raw bytes, the
           // acknowledgement sent and what it produced. A sender's control id (MSH-10) is unique per sending
           // application and facility (MSH-3, MSH-4): a message sent again is answered from here. `raw` and `ack`
           // are opaque blobs whose first byte says their format ('r' = the bytes as they are), leaving room for
           // encryption. `resources`: space-separated Type/id/_history/version.
           "CREATE TABLE hl7_inbound (id INTEGER PRIMARY KEY, tenant INTEGER NOT NULL,"
           " sending_application TEXT NOT NULL, sending_facility TEXT NOT NULL, control_id TEXT NOT NULL,"
           " message_type TEXT NOT NULL, received INTEGER NOT NULL, raw BLOB NOT NULL, status TEXT NOT NULL,"
           " ack BLOB NOT NULL, resources TEXT NOT NULL, error TEXT NOT NULL, updated INTEGER NOT NULL)",
           "CREATE UNIQUE INDEX hl7_inbound_control ON hl7_inbound"
           " (tenant, sending_application, sending_facility, control_id) WHERE control_id <> ''",
           "CREATE INDEX hl7_inbound_received ON hl7_inbound (tenant, received)",
       }},
      {9,
       "OAuth grants: authorization codes, refresh tokens, launch contexts, sign-ins in progress",
       {
           // server/auth SmartLaunch. `key`: the base64url SHA-256 of the secret handed out (never the secret);
           // `family`: a code and the refresh tokens issued from it; `data`: JSON; times in ms since the epoch.
           "CREATE TABLE oauth_grant (tenant INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,"
           " family TEXT NOT NULL, data TEXT NOT NULL, expires INTEGER NOT NULL, consumed INTEGER NOT NULL,"
           " PRIMARY KEY (tenant, kind, key))",
           "CREATE INDEX oauth_grant_family ON oauth_grant (tenant, family)",
           "CREATE INDEX oauth_grant_expires ON oauth_grant (tenant, expires)",
       }},
      {10,
       "outbound HL7 v2 messages",
       {
           // The durable outbound queue (adapters): each row is written in the transaction of the FHIR write
           // that triggered it, and delivered in id order per destination. `message` and `ack` are blobs whose
           // first byte says their format ('r' = the bytes as they are), as in hl7_inbound.
           "CREATE TABLE hl7_outbound (id INTEGER PRIMARY KEY, tenant INTEGER NOT NULL, destination TEXT NOT NULL,"
           " message_type TEXT NOT NULL, control_id TEXT NOT NULL, message BLOB NOT NULL, source TEXT NOT NULL,"
           " status TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT NOT NULL, ack BLOB NOT NULL,"
           " created INTEGER NOT NULL, updated INTEGER NOT NULL, next_attempt INTEGER NOT NULL)",
           "CREATE INDEX hl7_outbound_pending ON hl7_outbound (tenant, destination, status, id)",
       }},
      {11,
       "HL7 v2 message monitor",
       {
           // The monitor's $replay of an inbound message: how many times, and the last time (0: never). Its lists
           // go newest first by received (hl7_inbound_received) or created time.
           "ALTER TABLE hl7_inbound ADD COLUMN replays INTEGER NOT NULL DEFAULT 0",
           "ALTER TABLE hl7_inbound ADD COLUMN replayed INTEGER NOT NULL DEFAULT 0",
           "CREATE INDEX hl7_outbound_created ON hl7_outbound (tenant, created)",
       }},
      {12,
       "one index fewer on resource_version",
       {
           // An instance's history and versions are found through resource.rid and resource_version's
           // (rid, version) key; this index, keyed by a random id, cost every write a page of its own.
           "DROP INDEX IF EXISTS resource_version_instance",
       }},
      {13,
       "OAuth clients authenticated by mutual TLS",
       {
           // tls-client-auth clients (RFC 8705): the subject DN their certificate must carry, canonical as
           // server/peer_certificate.hpp makes it; empty for the other kinds.
           "ALTER TABLE oauth_client ADD COLUMN tls_subject TEXT NOT NULL DEFAULT ''",
       }},
      {14,
       "_id and _lastUpdated read from the resource row",
       {
           // Search reads _id and _lastUpdated from the resource row (r.id, r.last_updated) instead of index rows
           // that repeated them: _id by the (tenant, type, id) key, _lastUpdated by this index. Their old rows
           // (set-aside ones of deleted resources included) are no longer read, nor written: removed.
           "CREATE INDEX resource_updated ON resource (tenant, type, last_updated)",
           "DELETE FROM idx_token WHERE param = '_id'",
           "DELETE FROM idx_date WHERE param = '_lastUpdated'",
       }},
      {15,
       "idx_identifier_type without a value index",
       {
           // identifier:of-type finds its candidates through the identifier's token rows (idx_token_value: the
           // identifier's value is the token's code) and checks each on idx_identifier_type's key (rid, param,
           // type_system, type_code, value). This index, keyed by the identifier's value (random), cost a write a
           // page of its own per identifier (40 WAL frames of 300 in a group commit of HL7 ADT^A01 messages).
           "DROP INDEX IF EXISTS idx_identifier_type_value",
       }},
      {16,
       "idx_composite_value for first components only",
       {
           // A composite search finds its items by their first component (c.component = 0, search_sql.cpp) and
           // checks the other components on the table's key (rid, param, item, component, ...). Their entries in
           // this index, keyed by a value (a quantity's unit and number), were never read, and cost a write a page
           // of its own per composite (24 WAL frames of 220 in a group commit of Observation creates).
           "DROP INDEX IF EXISTS idx_composite_value",
           "CREATE INDEX idx_composite_value ON idx_composite (tenant, type, param, component, code, low)"
           " WHERE component = 0",
       }},
      {17,
       "idx_patient_token without status",
       {
           // `status` (final, amended, ...) narrows a patient's resources little; its row sat at a place of its own
           // in the patient's range, a random page per write (search_sql.hpp patient_token_param).
           "DELETE FROM idx_patient_token WHERE param = 'status'",
       }},
      {18,
       "full-text segments merged eight at a time",
       {
           // FTS5 writes a segment per commit and, by default, merges four segments of a level into one of the
           // next, so every row's terms are written again at each level. Merging eight at a time writes them
           // fewer times (sixteen, tried: writer CPU per indexed create -3 %, creates +3-4 %); a search reads at
           // most twice as many segments per level. FTS5's 'automerge', kept in idx_text_config.
           "INSERT INTO idx_text(idx_text, rank) VALUES('automerge', 8)",
       }},
      {19,
       "value indexes set aside during a bulk load",
       {
           // SqliteStore::defer_search_indexes: the indexes dropped for a bulk load, with the SQL that makes them
           // again. Dropping them and writing their rows here is one transaction, and so is building them again
           // and deleting the rows: a store whose import stopped in between has its rows here, and gets its
           // indexes back when it is opened (before any later migration).
           "CREATE TABLE deferred_index (name TEXT PRIMARY KEY, sql TEXT NOT NULL)",
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
