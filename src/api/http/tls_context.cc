#include "api/http/tls_context.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include "common/logging.h"

namespace cairn::http {
namespace {

// Go's crypto/tls names (tls.CipherSuites() and tls.InsecureCipherSuites(),
// plus the two short CHACHA20 aliases etcd accepts) -> OpenSSL's. An empty
// OpenSSL name: a TLS 1.3 suite, which Go accepts by name but never restricts.
struct CipherName {
  std::string_view go, openssl;
};
constexpr CipherName kCiphers[] = {
    {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"TLS_AES_128_GCM_SHA256", ""},
    {"TLS_AES_256_GCM_SHA384", ""},
    {"TLS_CHACHA20_POLY1305_SHA256", ""},
};

int VersionOf(const std::string& name) {
  if (name == "TLS1.2") return TLS1_2_VERSION;
  if (name == "TLS1.3") return TLS1_3_VERSION;
  return 0;
}

// ALPN: http/1.1 when offered (see the header), else h2, else none.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  const unsigned char* h2 = nullptr;
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    std::string_view proto(reinterpret_cast<const char*>(in + i + 1), len);
    if (proto == "http/1.1") {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    if (proto == "h2") h2 = in + i + 1;
    i += 1 + len;
  }
  if (h2 != nullptr) {
    *out = h2;
    *outlen = 2;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// The allowed-CN / allowed-hostname check, after OpenSSL's own
// verification of the chain.
int VerifyAllowedName(int preverify_ok, X509_STORE_CTX* store) {
  if (!preverify_ok) return 0;
  if (X509_STORE_CTX_get_error_depth(store) != 0) return 1;  // only the leaf names its holder
  SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const auto* options = static_cast<const TlsOptions*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (options == nullptr || (options->allowed_cns.empty() && options->allowed_hostnames.empty())) return 1;
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (cert == nullptr) return 0;
  for (const auto& host : options->allowed_hostnames) {
    if (CertificateNamesHost(cert, host)) return 1;
  }
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) > 0) {
    for (const auto& allowed : options->allowed_cns) {
      if (allowed == cn) return 1;
    }
  }
  X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

// Go's %q of a []string: ["a" "b"].
std::string GoQuoted(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); i++) out += (i ? " \"" : "\"") + v[i] + "\"";
  return out + "]";
}

}  // namespace

std::string OpenSslErrors() {
  std::string text;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text.empty() ? "unknown error" : text;
}

Status ValidateTlsVersions(const std::string& min_version, const std::string& max_version,
                           const std::vector<std::string>& cipher_suites) {
  for (const std::string* v : {&min_version, &max_version}) {
    if (!v->empty() && VersionOf(*v) == 0) {
      return Status(Code::kInvalidArgument,
                    "unexpected TLS version \"" + *v + "\" (must be one of: TLS1.2, TLS1.3)");
    }
  }
  if (!max_version.empty() && VersionOf(min_version.empty() ? "TLS1.2" : min_version) > VersionOf(max_version)) {
    return Status(Code::kInvalidArgument,
                  "min version (" + min_version + ") is greater than max version (" + max_version + ")");
  }
  if (min_version == "TLS1.3" && !cipher_suites.empty()) {
    return Status(Code::kInvalidArgument, "cipher suites cannot be configured when only TLS1.3 is enabled");
  }
  auto list = OpenSslCipherList(cipher_suites);
  return list.ok() ? Status::Ok() : list.status();
}

Result<std::string> OpenSslCipherList(const std::vector<std::string>& go_names) {
  std::string list;
  for (const auto& name : go_names) {
    const CipherName* found = nullptr;
    for (const auto& c : kCiphers) {
      if (c.go == name) found = &c;
    }
    if (found == nullptr) {
      return Status(Code::kInvalidArgument, "unexpected TLS cipher suite \"" + name + "\"");
    }
    if (found->openssl.empty()) continue;
    if (!list.empty()) list += ":";
    list += found->openssl;
  }
  return list;
}

Result<std::shared_ptr<TlsContext>> TlsContext::Create(TlsOptions options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return Status(Code::kInvalidArgument, "KeyFile and CertFile must both be present[key: " + options.key_file +
                                              ", cert: " + options.cert_file + "]");
  }
  Status s = ValidateTlsVersions(options.min_version, options.max_version, options.cipher_suites);
  if (!s.ok()) return s;
  if (!options.allowed_cns.empty() && !options.allowed_hostnames.empty()) {
    return Status(Code::kInvalidArgument, "AllowedCNs and AllowedHostnames are mutually exclusive (cns=" +
                                              GoQuoted(options.allowed_cns) +
                                              ", hostnames=" + GoQuoted(options.allowed_hostnames) + ")");
  }
  std::shared_ptr<TlsContext> context(new TlsContext(std::move(options)));
  context->cipher_list_ = OpenSslCipherList(context->options_.cipher_suites).value();
  auto stamps = context->Stamps();
  auto ctx = context->Build();
  if (!ctx.ok()) return ctx.status();
  context->ctx_ = *ctx;
  context->stamps_ = stamps;
  return context;
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

