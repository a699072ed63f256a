#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "http_client.hpp"

namespace caduceus::test {

struct CertFiles {
  std::filesystem::path cert, key;
};

// Generates with OpenSSL 3 (EVP, X509) an EC P-256 key and a self-signed certificate for 127.0.0.1 (also in
// subjectAltName, with DNS:localhost), valid from a minute ago for a day, and writes them as PEM into
// dir/NAME.crt and dir/NAME.key. Throws std::runtime_error when OpenSSL fails.
CertFiles make_self_signed_cert(const std::filesystem::path& dir, const std::string& name = "server");

struct TlsClientOptions {
  int min_version = 0;  // e.g. TLS1_2_VERSION; 0: OpenSSL's default
  int max_version = 0;  // 0: the highest
  // Lets the client offer old protocols at all (OpenSSL 3 refuses TLS 1.0/1.1 below security level 0).
  bool legacy = false;
  std::filesystem::path trust;          // the CA (here: the self-signed certificate) the server's chain must lead to
  std::string verify_ip = "127.0.0.1";  // checked against the certificate's subjectAltName
  // Mutual TLS: the client's certificate (PEM, its chain) and key, presented when the server asks. Empty: none.
  CertFiles client;
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
};

struct TlsExchange {
  bool handshake = false;  // the TLS handshake succeeded (certificate verified)
  std::string protocol;    // "TLSv1.3", "TLSv1.2", ...
  std::string cipher;
  std::string error;   // what failed (handshake, verification, I/O); empty when all went well
  int ssl_reason = 0;  // ERR_GET_REASON of a handshake failure (e.g. SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
  Response response;   // status 0 when no response came
};

// Connects to host:port, performs a TLS handshake as `options` say, sends `GET target` (Connection: close) and
// reads the response. Never throws on network or TLS errors: they end up in `error`.
TlsExchange tls_get(const std::string& host, std::uint16_t port, const std::string& target,
                    const TlsClientOptions& options);

// Like tls_get, with any method, extra headers and a body (Content-Length set when there is one).
TlsExchange tls_request(const std::string& host, std::uint16_t port, const std::string& method,
                        const std::string& target, const HeaderList& headers, const std::string& body,
                        const TlsClientOptions& options);

// Connects and shakes hands like tls_get, writes `bytes` as they are (e.g. pipelined requests), then reads until
// the server closes (or the timeout). Returns everything read; `error` set on a failure before the end.
struct TlsRaw {
  std::string received;
  std::string error;
};
TlsRaw tls_raw(const std::string& host, std::uint16_t port, const std::string& bytes, const TlsClientOptions& options);

}  // namespace caduceus::test
