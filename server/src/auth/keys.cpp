#include "caduceus/server/auth/keys.hpp"

#include <fcntl.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace caduceus::server::auth {

using fhir::ErrorKind;
namespace json = fhir::json;
namespace fs = std::filesystem;

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
using Bn = std::unique_ptr<BIGNUM, BnFree>;
struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using Jwt = std::unique_ptr<jwt_t, JwtFree>;

PKey own(EVP_PKEY* k) {
  return PKey(k, EVP_PKEY_free);
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string sha256(std::string_view bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), out, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(out), n);
}

std::string bn_bytes(const BIGNUM* bn, int width) {
  int n = std::max(width, BN_num_bytes(bn));
  std::string out(static_cast<std::size_t>(n), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), n);
  return out;
}

fhir::Result<std::string> alg_of(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA")) return std::string("RS256");
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) == 1 &&
        std::string_view(group) == "prime256v1")
      return std::string("ES256");
  }
  return fhir::fail(ErrorKind::kInvalid, "invalid", "a signing key must be RSA or EC P-256");
}

fhir::Result<SigningKey> key_of(PKey key) {
  SigningKey k;
  auto alg = alg_of(key.get());
  if (!alg) return std::unexpected(alg.error());
  k.alg = *alg;
  Bio priv(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr))
    return fhir::fail(ErrorKind::kInternal, "exception", "cannot write a private key as PEM");
  k.private_pem = bio_text(priv.get());
  auto pub = public_pem(key.get());
  if (!pub) return std::unexpected(pub.error());
  k.public_pem = *pub;
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(key.get(), &der);
  if (n <= 0) return fhir::fail(ErrorKind::kInternal, "exception", "cannot encode a public key");
  k.kid = base64url_encode(sha256(std::string_view(reinterpret_cast<char*>(der), static_cast<std::size_t>(n))))
              .substr(0, 22);
  OPENSSL_free(der);
  k.key = std::move(key);
  return k;
}

fs::path keys_dir(const fs::path& data_dir) {
  return data_dir / "keys";
}

fhir::Result<void> write_private(const fs::path& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot create '" + path.string() + "'");
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot write '" + path.string() + "'");
  return {};
}

fhir::Result<void> write_current(const fs::path& dir, const std::string& kid) {
  fs::path tmp = dir / "current.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kid << "\n";
    if (!out) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot write '" + tmp.string() + "'");
  }
  std::error_code ec;
  fs::rename(tmp, dir / "current", ec);
  if (ec) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot write '" + (dir / "current").string() + "'");
  return {};
}

fhir::Result<std::string> read_current(const fs::path& dir) {
  std::ifstream in(dir / "current");
  std::string kid;
  if (!in || !(in >> kid)) return fhir::fail(ErrorKind::kNotFound, "not-found", "no current key");
  return kid;
}

fhir::Result<SigningKey> generate(std::string_view alg) {
  EVP_PKEY* raw = nullptr;
  if (alg == "ES256")
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  else if (alg == "RS256")
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  else
    return fhir::fail(ErrorKind::kInvalid, "invalid", "key algorithm '" + std::string(alg) + "': ES256 or RS256");
  if (raw == nullptr) return fhir::fail(ErrorKind::kInternal, "exception", "key generation failed");
  return key_of(own(raw));
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

fhir::Result<std::string> base64url_decode(std::string_view text) {
  std::string in(text);
  for (char& c : in) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (c == '+' || c == '/' || c == '=')
      return fhir::fail(ErrorKind::kInvalid, "invalid", "not base64url");
  }
  std::size_t pad = (4 - in.size() % 4) % 4;
  if (pad == 3) return fhir::fail(ErrorKind::kInvalid, "invalid", "not base64url");
  in.append(pad, '=');
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return fhir::fail(ErrorKind::kInvalid, "invalid", "not base64url");
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string random_token(std::size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) std::abort();
  return base64url_encode(raw);
}

namespace {
constexpr int kPbkdf2Iterations = 100'000;

std::string pbkdf2(std::string_view secret, std::string_view salt, int iterations) {
  std::string out(32, '\0');
  PKCS5_PBKDF2_HMAC(secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), iterations, EVP_sha256(), static_cast<int>(out.size()),
                    reinterpret_cast<unsigned char*>(out.data()));
  return out;
}
}  // namespace