std::pair<FileStamp, FileStamp> TlsContext::Stamps() const {
  auto stamp = [](const std::string& path) {
    FileStamp f;
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
      f.size = st.st_size;
      f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      f.inode = st.st_ino;
    }
    return f;
  };
  return {stamp(options_.cert_file), stamp(options_.key_file)};
}

Result<SSL_CTX*> TlsContext::Build() const {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return Status(Code::kInternal, "cannot create a TLS context: " + OpenSslErrors());
  auto fail = [ctx](const std::string& what) {
    SSL_CTX_free(ctx);
    return Status(Code::kInvalidArgument, what);
  };
  SSL_CTX_set_min_proto_version(ctx, options_.min_version.empty() ? TLS1_2_VERSION : VersionOf(options_.min_version));
  if (!options_.max_version.empty()) SSL_CTX_set_max_proto_version(ctx, VersionOf(options_.max_version));
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  // Sessions are not resumed across connections (each handshake is full, as
  // the certificate may have changed); no session cache to bound.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  if (!cipher_list_.empty() && SSL_CTX_set_cipher_list(ctx, cipher_list_.c_str()) != 1) {
    return fail("the cipher suites " + cipher_list_ + " are not available: " + OpenSslErrors());
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, options_.cert_file.c_str()) != 1) {
    return fail("open " + options_.cert_file + ": cannot load the certificate: " + OpenSslErrors());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, options_.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return fail("tls: private key does not match public key (" + options_.cert_file + ", " +
                  options_.key_file + ")");
    }
    return fail("open " + options_.key_file + ": cannot load the private key: " + OpenSslErrors());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return fail("tls: private key does not match public key (" + options_.cert_file + ", " +
                options_.key_file + ")");
  }
  if (options_.RequiresClientCertificate()) {
    if (!options_.trusted_ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, options_.trusted_ca_file.c_str(), nullptr) != 1) {
        return fail("open " + options_.trusted_ca_file + ": cannot load the trusted CA: " + OpenSslErrors());
      }
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options_.trusted_ca_file.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    } else {
      SSL_CTX_set_default_verify_paths(ctx);
    }
    SSL_CTX_set_app_data(ctx, const_cast<TlsOptions*>(&options_));
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, VerifyAllowedName);
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  return ctx;
}

SSL* TlsContext::NewSsl() {
  const auto stamps = Stamps();
  std::lock_guard<std::mutex> lock(mu_);
  if (stamps != stamps_ && stamps != failed_stamps_) {
    auto rebuilt = Build();
    if (rebuilt.ok()) {
      SSL_CTX_free(ctx_);
      ctx_ = *rebuilt;
      stamps_ = stamps;
      reloads_++;
      CAIRN_LOG(kInfo) << "loaded the changed certificate " << options_.cert_file << " and key "
                       << options_.key_file;
    } else {
      // Keep serving with the old pair; try again when the files change.
      failed_stamps_ = stamps;
      reload_failures_++;
      CAIRN_LOG(kWarn) << "failed to create certificate (cert-file " << options_.cert_file << ", key-file "
                       << options_.key_file << "): " << rebuilt.status().message()
                       << "; still serving the previous one";
    }
  }
  ERR_clear_error();
  return SSL_new(ctx_);
}

uint64_t TlsContext::reloads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reloads_;
}

uint64_t TlsContext::reload_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reload_failures_;
}

bool CertificateNamesHost(X509* cert, const std::string& name) {
  std::string host = name;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned char ip[16];
  if (inet_pton(AF_INET, host.c_str(), ip) == 1 || inet_pton(AF_INET6, host.c_str(), ip) == 1) {
    return X509_check_ip_asc(cert, host.c_str(), 0) == 1;
  }
  if (!host.empty() && host.back() == '.') host.pop_back();
  return X509_check_host(cert, host.data(), host.size(),
                         X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                         nullptr) == 1;
}

Status CheckRevoked(const std::string& crl_file, const std::vector<X509*>& certs) {
  BIO* bio = BIO_new_file(crl_file.c_str(), "rb");
  if (bio == nullptr) return Status(Code::kUnavailable, "open " + crl_file + ": " + std::strerror(errno));
  X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr);
  if (crl == nullptr) {
    (void)BIO_reset(bio);
    crl = d2i_X509_CRL_bio(bio, nullptr);
  }
  BIO_free(bio);
  ERR_clear_error();
  if (crl == nullptr) return Status(Code::kInvalidArgument, "x509: cannot parse the CRL in " + crl_file);
  Status result = Status::Ok();
  for (X509* cert : certs) {
    X509_REVOKED* revoked = nullptr;
    if (X509_CRL_get0_by_serial(crl, &revoked, X509_get0_serialNumber(cert)) == 1) {
      BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
      char* hex = bn ? BN_bn2hex(bn) : nullptr;
      std::string serial = hex ? hex : "?";
      for (char& ch : serial) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      OPENSSL_free(hex);
      BN_free(bn);
      result = Status(Code::kPermissionDenied, "transport: certificate serial " + serial + " revoked");
      break;
    }
  }
  X509_CRL_free(crl);
  return result;
}

