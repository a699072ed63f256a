#include "oauth_sql.hpp"

#include <soci/soci.h>

namespace caduceus::resources {
namespace {

using fhir::ErrorKind;

fhir::Error db_error(const std::exception& e) {
  return fhir::Error::make(ErrorKind::kUnavailable, "transient", std::string("database error: ") + e.what());
}

// Lists are stored space-separated (scopes and URIs hold no spaces).
std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : " ") + s;
  return out;
}
std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t space = text.find(' ', start);
    if (space == std::string::npos) space = text.size();
    if (space > start) out.push_back(text.substr(start, space - start));
    start = space + 1;
  }
  return out;
}

constexpr const char* kClientColumns =
    "client_id, name, kind, secret_hash, jwks, jwks_url, redirect_uris, scopes, created, tls_subject";

class SqlOAuthTables final : public OAuthTables {
 public:
  explicit SqlOAuthTables(soci::session& sql) : sql_(sql) {}

  fhir::Result<void> add_client(TenantId tenant, const ClientRecord& c) override {
    try {
      long long t = tenant, seen = 0;
      sql_ << "SELECT COUNT(*) FROM oauth_client WHERE tenant = :t AND client_id = :c", soci::into(seen), soci::use(t),
          soci::use(c.client_id);
      if (seen > 0)
        return fhir::fail(ErrorKind::kConflict, "duplicate", "a client '" + c.client_id + "' is already registered");
      std::string uris = join(c.redirect_uris), scopes = join(c.scopes);
      long long created = c.created_ms;
      sql_ << "INSERT INTO oauth_client (tenant, " << kClientColumns
           << ") VALUES (:t, :id, :name, :kind, :secret, :jwks, :jwks_url, :uris, :scopes, :created, :tls_subject)",
          soci::use(t), soci::use(c.client_id), soci::use(c.name), soci::use(c.kind), soci::use(c.secret_hash),
          soci::use(c.jwks), soci::use(c.jwks_url), soci::use(uris), soci::use(scopes), soci::use(created),
          soci::use(c.tls_subject);
      return {};
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  fhir::Result<bool> remove_client(TenantId tenant, const std::string& client_id) override {
    try {
      long long t = tenant;
      soci::statement st = (sql_.prepare << "DELETE FROM oauth_client WHERE tenant = :t AND client_id = :c",
                            soci::use(t), soci::use(client_id));
      st.execute(true);
      return st.get_affected_rows() > 0;
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  fhir::Result<std::optional<ClientRecord>> client(TenantId tenant, const std::string& client_id) override {
    auto all = select(tenant, &client_id);
    if (!all) return std::unexpected(all.error());
    if (all->empty()) return std::optional<ClientRecord>();
    return std::optional<ClientRecord>(std::move(all->front()));
  }

  fhir::Result<std::vector<ClientRecord>> clients(TenantId tenant) override { return select(tenant, nullptr); }

  fhir::Result<bool> use_jti(TenantId tenant, const std::string& client_id, const std::string& jti,
                             std::int64_t expires_ms, std::int64_t now_ms) override {
    try {
      long long t = tenant, now = now_ms, expires = expires_ms, seen = 0;
      sql_ << "DELETE FROM oauth_used_jti WHERE tenant = :t AND expires < :now", soci::use(t), soci::use(now);
      sql_ << "SELECT COUNT(*) FROM oauth_used_jti WHERE tenant = :t AND client_id = :c AND jti = :j", soci::into(seen),
          soci::use(t), soci::use(client_id), soci::use(jti);
      if (seen > 0) return false;
      sql_ << "INSERT INTO oauth_used_jti (tenant, client_id, jti, expires) VALUES (:t, :c, :j, :e)", soci::use(t),
          soci::use(client_id), soci::use(jti), soci::use(expires);
      return true;
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  fhir::Result<void> revoke_token(TenantId tenant, const std::string& jti, std::int64_t expires_ms) override {
    try {
      long long t = tenant, expires = expires_ms;
      sql_ << "INSERT INTO oauth_revoked_token (tenant, jti, expires) VALUES (:t, :j, :e) "
              "ON CONFLICT (tenant, jti) DO NOTHING",
          soci::use(t), soci::use(jti), soci::use(expires);
      return {};
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  fhir::Result<std::vector<std::string>> revoked_tokens(TenantId tenant, std::int64_t now_ms) override {
    try {
      long long t = tenant, now = now_ms;
      sql_ << "DELETE FROM oauth_revoked_token WHERE tenant = :t AND expires < :now", soci::use(t), soci::use(now);
      std::vector<std::string> out;
      std::string jti;
      soci::statement st =
          (sql_.prepare << "SELECT jti FROM oauth_revoked_token WHERE tenant = :t", soci::into(jti), soci::use(t));
      st.execute();
      while (st.fetch()) out.push_back(jti);
      return out;
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

 private:
  fhir::Result<std::vector<ClientRecord>> select(TenantId tenant, const std::string* client_id) {
    try {
      std::vector<ClientRecord> out;
      long long t = tenant;
      std::string id = client_id != nullptr ? *client_id : std::string();
      ClientRecord c;
      std::string uris, scopes;
      long long created = 0;
      std::string sql = std::string("SELECT ") + kClientColumns + " FROM oauth_client WHERE tenant = :t";
      if (client_id != nullptr) sql += " AND client_id = :c";
      sql += " ORDER BY client_id";
      soci::statement st(sql_);
      for (auto* text : {&c.client_id, &c.name, &c.kind, &c.secret_hash, &c.jwks, &c.jwks_url, &uris, &scopes})
        st.exchange(soci::into(*text));
      st.exchange(soci::into(created));
      st.exchange(soci::into(c.tls_subject));
      st.exchange(soci::use(t));
      if (client_id != nullptr) st.exchange(soci::use(id));
      st.alloc();
      st.prepare(sql);
      st.define_and_bind();
      st.execute();
      while (st.fetch()) {
        ClientRecord r = c;
        r.redirect_uris = split(uris);
        r.scopes = split(scopes);
        r.created_ms = created;
        out.push_back(std::move(r));
      }
      return out;
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

 public:
  fhir::Result<void> put_grant(TenantId tenant, const GrantRecord& g, std::int64_t now_ms) override {
    try {
      long long t = tenant, now = now_ms, expires = g.expires_ms, consumed = g.consumed ? 1 : 0;
      sql_ << "DELETE FROM oauth_grant WHERE tenant = :t AND expires < :now", soci::use(t), soci::use(now);
      sql_ << "INSERT INTO oauth_grant (tenant, kind, key, family, data, expires, consumed) VALUES (:t, :k, :key, "
              ":f, :d, :e, :c) ON CONFLICT (tenant, kind, key) DO UPDATE SET family = excluded.family, data = "
              "excluded.data, expires = excluded.expires, consumed = excluded.consumed",
          soci::use(t), soci::use(g.kind), soci::use(g.key), soci::use(g.family), soci::use(g.data), soci::use(expires),
          soci::use(consumed);
      return {};
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  fhir::Result<std::optional<GrantRecord>> find_grant(TenantId tenant, const std::string& kind, const std::string& key,
                                                      std::int64_t now_ms) override {
    try {
      long long t = tenant, now = now_ms, expires = 0, consumed = 0;
      GrantRecord g;
      soci::indicator ind = soci::i_ok;
      sql_ << "SELECT family, data, expires, consumed FROM oauth_grant WHERE tenant = :t AND kind = :k AND key = :key "
              "AND expires >= :now",
          soci::into(g.family, ind), soci::into(g.data), soci::into(expires), soci::into(consumed), soci::use(t),
          soci::use(kind), soci::use(key), soci::use(now);
      if (!sql_.got_data()) return std::optional<GrantRecord>();
      g.kind = kind;
      g.key = key;
      g.expires_ms = expires;
      g.consumed = consumed != 0;
      return std::optional<GrantRecord>(std::move(g));
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  fhir::Result<std::optional<GrantRecord>> consume_grant(TenantId tenant, const std::string& kind,
                                                         const std::string& key, std::int64_t now_ms) override {
    // (SQLite: one writer at a time, inside the caller's write transaction.)
    auto found = find_grant(tenant, kind, key, now_ms);
    if (!found || !*found || (*found)->consumed) return found;
    try {
      long long t = tenant;
      sql_ << "UPDATE oauth_grant SET consumed = 1 WHERE tenant = :t AND kind = :k AND key = :key", soci::use(t),
          soci::use(kind), soci::use(key);
      return found;
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  fhir::Result<void> revoke_grant_family(TenantId tenant, const std::string& family) override {
    try {
      long long t = tenant;
      sql_ << "UPDATE oauth_grant SET consumed = 1 WHERE tenant = :t AND family = :f", soci::use(t), soci::use(family);
      return {};
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

 private:
  soci::session& sql_;
};

}  // namespace

std::unique_ptr<OAuthTables> make_sql_oauth_tables(soci::session& sql) {
  return std::make_unique<SqlOAuthTables>(sql);
}

}  // namespace caduceus::resources