std::string hash_secret(std::string_view secret) {
  std::string salt(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), static_cast<int>(salt.size())) != 1) std::abort();
  return "pbkdf2-sha256$" + std::to_string(kPbkdf2Iterations) + "$" + base64url_encode(salt) + "$" +
         base64url_encode(pbkdf2(secret, salt, kPbkdf2Iterations));
}

bool verify_secret(std::string_view secret, std::string_view hash) {
  // pbkdf2-sha256$N$salt$hash
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    std::size_t d = hash.find('$', start);
    parts.push_back(hash.substr(start, d == std::string_view::npos ? std::string_view::npos : d - start));
    if (d == std::string_view::npos) break;
    start = d + 1;
  }
  if (parts.size() != 4 || parts[0] != "pbkdf2-sha256") return false;
  int iterations = std::atoi(std::string(parts[1]).c_str());
  auto salt = base64url_decode(parts[2]);
  auto expected = base64url_decode(parts[3]);
  if (iterations <= 0 || iterations > 10'000'000 || !salt || !expected || expected->size() != 32) return false;
  std::string got = pbkdf2(secret, *salt, iterations);
  return CRYPTO_memcmp(got.data(), expected->data(), got.size()) == 0;
}

fhir::Result<std::string> public_pem(EVP_PKEY* key) {
  Bio pub(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PUBKEY(pub.get(), key))
    return fhir::fail(ErrorKind::kInternal, "exception", "cannot write a public key as PEM");
  return bio_text(pub.get());
}

fhir::Result<json::Value> public_jwk(EVP_PKEY* key) {
  json::Value jwk = json::Value::object();
  auto bn = [&](const char* name) -> Bn {
    BIGNUM* b = nullptr;
    EVP_PKEY_get_bn_param(key, name, &b);
    return Bn(b);
  };
  if (EVP_PKEY_is_a(key, "RSA")) {
    Bn n = bn(OSSL_PKEY_PARAM_RSA_N), e = bn(OSSL_PKEY_PARAM_RSA_E);
    if (!n || !e) return fhir::fail(ErrorKind::kInternal, "exception", "cannot read an RSA key");
    jwk.set("kty", json::Value::string("RSA"));
    jwk.set("n", json::Value::string(base64url_encode(bn_bytes(n.get(), 0))));
    jwk.set("e", json::Value::string(base64url_encode(bn_bytes(e.get(), 0))));
    return jwk;
  }
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {};
    size_t len = 0;
    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len);
    std::string_view g = group;
    std::string crv = g == "prime256v1" ? "P-256" : g == "secp384r1" ? "P-384" : g == "secp521r1" ? "P-521" : "";
    int width = crv == "P-256" ? 32 : crv == "P-384" ? 48 : 66;
    Bn x = bn(OSSL_PKEY_PARAM_EC_PUB_X), y = bn(OSSL_PKEY_PARAM_EC_PUB_Y);
    if (crv.empty() || !x || !y) return fhir::fail(ErrorKind::kInternal, "exception", "cannot read an EC key");
    jwk.set("kty", json::Value::string("EC"));
    jwk.set("crv", json::Value::string(crv));
    jwk.set("x", json::Value::string(base64url_encode(bn_bytes(x.get(), width))));
    jwk.set("y", json::Value::string(base64url_encode(bn_bytes(y.get(), width))));
    return jwk;
  }
  return fhir::fail(ErrorKind::kInvalid, "invalid", "only RSA and EC keys have a JWK here");
}