std::vector<X509*> ParsePemCertificates(std::string_view pem) {
  std::vector<X509*> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return out;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) out.push_back(cert);
  BIO_free(bio);
  ERR_clear_error();  // the end of the text reads as an error
  return out;
}

std::vector<X509*> PeerCertificates(const SSL* ssl) {
  std::vector<X509*> out;
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf != nullptr) out.push_back(leaf);
  // On a server the chain the client sent, without its leaf (a client's
  // includes it: skip it).
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl)) {
    for (int i = 0; i < sk_X509_num(chain); i++) {
      X509* c = sk_X509_value(chain, i);
      if (leaf == nullptr || X509_cmp(c, leaf) != 0) out.push_back(c);
    }
  }
  return out;
}

std::string PeerCommonName(const SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return "";
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) <= 0) return "";
  return cn;
}

Result<SelfSignedFiles> EnsureSelfSignedCert(const std::string& dir, const std::vector<std::string>& hosts,
                                             int validity_years, bool client_usage) {
  if (validity_years <= 0) {
    return Status(Code::kInvalidArgument, "selfSignedCertValidity is invalid,it should be greater than 0");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status(Code::kInternal, "cannot create cert directory " + dir + ": " + ec.message());
  SelfSignedFiles files;
  files.cert_file = std::filesystem::absolute(std::filesystem::path(dir) / "cert.pem").string();
  files.key_file = std::filesystem::absolute(std::filesystem::path(dir) / "key.pem").string();
  if (std::filesystem::exists(files.cert_file) && std::filesystem::exists(files.key_file)) return files;

  ERR_clear_error();
  EVP_PKEY* key = EVP_EC_gen("P-521");  // etcd's curve
  X509* cert = X509_new();
  auto cleanup = [&] {
    if (key != nullptr) EVP_PKEY_free(key);
    if (cert != nullptr) X509_free(cert);
  };
  auto fail = [&](const std::string& what) {
    std::string text = what + ": " + OpenSslErrors();
    cleanup();
    return Status(Code::kInternal, text);
  };
  if (key == nullptr || cert == nullptr) return fail("cannot generate ECDSA key");
  X509_set_version(cert, 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), static_cast<long>(validity_years) * 365 * 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("etcd"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  std::string san;
  for (const auto& host : hosts) {
    unsigned char buf[16];
    const bool ip = inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
    if (host.empty()) continue;
    if (!san.empty()) san += ",";
    san += (ip ? "IP:" : "DNS:") + host;
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> extensions = {
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, client_usage ? "serverAuth,clientAuth" : "serverAuth"},
      {NID_basic_constraints, "critical,CA:FALSE"},
  };
  if (!san.empty()) extensions.push_back({NID_subject_alt_name, san});
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (ext == nullptr) return fail("cannot build the certificate extension " + value);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert, key, EVP_sha256()) == 0) return fail("cannot generate x509 certificate");

  const std::string tmp_key = files.key_file + ".tmp", tmp_cert = files.cert_file + ".tmp";
  FILE* kf = std::fopen(tmp_key.c_str(), "w");
  if (kf == nullptr) return fail("cannot create " + tmp_key + ": " + std::strerror(errno));
  ::fchmod(fileno(kf), 0600);
  BIO* kb = BIO_new_fp(kf, BIO_NOCLOSE);
  const bool key_ok =
      kb != nullptr && PEM_write_bio_PrivateKey_traditional(kb, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  if (kb != nullptr) BIO_free(kb);
  const bool key_closed = std::fclose(kf) == 0;
  FILE* cf = std::fopen(tmp_cert.c_str(), "w");
  if (cf == nullptr) return fail("cannot create " + tmp_cert + ": " + std::strerror(errno));
  const bool cert_ok = PEM_write_X509(cf, cert) == 1;
  const bool cert_closed = std::fclose(cf) == 0;
  if (!key_ok || !key_closed || !cert_ok || !cert_closed) return fail("cannot write the certificate files in " + dir);
  std::filesystem::rename(tmp_key, files.key_file, ec);
  if (!ec) std::filesystem::rename(tmp_cert, files.cert_file, ec);
  if (ec) return fail("cannot write the certificate files in " + dir + ": " + ec.message());
  cleanup();
  CAIRN_LOG(kWarn) << "automatically generated a self-signed certificate " << files.cert_file << " valid for "
                   << validity_years << " year(s)";
  return files;
}

}  // namespace cairn::http
