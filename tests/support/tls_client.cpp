#include "tls_client.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace caduceus::test {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

[[noreturn]] void openssl_failed(const std::string& what) {
  char buffer[256] = "";
  ERR_error_string_n(ERR_get_error(), buffer, sizeof buffer);
  throw std::runtime_error(what + ": " + buffer);
}

void add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, decltype(&X509_EXTENSION_free)> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value),
                                                                      &X509_EXTENSION_free);
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) openssl_failed("X509 extension");
}

template <class Write>
void write_pem(const std::filesystem::path& path, Write&& write) {
  std::unique_ptr<FILE, decltype(&std::fclose)> file(std::fopen(path.c_str(), "w"), &std::fclose);
  if (!file) throw std::runtime_error("cannot write " + path.string());
  if (write(file.get()) != 1) openssl_failed("PEM " + path.string());
}

}  // namespace

CertFiles make_self_signed_cert(const std::filesystem::path& dir, const std::string& name) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"),
                                                          &EVP_PKEY_free);
  if (!key) openssl_failed("EC key generation");
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), &X509_free);
  if (!cert) openssl_failed("X509_new");
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), subject);
  if (X509_set_pubkey(cert.get(), key.get()) != 1) openssl_failed("X509_set_pubkey");
  add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), NID_key_usage, "critical,digitalSignature,keyCertSign");
  add_extension(cert.get(), NID_subject_key_identifier, "hash");
  add_extension(cert.get(), NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) openssl_failed("X509_sign");

  CertFiles out{dir / (name + ".crt"), dir / (name + ".key")};
  write_pem(out.cert, [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
  write_pem(out.key,
            [&](FILE* f) { return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr); });
  return out;
}

TlsExchange tls_get(const std::string& host, std::uint16_t port, const std::string& target,
                    const TlsClientOptions& options) {
  return tls_request(host, port, "GET", target, {}, {}, options);
}

TlsExchange tls_request(const std::string& host, std::uint16_t port, const std::string& method,
                        const std::string& target, const HeaderList& headers, const std::string& body,
                        const TlsClientOptions& options) {
  TlsExchange out;
  asio::io_context ioc;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  SSL_CTX* native = ctx.native_handle();
  if (options.legacy) {
    SSL_CTX_set_security_level(native, 0);
    SSL_CTX_set_cipher_list(native, "DEFAULT:@SECLEVEL=0");
  }
  if (options.min_version != 0) SSL_CTX_set_min_proto_version(native, options.min_version);
  if (options.max_version != 0) SSL_CTX_set_max_proto_version(native, options.max_version);
  beast::error_code ec;
  if (!options.trust.empty()) {
    ctx.load_verify_file(options.trust.string(), ec);
    if (ec) {
      out.error = "loading the trusted certificate: " + ec.message();
      return out;
    }
    ctx.set_verify_mode(asio::ssl::verify_peer);
  }
  if (!options.client.cert.empty()) {
    ctx.use_certificate_chain_file(options.client.cert.string(), ec);
    if (!ec) ctx.use_private_key_file(options.client.key.string(), asio::ssl::context::pem, ec);
    if (ec) {
      out.error = "loading the client certificate: " + ec.message();
      return out;
    }
  }
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  if (!options.verify_ip.empty())
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(stream.native_handle()), options.verify_ip.c_str());

  auto& lowest = beast::get_lowest_layer(stream);
  auto run = [&] {
    ioc.restart();
    ioc.run();
  };
  lowest.expires_after(options.timeout);
  tcp::endpoint endpoint(asio::ip::make_address(host), port);
  lowest.async_connect(endpoint, [&](beast::error_code e) { ec = e; });
  run();
  if (ec) {
    out.error = "connect: " + ec.message();
    return out;
  }
  ERR_clear_error();
  stream.async_handshake(asio::ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
  run();
  if (ec) {
    out.error = "handshake: " + ec.message();
    if (ec.category() == asio::error::get_ssl_category()) out.ssl_reason = ERR_GET_REASON(ec.value());
    return out;
  }
  out.handshake = true;
  out.protocol = SSL_get_version(stream.native_handle());
  out.cipher = SSL_get_cipher_name(stream.native_handle());

  http::request<http::string_body> request(http::string_to_verb(method), target, 11);
  request.set(http::field::host, host + ":" + std::to_string(port));
  request.set(http::field::connection, "close");
  for (const auto& [name, value] : headers) request.set(name, value);
  if (!body.empty()) {
    request.body() = body;
    request.prepare_payload();
  }
  http::async_write(stream, request, [&](beast::error_code e, std::size_t) { ec = e; });
  run();
  if (ec) {
    out.error = "write: " + ec.message();
    return out;
  }
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::async_read(stream, buffer, response, [&](beast::error_code e, std::size_t) { ec = e; });
  run();
  if (ec) {
    // (TLS 1.3: a server that refuses the client's certificate says so after the client's side of the handshake.)
    out.error = "read: " + ec.message();
    if (ec.category() == asio::error::get_ssl_category()) out.ssl_reason = ERR_GET_REASON(ec.value());
    return out;
  }
  out.response.status = static_cast<int>(response.result_int());
  for (const auto& field : response)
    out.response.headers.add(std::string(field.name_string()), std::string(field.value()));
  out.response.body = std::move(response.body());
  // The server ends with close_notify; ours in return (its failure changes nothing for the test).
  stream.async_shutdown([&](beast::error_code) {});
  run();
  return out;
}

TlsRaw tls_raw(const std::string& host, std::uint16_t port, const std::string& bytes, const TlsClientOptions& options) {
  TlsRaw out;
  asio::io_context ioc;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  beast::error_code ec;
  if (!options.trust.empty()) {
    ctx.load_verify_file(options.trust.string(), ec);
    ctx.set_verify_mode(asio::ssl::verify_peer);
  }
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  if (!options.verify_ip.empty())
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(stream.native_handle()), options.verify_ip.c_str());
  auto& lowest = beast::get_lowest_layer(stream);
  auto run = [&] {
    ioc.restart();
    ioc.run();
  };
  lowest.expires_after(options.timeout);
  lowest.async_connect(tcp::endpoint(asio::ip::make_address(host), port), [&](beast::error_code e) { ec = e; });
  run();
  if (!ec) stream.async_handshake(asio::ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
  run();
  if (!ec) asio::async_write(stream, asio::buffer(bytes), [&](beast::error_code e, std::size_t) { ec = e; });
  run();
  if (ec) {
    out.error = ec.message();
    return out;
  }
  char chunk[16384];
  for (;;) {
    std::size_t got = 0;
    stream.async_read_some(asio::buffer(chunk), [&](beast::error_code e, std::size_t n) {
      ec = e;
      got = n;
    });
    run();
    out.received.append(chunk, got);
    if (ec) break;
  }
  // The server's close_notify ends the stream (eof); anything else is an error.
  if (ec != asio::error::eof && ec != asio::ssl::error::stream_truncated) out.error = ec.message();
  return out;
}

}  // namespace caduceus::test
