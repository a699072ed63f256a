#include "caduceus/server/peer_certificate.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <cctype>
#include <utility>
#include <vector>

#include "caduceus/server/auth/keys.hpp"

namespace caduceus::server {

namespace {

using fhir::ErrorKind;

// RFC 2253 as OpenSSL writes it (most specific RDN first, short names, `\` escapes), but UTF-8 kept as it is
// rather than escaped byte by byte.
constexpr unsigned long kPrintFlags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;

std::string print_name(const X509_NAME* name) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, kPrintFlags) < 0) return {};
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The attribute type's NID. The names of RFC 4514 section 3 in any case; else OpenSSL's short or long name or a
// dotted OID as written, then in upper case, then in lower case. (The table comes first because OpenSSL's own
// names differ by case alone: "uid" is x500UniqueIdentifier there, while RFC 4514's UID is userId.)
int attribute_nid(const std::string& type) {
  static constexpr std::pair<std::string_view, int> kRfc4514[] = {{"CN", NID_commonName},
                                                                  {"L", NID_localityName},
                                                                  {"ST", NID_stateOrProvinceName},
                                                                  {"O", NID_organizationName},
                                                                  {"OU", NID_organizationalUnitName},
                                                                  {"C", NID_countryName},
                                                                  {"STREET", NID_streetAddress},
                                                                  {"DC", NID_domainComponent},
                                                                  {"UID", NID_userId}};
  std::string upper = type;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& [name, nid] : kRfc4514)
    if (upper == name) return nid;
  int nid = OBJ_txt2nid(type.c_str());
  if (nid == NID_undef) nid = OBJ_txt2nid(upper.c_str());
  if (nid == NID_undef) {
    std::string lower = type;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    nid = OBJ_txt2nid(lower.c_str());
  }
  return nid;
}

struct Attribute {
  std::string type, value;
};

// RFC 4514 section 3, leniently: spaces around types, values and separators are dropped (an escaped space is
// kept). Errors as canonical_subject_dn.
fhir::Result<std::vector<std::vector<Attribute>>> parse_dn(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return fhir::fail(ErrorKind::kInvalid, "invalid", "the subject DN '" + std::string(text) + "' " + why);
  };
  std::vector<std::vector<Attribute>> rdns(1);
  std::size_t i = 0;
  auto skip_spaces = [&] {
    while (i < text.size() && text[i] == ' ') ++i;
  };
  for (;;) {
    Attribute a;
    skip_spaces();
    while (i < text.size() && text[i] != '=' && text[i] != ',' && text[i] != '+') a.type += text[i++];
    while (!a.type.empty() && a.type.back() == ' ') a.type.pop_back();
    if (i == text.size() || text[i] != '=' || a.type.empty())
      return bad("is not TYPE=VALUE[,TYPE=VALUE...] (RFC 4514)");
    ++i;
    skip_spaces();
    if (i < text.size() && text[i] == '#')
      return fhir::fail(ErrorKind::kNotSupported, "not-supported",
                        "the subject DN '" + std::string(text) + "': #-encoded (BER) values are not supported");
    std::size_t kept = 0;  // a.value's length up to its last escaped character: trailing spaces after it stay
    while (i < text.size() && text[i] != ',' && text[i] != '+') {
      if (text[i] != '\\') {
        a.value += text[i++];
        continue;
      }
      if (i + 1 >= text.size()) return bad("ends with a lone '\\'");
      int high = hex_digit(text[i + 1]), low = i + 2 < text.size() ? hex_digit(text[i + 2]) : -1;
      if (high >= 0 && low >= 0) {
        a.value += static_cast<char>(high * 16 + low);
        i += 3;
      } else {
        a.value += text[i + 1];
        i += 2;
      }
      kept = a.value.size();
    }
    while (a.value.size() > kept && a.value.back() == ' ') a.value.pop_back();
    rdns.back().push_back(std::move(a));
    if (i == text.size()) break;
    if (text[i] == ',') rdns.emplace_back();
    ++i;
  }
  return rdns;
}

}  // namespace

fhir::Result<PeerCertificate> describe_certificate(x509_st* certificate) {
  PeerCertificate out;
  out.subject = print_name(X509_get_subject_name(certificate));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(certificate, EVP_sha256(), digest, &length) != 1) {
    ERR_clear_error();
    return fhir::fail(ErrorKind::kInternal, "exception", "cannot hash the client certificate");
  }
  out.thumbprint = auth::base64url_encode(std::string_view(reinterpret_cast<const char*>(digest), length));
  return out;
}

fhir::Result<std::string> canonical_subject_dn(std::string_view rfc4514) {
  std::size_t first = rfc4514.find_first_not_of(' ');
  if (first == std::string_view::npos) return fhir::fail(ErrorKind::kInvalid, "invalid", "the subject DN is empty");
  auto rdns = parse_dn(rfc4514);
  if (!rdns) return std::unexpected(rdns.error());
  std::unique_ptr<X509_NAME, decltype(&X509_NAME_free)> name(X509_NAME_new(), &X509_NAME_free);
  if (!name) return fhir::fail(ErrorKind::kInternal, "exception", "X509_NAME_new failed");
  // The string names the most specific RDN first, the certificate's encoding last; and so within an RDN, so that
  // its values print back in the order they were written.
  for (auto rdn = rdns->rbegin(); rdn != rdns->rend(); ++rdn) {
    int set = 0;
    for (auto a = rdn->rbegin(); a != rdn->rend(); ++a) {
      int nid = attribute_nid(a->type);
      if (nid == NID_undef)
        return fhir::fail(ErrorKind::kInvalid, "invalid",
                          "the subject DN '" + std::string(rfc4514) + "': unknown attribute type '" + a->type + "'");
      if (X509_NAME_add_entry_by_NID(name.get(), nid, MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>(a->value.data()),
                                     static_cast<int>(a->value.size()), -1, set) != 1) {
        char reason[256] = "";
        ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
        ERR_clear_error();
        return fhir::fail(ErrorKind::kInvalid, "invalid",
                          "the subject DN '" + std::string(rfc4514) + "': " + a->type + "='" + a->value +
                              "' is refused (" + reason + ")");
      }
      set = -1;  // the next value joins this RDN
    }
  }
  std::string printed = print_name(name.get());
  if (printed.empty()) return fhir::fail(ErrorKind::kInternal, "exception", "cannot print the subject DN");
  return printed;
}

}  // namespace caduceus::server