fhir::Result<PKey> key_from_jwk(const json::Value& jwk) {
  auto member = [&](std::string_view name) -> fhir::Result<std::string> {
    const json::Value* v = jwk.find(name);
    if (v == nullptr || !v->is_string())
      return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWK has no '" + std::string(name) + "'");
    return base64url_decode(v->text());
  };
  const json::Value* kty = jwk.find("kty");
  if (kty == nullptr || !kty->is_string()) return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWK has no kty");
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  std::unique_ptr<OSSL_PARAM_BLD, void (*)(OSSL_PARAM_BLD*)> bld_owner(bld, OSSL_PARAM_BLD_free);
  std::vector<Bn> bns;
  std::string point;
  const char* type = nullptr;
  if (kty->text() == "RSA") {
    auto n = member("n"), e = member("e");
    if (!n) return std::unexpected(n.error());
    if (!e) return std::unexpected(e.error());
    for (const std::string* part : {&*n, &*e})
      bns.emplace_back(
          BN_bin2bn(reinterpret_cast<const unsigned char*>(part->data()), static_cast<int>(part->size()), nullptr));
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bns[0].get());
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bns[1].get());
    type = "RSA";
  } else if (kty->text() == "EC") {
    const json::Value* crv = jwk.find("crv");
    std::string c = crv != nullptr && crv->is_string() ? crv->text() : "";
    const char* group = c == "P-256" ? "prime256v1" : c == "P-384" ? "secp384r1" : c == "P-521" ? "secp521r1" : nullptr;
    std::size_t width = c == "P-256" ? 32 : c == "P-384" ? 48 : 66;
    if (group == nullptr)
      return fhir::fail(ErrorKind::kInvalid, "invalid", "JWK crv '" + c + "': P-256, P-384 or P-521 expected");
    auto x = member("x"), y = member("y");
    if (!x) return std::unexpected(x.error());
    if (!y) return std::unexpected(y.error());
    if (x->size() != width || y->size() != width)
      return fhir::fail(ErrorKind::kInvalid, "invalid", "JWK x and y do not have the size of the curve " + c);
    point = "\x04" + *x + *y;
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    type = "EC";
  } else {
    return fhir::fail(ErrorKind::kInvalid, "invalid", "JWK kty '" + kty->text() + "': RSA or EC expected");
  }
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  std::unique_ptr<OSSL_PARAM, void (*)(OSSL_PARAM*)> params_owner(params, OSSL_PARAM_free);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  std::unique_ptr<EVP_PKEY_CTX, void (*)(EVP_PKEY_CTX*)> ctx_owner(ctx, EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx) <= 0 ||
      EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0 || key == nullptr)
    return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWK is not a valid " + std::string(type) + " public key");
  PKey owned = own(key);
  if (std::string(type) == "EC") {
    // A point off the curve must not pass as a key.
    EVP_PKEY_CTX* check = EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr);
    int ok = check != nullptr ? EVP_PKEY_public_check(check) : 0;
    EVP_PKEY_CTX_free(check);
    if (ok != 1) return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWK's point is not on its curve");
  }
  return owned;
}

fhir::Result<KeyRing> KeyRing::open(const fs::path& data_dir) {
  fs::path dir = keys_dir(data_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot create '" + dir.string() + "'");
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  KeyRing ring;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".pem") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    std::string pem = text.str();
    Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr)
      return fhir::fail(ErrorKind::kInvalid, "invalid", "'" + entry.path().string() + "' is not a private key (PEM)");
    auto key = key_of(own(raw));
    if (!key) return std::unexpected(key.error());
    if (key->kid != entry.path().stem().string())
      return fhir::fail(ErrorKind::kInvalid, "invalid",
                        "'" + entry.path().string() + "' does not hold the key its name says (" + key->kid + ")");
    ring.keys_.push_back(std::move(*key));
  }
  if (ec) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot read '" + dir.string() + "'");
  std::sort(ring.keys_.begin(), ring.keys_.end(),
            [](const SigningKey& a, const SigningKey& b) { return a.kid < b.kid; });
  auto current = read_current(dir);
  if (ring.keys_.empty() || !current) {
    if (!ring.keys_.empty())
      return fhir::fail(ErrorKind::kInvalid, "invalid", "'" + (dir / "current").string() + "' is missing");
    auto kid = rotate(data_dir, "ES256");
    if (!kid) return std::unexpected(kid.error());
    return open(data_dir);
  }
  auto it = std::find_if(ring.keys_.begin(), ring.keys_.end(), [&](const SigningKey& k) { return k.kid == *current; });
  if (it == ring.keys_.end())
    return fhir::fail(ErrorKind::kInvalid, "invalid", "the current key '" + *current + "' has no file");
  ring.current_ = static_cast<std::size_t>(it - ring.keys_.begin());
  return ring;
}

