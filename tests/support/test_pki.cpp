#include "test_pki.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace caduceus::test {

namespace {

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

[[noreturn]] void failed(const std::string& what) {
  char buffer[256] = "";
  ERR_error_string_n(ERR_get_error(), buffer, sizeof buffer);
  throw std::runtime_error(what + ": " + buffer);
}

Key new_key() {
  Key key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), &EVP_PKEY_free);
  if (!key) failed("EC key generation");
  return key;
}

void extend(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, decltype(&X509_EXTENSION_free)> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value),
                                                                      &X509_EXTENSION_free);
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) failed(std::string("X509 extension ") + value);
}

Cert new_cert(EVP_PKEY* key, const SubjectEntries& subject, long serial, long not_before_s, long not_after_s) {
  Cert cert(X509_new(), &X509_free);
  if (!cert) failed("X509_new");
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), not_before_s);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), not_after_s);
  X509_NAME* name = X509_get_subject_name(cert.get());
  for (const auto& [field, value] : subject)
    if (X509_NAME_add_entry_by_txt(name, field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1)
      failed("subject " + field);
  if (X509_set_pubkey(cert.get(), key) != 1) failed("X509_set_pubkey");
  return cert;
}

Key read_key(const std::filesystem::path& path) {
  std::unique_ptr<FILE, decltype(&std::fclose)> file(std::fopen(path.c_str(), "r"), &std::fclose);
  if (!file) throw std::runtime_error("cannot read " + path.string());
  Key key(PEM_read_PrivateKey(file.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (!key) failed("PEM key " + path.string());
  return key;
}

Cert read_cert(const std::filesystem::path& path) {
  std::unique_ptr<FILE, decltype(&std::fclose)> file(std::fopen(path.c_str(), "r"), &std::fclose);
  if (!file) throw std::runtime_error("cannot read " + path.string());
  Cert cert(PEM_read_X509(file.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) failed("PEM certificate " + path.string());
  return cert;
}

CertFiles write(const std::filesystem::path& dir, const std::string& name, X509* cert, EVP_PKEY* key) {
  CertFiles out{dir / (name + ".crt"), dir / (name + ".key")};
  for (int part = 0; part < 2; ++part) {
    const std::filesystem::path& path = part == 0 ? out.cert : out.key;
    std::unique_ptr<FILE, decltype(&std::fclose)> file(std::fopen(path.c_str(), "w"), &std::fclose);
    if (!file) throw std::runtime_error("cannot write " + path.string());
    int ok = part == 0 ? PEM_write_X509(file.get(), cert)
                       : PEM_write_PrivateKey(file.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
    if (ok != 1) failed("PEM " + path.string());
  }
  return out;
}

}  // namespace

CertFiles make_test_ca(const std::filesystem::path& dir, const std::string& name, const std::string& common_name) {
  Key key = new_key();
  Cert cert = new_cert(key.get(), {{"O", "Caduceus tests"}, {"CN", common_name}}, 1, -60, 24 * 3600);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  extend(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  extend(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  extend(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) failed("X509_sign");
  return write(dir, name, cert.get(), key.get());
}

CertFiles issue_client_cert(const std::filesystem::path& dir, const std::string& name, const CertFiles& ca,
                            const SubjectEntries& subject, long serial, long not_before_s, long not_after_s) {
  Key ca_key = read_key(ca.key);
  Cert ca_cert = read_cert(ca.cert);
  Key key = new_key();
  Cert cert = new_cert(key.get(), subject, serial, not_before_s, not_after_s);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  extend(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  extend(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature");
  extend(cert.get(), ca_cert.get(), NID_ext_key_usage, "clientAuth");
  extend(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always");
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) failed("X509_sign");
  return write(dir, name, cert.get(), key.get());
}

std::string certificate_thumbprint(const std::filesystem::path& path) {
  Cert cert = read_cert(path);
  unsigned char* der = nullptr;
  int n = i2d_X509(cert.get(), &der);
  if (n <= 0) failed("i2d_X509");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  int ok = EVP_Digest(der, static_cast<std::size_t>(n), digest, &length, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (ok != 1) failed("EVP_Digest");
  std::string b64(4 * ((length + 2) / 3) + 1, '\0');
  int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()), digest, static_cast<int>(length));
  b64.resize(static_cast<std::size_t>(written));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  for (char& c : b64) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return b64;
}

}  // namespace caduceus::test
