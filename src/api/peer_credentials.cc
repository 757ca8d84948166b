#include "api/peer_credentials.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <utility>
#include <vector>

#include <openssl/x509.h>

#include "api/http/tls_context.h"
#include "common/logging.h"

namespace cairn::api {
namespace {

// How often gRPC re-reads the peer certificate files (etcd reads them on
// every handshake; a stat and a read every few seconds is as cheap).
constexpr unsigned kRefreshSeconds = 5;

std::string Str(grpc::string_ref r) { return std::string(r.data(), r.size()); }

// X509 certificates freed at the end of a scope.
struct Certificates {
  std::vector<X509*> all;
  explicit Certificates(std::vector<X509*> c) : all(std::move(c)) {}
  Certificates(const Certificates&) = delete;
  Certificates& operator=(const Certificates&) = delete;
  ~Certificates() {
    for (X509* c : all) X509_free(c);
  }
};

// What a member checks of a peer's certificate once gRPC has verified its
// chain, as etcd's TLS config does: --peer-cert-allowed-cn or
// --peer-cert-allowed-hostname on both sides (its VerifyPeerCertificate is
// in the server's and the client's config), the host name dialed (on the
// dialing side, where this replaces gRPC's own check), and --peer-crl-file.
// etcd checks the CRL only when accepting (its tlsListener), so it still
// dials a revoked member and sends it the log; cairn checks on both sides:
// a revoked member is cut off both ways.
struct PeerChecks {
  std::vector<std::string> allowed_cn, allowed_hostnames;
  std::string crl_file;
  bool check_host = false;
  bool Any() const { return !allowed_cn.empty() || !allowed_hostnames.empty() || !crl_file.empty() || check_host; }
};

class PeerCertVerifier : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit PeerCertVerifier(PeerChecks checks) : checks_(std::move(checks)) {}
  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    *sync_status = Check(request);
    return true;  // answered synchronously
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  grpc::Status Check(grpc::experimental::TlsCustomVerificationCheckRequest* request) const {
    Certificates leaf(http::ParsePemCertificates(Str(request->peer_cert())));
    if (leaf.all.empty()) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no peer certificate");
    X509* cert = leaf.all[0];
    if (checks_.check_host) {
      const std::string target = Str(request->target_name());
      if (!http::CertificateNamesHost(cert, target.substr(0, target.rfind(':')))) {
        CAIRN_LOG(kWarn) << "rejected peer " << target << ": its certificate does not name that host";
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "x509: certificate is not valid for the host");
      }
    }
    if (!checks_.allowed_cn.empty()) {
      const std::string cn = Str(request->common_name());
      if (std::find(checks_.allowed_cn.begin(), checks_.allowed_cn.end(), cn) == checks_.allowed_cn.end()) {
        CAIRN_LOG(kWarn) << "rejected peer connection: certificate CN \"" << cn
                         << "\" is not in --peer-cert-allowed-cn";
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "client certificate authentication failed");
      }
    }
    if (!checks_.allowed_hostnames.empty()) {
      bool named = false;
      for (const auto& host : checks_.allowed_hostnames) named = named || http::CertificateNamesHost(cert, host);
      if (!named) {
        CAIRN_LOG(kWarn) << "rejected peer connection: its certificate names none of --peer-cert-allowed-hostname";
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "client certificate authentication failed");
      }
    }
    if (!checks_.crl_file.empty()) {
      Certificates chain(http::ParsePemCertificates(Str(request->peer_cert_full_chain())));
      std::vector<X509*> sent = chain.all;
      if (sent.empty()) sent.push_back(cert);
      if (Status revoked = http::CheckRevoked(checks_.crl_file, sent); !revoked.ok()) {
        CAIRN_LOG(kWarn) << "rejected peer connection: " << revoked.message();
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, revoked.message());
      }
    }
    return grpc::Status::OK;
  }

  const PeerChecks checks_;
};

bool AnyHttps(const std::vector<std::string>& urls) {
  for (const auto& u : urls) {
    if (u.starts_with("https://")) return true;
  }
  return false;
}

}  // namespace