fhir::Result<std::string> KeyRing::rotate(const fs::path& data_dir, std::string_view alg) {
  fs::path dir = keys_dir(data_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot create '" + dir.string() + "'");
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  auto key = generate(alg);
  if (!key) return std::unexpected(key.error());
  if (auto w = write_private(dir / (key->kid + ".pem"), key->private_pem); !w) return std::unexpected(w.error());
  if (auto w = write_current(dir, key->kid); !w) return std::unexpected(w.error());
  return key->kid;
}

fhir::Result<void> KeyRing::remove(const fs::path& data_dir, std::string_view kid) {
  fs::path dir = keys_dir(data_dir);
  auto current = read_current(dir);
  if (current && *current == kid)
    return fhir::fail(ErrorKind::kInvalid, "invalid",
                      "'" + std::string(kid) + "' is the current signing key: rotate to a new one first");
  std::error_code ec;
  if (kid.find('/') != std::string_view::npos || kid.find("..") != std::string_view::npos ||
      !fs::remove(dir / (std::string(kid) + ".pem"), ec))
    return fhir::fail(ErrorKind::kNotFound, "not-found", "no key '" + std::string(kid) + "' in " + dir.string());
  return {};
}

const SigningKey* KeyRing::find(std::string_view kid) const {
  for (const SigningKey& k : keys_)
    if (k.kid == kid) return &k;
  return nullptr;
}

json::Value KeyRing::jwks() const {
  json::Value keys = json::Value::array();
  for (const SigningKey& k : keys_) {
    auto jwk = public_jwk(k.key.get());
    if (!jwk) continue;
    jwk->set("kid", json::Value::string(k.kid));
    jwk->set("alg", json::Value::string(k.alg));
    jwk->set("use", json::Value::string("sig"));
    keys.push_back(std::move(*jwk));
  }
  json::Value out = json::Value::object();
  out.set("keys", std::move(keys));
  return out;
}

fhir::Result<std::string> sign_jwt(const SigningKey& key, const json::Value& claims) {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return fhir::fail(ErrorKind::kInternal, "exception", "jwt_new failed");
  Jwt jwt(raw);
  std::string text = json::write(claims);
  jwt_alg_t alg = key.alg == "RS256" ? JWT_ALG_RS256 : JWT_ALG_ES256;
  if (jwt_add_grants_json(jwt.get(), text.c_str()) != 0 || jwt_add_header(jwt.get(), "kid", key.kid.c_str()) != 0 ||
      jwt_set_alg(jwt.get(), alg, reinterpret_cast<const unsigned char*>(key.private_pem.data()),
                  static_cast<int>(key.private_pem.size())) != 0)
    return fhir::fail(ErrorKind::kInternal, "exception", "cannot build a JWT");
  char* encoded = jwt_encode_str(jwt.get());
  if (encoded == nullptr) return fhir::fail(ErrorKind::kInternal, "exception", "cannot sign a JWT");
  std::string out = encoded;
  std::free(encoded);
  return out;
}

fhir::Result<JwtHeader> peek_jwt_header(const std::string& token) {
  auto dot = token.find('.');
  if (dot == std::string::npos || std::count(token.begin(), token.end(), '.') != 2)
    return fhir::fail(ErrorKind::kInvalid, "invalid", "not a JWT (three base64url parts)");
  auto header_text = base64url_decode(std::string_view(token).substr(0, dot));
  if (!header_text) return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWT header is not base64url");
  auto header = json::parse(*header_text);
  if (!header || !header->is_object()) return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWT header is not JSON");
  JwtHeader out;
  if (const json::Value* alg = header->find("alg"); alg != nullptr && alg->is_string()) out.alg = alg->text();
  if (const json::Value* kid = header->find("kid"); kid != nullptr && kid->is_string()) out.kid = kid->text();
  if (const json::Value* jku = header->find("jku"); jku != nullptr && jku->is_string()) out.jku = jku->text();
  return out;
}

fhir::Result<json::Value> verify_jwt(const std::string& token, const std::string& pem, std::string_view alg) {
  auto header = peek_jwt_header(token);
  if (!header) return std::unexpected(header.error());
  if (header->alg != alg || alg == "none" || pem.empty())
    return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWT is not signed with " + std::string(alg));
  jwt_t* raw = nullptr;
  int rc =
      jwt_decode(&raw, token.c_str(), reinterpret_cast<const unsigned char*>(pem.data()), static_cast<int>(pem.size()));
  Jwt jwt(raw);
  if (rc != 0 || raw == nullptr || jwt_get_alg(raw) != jwt_str_alg(std::string(alg).c_str()))
    return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWT's signature does not verify");
  char* grants = jwt_get_grants_json(raw, nullptr);
  if (grants == nullptr) return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWT has no claims");
  auto claims = json::parse(grants);
  std::free(grants);
  if (!claims || !claims->is_object()) return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWT claims are not JSON");
  return std::move(*claims);
}

}  // namespace caduceus::server::auth
