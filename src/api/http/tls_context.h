// The server side of TLS for a client (or peer) URL, as etcd's
// transport.TLSInfo.ServerConfig() sets it up, on OpenSSL:
//
//  - the certificate and key from --cert-file / --key-file, re-read when the
//    files change (etcd reads them on every handshake; cairn looks at their
//    size, mtime and inode on every handshake and re-reads only on a change,
//    keeping the previous pair while the new one does not load, so a rotation
//    that writes the two files one after the other never fails a handshake);
//  - client certificates required and verified as soon as --trusted-ca-file
//    or --client-cert-auth is given (etcd's rule: RequireAndVerifyClientCert),
//    against the trusted CA file, or the system's roots without one;
//  - optionally only certificates whose subject CN is in `allowed_cns`
//    (etcd's --peer-cert-allowed-cn);
//  - TLS 1.2 at least unless --tls-min-version says TLS1.3; --tls-max-version;
//    --cipher-suites in Go's names, for TLS 1.2 (Go, hence etcd, cannot
//    restrict TLS 1.3's suites either);
//  - ALPN: "http/1.1" when the client offers it (curl and browsers offer
//    "h2,http/1.1"; cairn serves /health, /metrics and the JSON gateway over
//    HTTP/1.1), else "h2" (gRPC clients offer only "h2" and insist on it).
//
// Thread-safety: a TlsContext may be used from any thread.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace cairn::http {

struct TlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string trusted_ca_file;
  bool client_cert_auth = false;
  // Go's names, e.g. "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"; empty: defaults.
  std::vector<std::string> cipher_suites;
  std::string min_version;  // "", "TLS1.2" or "TLS1.3"; "" is TLS 1.2
  std::string max_version;  // "", "TLS1.2" or "TLS1.3"; "" is the highest
  // When not empty, a client certificate's subject CN must be one of these
  // (etcd's AllowedCNs) ...
  std::vector<std::string> allowed_cns;
  // ... or it must name one of these hosts (AllowedHostnames; etcd refuses
  // both at once).
  std::vector<std::string> allowed_hostnames;
  // etcd's CRLFile: read on every handshake; a client certificate whose
  // serial it lists is refused after the handshake.
  std::string crl_file;

  // Whether clients must present a certificate (etcd's rule above).
  bool RequiresClientCertificate() const { return client_cert_auth || !trusted_ca_file.empty(); }
};

// etcd's checks of --tls-min-version, --tls-max-version and --cipher-suites,
// with etcd's messages.
Status ValidateTlsVersions(const std::string& min_version, const std::string& max_version,
                           const std::vector<std::string>& cipher_suites);

// OpenSSL's cipher list for Go's suite names; etcd's message for an unknown
// name ("unexpected TLS cipher suite %q").
Result<std::string> OpenSslCipherList(const std::vector<std::string>& go_names);

// A file's size, mtime and inode: what tells a rewritten file.
struct FileStamp {
  int64_t size = -1, mtime_ns = 0;
  uint64_t inode = 0;
  bool operator==(const FileStamp&) const = default;
};

class TlsContext {
 public:
  // Loads the certificate, key and CA now: errors (missing files, a key that
  // does not match the certificate, a bad CA file) stop the server at start.
  static Result<std::shared_ptr<TlsContext>> Create(TlsOptions options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A new server-side SSL for one handshake, from the current certificate
  // (re-read first if its files changed). nullptr only if OpenSSL cannot
  // allocate.
  SSL* NewSsl();

  const TlsOptions& options() const { return options_; }

  // Certificate reloads done, and failed (the old pair kept), so far.
  uint64_t reloads() const;
  uint64_t reload_failures() const;

 private:
  explicit TlsContext(TlsOptions options) : options_(std::move(options)) {}
  Result<SSL_CTX*> Build() const;
  std::pair<FileStamp, FileStamp> Stamps() const;

  const TlsOptions options_;
  std::string cipher_list_;
  mutable std::mutex mu_;
  SSL_CTX* ctx_ = nullptr;  // GUARDED_BY(mu_); one reference owned
  std::pair<FileStamp, FileStamp> stamps_;  // GUARDED_BY(mu_): of the loaded pair
  std::pair<FileStamp, FileStamp> failed_stamps_;  // GUARDED_BY(mu_): last pair that failed
  uint64_t reloads_ = 0, reload_failures_ = 0;  // GUARDED_BY(mu_)
};

// The subject CN of `ssl`'s verified peer certificate; "" if it has none.
std::string PeerCommonName(const SSL* ssl);

// Go's x509.Certificate.VerifyHostname: an IP against the certificate's IP
// SANs, a name against its DNS SANs (a wildcard for the leftmost label); the
// subject CN is not used.
bool CertificateNamesHost(X509* cert, const std::string& host);

// etcd's checkCRL: the CRL file (PEM or DER) is read anew; an error when one
// of `certs` has a serial it revokes ("transport: certificate serial %x
// revoked"), or when the file cannot be read or parsed.
Status CheckRevoked(const std::string& crl_file, const std::vector<X509*>& certs);

// The certificates of a PEM text, in order; owned by the caller
// (X509_free each).
std::vector<X509*> ParsePemCertificates(std::string_view pem);

// The certificates `ssl`'s peer sent (leaf first), not owned.
std::vector<X509*> PeerCertificates(const SSL* ssl);

// The most recent OpenSSL error queue entries as text, and clears the queue.
std::string OpenSslErrors();

// etcd's transport.SelfCert for --auto-tls / --peer-auto-tls: a self-signed
// ECDSA P-256 certificate (organization "etcd", valid `validity_years`, the
// hosts of `urls` as IP or DNS subject alternative names; server auth, plus
// client auth when `client_usage`) written as cert.pem and key.pem under
// `dir`. Existing files there are kept, as etcd keeps them.
struct SelfSignedFiles {
  std::string cert_file, key_file;
};
Result<SelfSignedFiles> EnsureSelfSignedCert(const std::string& dir, const std::vector<std::string>& hosts,
                                             int validity_years, bool client_usage);

}  // namespace cairn::http