Result<PeerCredentials> BuildPeerCredentials(const ServerConfig& config, const std::string& data_dir) {
  TransportSecurity sec = config.peer_tls;
  bool self_signed = false;
  if (sec.auto_tls) {
    if (!sec.Empty()) {
      CAIRN_LOG(kWarn) << "ignoring peer auto TLS since certs given";
    } else {
      std::vector<std::string> hosts;
      for (const auto& url : config.listen_peer_urls) {
        if (auto u = ParseUrl(url); u.ok()) hosts.push_back(u->host);
      }
      auto files = http::EnsureSelfSignedCert(data_dir + "/fixtures/peer", hosts,
                                              static_cast<int>(config.self_signed_cert_validity),
                                              /*client_usage=*/true);
      if (!files.ok()) {
        return Status(files.status().code(), "failed to get peer self-signed certs: " + files.status().message());
      }
      sec = TransportSecurity{};
      sec.cert_file = files->cert_file;
      sec.key_file = files->key_file;
      self_signed = true;
    }
  }
  for (const auto& url : config.listen_peer_urls) {
    if (url.starts_with("http://")) {
      if (!sec.Empty() && !self_signed) {
        CAIRN_LOG(kWarn) << "scheme is HTTP while key and cert files are present; ignoring key and cert files "
                            "(peer-url " << url << ")";
      }
      if (sec.client_cert_auth) {
        CAIRN_LOG(kWarn) << "scheme is HTTP while --peer-client-cert-auth is enabled; ignoring client cert auth "
                            "for this URL (peer-url " << url << ")";
      }
    }
  }
  if ((sec.client_cert_file.empty()) != (sec.client_key_file.empty())) {
    return Status(Code::kInvalidArgument,
                  "ClientKeyFile and ClientCertFile must both be present or both absent: key: " +
                      sec.client_key_file + ", cert: " + sec.client_cert_file + "]");
  }

  PeerCredentials out;
  if (AnyHttps(config.listen_peer_urls)) {
    // The same checks (and messages) as the client URL's, on these files.
    http::TlsOptions o;
    o.cert_file = sec.cert_file;
    o.key_file = sec.key_file;
    o.trusted_ca_file = sec.trusted_ca_file;
    o.client_cert_auth = sec.client_cert_auth;
    o.allowed_cns = sec.allowed_cn;
    o.allowed_hostnames = sec.allowed_hostname;
    auto check = http::TlsContext::Create(o);
    if (!check.ok()) return check.status();
    std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
    if (sec.trusted_ca_file.empty()) {
      provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(sec.key_file, sec.cert_file,
                                                                                       kRefreshSeconds);
    } else {
      provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          sec.key_file, sec.cert_file, sec.trusted_ca_file, kRefreshSeconds);
    }
    grpc::experimental::TlsServerCredentialsOptions so(provider);
    so.watch_identity_key_cert_pairs();
    if (!sec.trusted_ca_file.empty()) so.watch_root_certs();
    if (o.RequiresClientCertificate()) {
      if (sec.trusted_ca_file.empty()) {
        return Status(Code::kInvalidArgument,
                      "--peer-client-cert-auth needs --peer-trusted-ca-file (cairn verifies peers against it)");
      }
      so.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    } else {
      so.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    }
    const PeerChecks checks{sec.allowed_cn, sec.allowed_hostname, sec.crl_file, false};
    if (checks.Any()) {
      so.set_certificate_verifier(grpc::experimental::ExternalCertificateVerifier::Create<PeerCertVerifier>(checks));
    }
    out.server = grpc::experimental::TlsServerCredentials(so);
    if (!out.server) return Status(Code::kInvalidArgument, "cannot create the peer TLS server credentials");
  }

  // Dialing https peers: this member's client certificate, the CA.
  const std::string cert = sec.client_cert_file.empty() ? sec.cert_file : sec.client_cert_file;
  const std::string key = sec.client_key_file.empty() ? sec.key_file : sec.client_key_file;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (!cert.empty() && !sec.trusted_ca_file.empty()) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(key, cert, sec.trusted_ca_file,
                                                                                     kRefreshSeconds);
  } else if (!cert.empty()) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(key, cert, kRefreshSeconds);
  } else if (!sec.trusted_ca_file.empty()) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(sec.trusted_ca_file,
                                                                                     kRefreshSeconds);
  }
  grpc::experimental::TlsChannelCredentialsOptions co;
  if (provider) {
    co.set_certificate_provider(provider);
    if (!cert.empty()) co.watch_identity_key_cert_pairs();
    if (!sec.trusted_ca_file.empty()) co.watch_root_certs();
  }
  if ((!sec.allowed_cn.empty() || !sec.allowed_hostname.empty() || !sec.crl_file.empty()) && !self_signed) {
    co.set_certificate_verifier(grpc::experimental::ExternalCertificateVerifier::Create<PeerCertVerifier>(
        PeerChecks{sec.allowed_cn, sec.allowed_hostname, sec.crl_file, true}));
  }
  if (self_signed) {
    // etcd: InsecureSkipVerify for self-signed peer certificates.
    co.set_verify_server_certs(false);
    co.set_check_call_host(false);
    co.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  }
  out.channel = grpc::experimental::TlsCredentials(co);
  if (!out.channel) return Status(Code::kInvalidArgument, "cannot create the peer TLS channel credentials");
  return out;
}

}  // namespace cairn::api
