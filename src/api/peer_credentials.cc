#include "api/peer_credentials.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "api/http/tls_context.h"
#include "common/logging.h"

namespace cairn::api {
namespace {

constexpr unsigned kRefreshSeconds = 60;

std::string Str(grpc::string_ref r) { return std::string(r.data(), r.size()); }

// Whether the certificate names the host of `target` ("host:port").
bool NamesHost(grpc::experimental::TlsCustomVerificationCheckRequest* request, const std::string& target) {
  std::string host = target.substr(0, target.rfind(':'));
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  for (const auto& ip : request->ip_names()) {
    if (Str(ip) == host) return true;
  }
  for (const auto& dns : request->dns_names()) {
    const std::string name = Str(dns);
    if (name == host) return true;
    const size_t dot = host.find('.');
    if (name.starts_with("*.") && dot != std::string::npos && name.substr(1) == host.substr(dot)) return true;
  }
  return false;
}

// --peer-cert-allowed-cn, during the handshake (after gRPC verified the
// chain), on both sides as etcd does (its VerifyPeerCertificate is in the
// server's and the client's TLS config). On the dialing side it replaces
// gRPC's host name check, so it does that check too.
class AllowedCnVerifier : public grpc::experimental::ExternalCertificateVerifier {
 public:
  AllowedCnVerifier(std::vector<std::string> allowed, bool check_host)
      : allowed_(std::move(allowed)), check_host_(check_host) {}
  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    const std::string cn = Str(request->common_name());
    if (check_host_ && !NamesHost(request, Str(request->target_name()))) {
      CAIRN_LOG(kWarn) << "rejected peer " << Str(request->target_name())
                       << ": its certificate does not name that host";
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "x509: certificate is not valid for the host");
    } else if (std::find(allowed_.begin(), allowed_.end(), cn) != allowed_.end()) {
      *sync_status = grpc::Status::OK;
    } else {
      CAIRN_LOG(kWarn) << "rejected peer connection: certificate CN \"" << cn
                       << "\" is not in --peer-cert-allowed-cn";
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "client certificate authentication failed");
    }
    return true;  // answered synchronously
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::vector<std::string> allowed_;
  const bool check_host_;
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
  if (!sec.allowed_hostname.empty()) {
    return Status(Code::kInvalidArgument, "--peer-cert-allowed-hostname is not supported yet");
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
    if (!sec.allowed_cn.empty()) {
      so.set_certificate_verifier(
          grpc::experimental::ExternalCertificateVerifier::Create<AllowedCnVerifier>(sec.allowed_cn, false));
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
  if (!sec.allowed_cn.empty() && !self_signed) {
    co.set_certificate_verifier(
        grpc::experimental::ExternalCertificateVerifier::Create<AllowedCnVerifier>(sec.allowed_cn, true));
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
