#include "apply/jwt_tokens.h"

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "common/duration.h"

namespace cairn::apply {
namespace {

Status InvalidOptions(const std::string& why) {
  return Status(Code::kInvalidArgument, "auth: invalid auth options (" + why + ")");
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream s;
  s << f.rdbuf();
  *out = s.str();
  return true;
}

// The PEM public key of a PEM private key ("" if it is not one).
std::string PublicOf(const std::string& private_pem) {
  BIO* in = BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size()));
  EVP_PKEY* key = in ? PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr) : nullptr;
  std::string out;
  if (key != nullptr) {
    BIO* mem = BIO_new(BIO_s_mem());
    if (mem != nullptr && PEM_write_bio_PUBKEY(mem, key) == 1) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(mem, &data);
      out.assign(data, static_cast<size_t>(n));
    }
    if (mem != nullptr) BIO_free(mem);
    EVP_PKEY_free(key);
  }
  if (in != nullptr) BIO_free(in);
  return out;
}

const EVP_MD* PssDigest(const std::string& method) {
  if (method == "PS256") return EVP_sha256();
  if (method == "PS384") return EVP_sha384();
  if (method == "PS512") return EVP_sha512();
  return nullptr;
}

// A PEM RSA key (private or public) as an EVP_PKEY; null if it is not one.
std::shared_ptr<EVP_PKEY> ReadRsaPem(const std::string& pem, bool is_private) {
  if (pem.empty()) return nullptr;
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (in == nullptr) return nullptr;
  EVP_PKEY* key = is_private ? PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr)
                             : PEM_read_bio_PUBKEY(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  std::shared_ptr<EVP_PKEY> out(key, EVP_PKEY_free);
  if (out == nullptr || EVP_PKEY_get_base_id(out.get()) != EVP_PKEY_RSA) return nullptr;
  return out;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

long NowSeconds() {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

}  // namespace

Result<std::unique_ptr<JwtTokens>> JwtTokens::Create(const std::string& options) {
  std::map<std::string, std::string> opts;
  size_t start = 0;
  while (start < options.size()) {
    size_t comma = options.find(',', start);
    if (comma == std::string::npos) comma = options.size();
    const std::string item = options.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) return InvalidOptions("\"" + item + "\" is not key=value");
    opts[item.substr(0, eq)] = item.substr(eq + 1);
  }
  std::unique_ptr<JwtTokens> t(new JwtTokens());
  if (auto it = opts.find("ttl"); it != opts.end() && !it->second.empty()) {
    auto ms = ParseGoDurationMs(it->second);
    if (!ms.ok() || *ms <= 0) return InvalidOptions("bad ttl " + it->second);
    t->ttl_ = std::chrono::seconds(std::max<int64_t>(1, *ms / 1000));
  }
  const std::string method = opts.count("sign-method") ? opts["sign-method"] : "";
  t->method_ = method;
  t->pss_md_ = PssDigest(method);
  const jwt_alg_t alg = t->pss_md_ != nullptr ? JWT_ALG_NONE : jwt_str_alg(method.c_str());
  if (t->pss_md_ == nullptr && (method.empty() || alg == JWT_ALG_INVAL || alg == JWT_ALG_NONE)) {
    return Status(Code::kInvalidArgument, "auth: invalid auth signature method (\"" + method + "\")");
  }
  t->alg_ = static_cast<int>(alg);
  std::string pub, priv;
  if (opts.count("pub-key") && !ReadFile(opts["pub-key"], &pub)) {
    return InvalidOptions("cannot read pub-key " + opts["pub-key"]);
  }
  if (opts.count("priv-key") && !ReadFile(opts["priv-key"], &priv)) {
    return InvalidOptions("cannot read priv-key " + opts["priv-key"]);
  }
  const bool hmac = alg == JWT_ALG_HS256 || alg == JWT_ALG_HS384 || alg == JWT_ALG_HS512;
  if (hmac) {
    // etcd: the secret is the private key file, else the public one.
    t->sign_key_ = t->verify_key_ = priv.empty() ? pub : priv;
    if (t->sign_key_.empty()) return Status(Code::kInvalidArgument, "auth: missing key data");
  } else {
    t->sign_key_ = priv;
    t->verify_key_ = pub.empty() ? PublicOf(priv) : pub;
    if (t->verify_key_.empty()) return Status(Code::kInvalidArgument, "auth: missing key data");
    if (!priv.empty() && !pub.empty() && PublicOf(priv).empty()) {
      return InvalidOptions("priv-key is not a PEM private key");
    }
  }
  if (t->pss_md_ != nullptr) {
    t->pss_sign_key_ = ReadRsaPem(t->sign_key_, true);
    t->pss_verify_key_ = ReadRsaPem(t->verify_key_, false);
  }
  // A round trip now: a key that does not fit the method fails at start.
  if (!t->sign_key_.empty()) {
    auto token = t->Sign("cairn-check", 1);
    if (!token.ok()) return token.status();
    if (!t->Verify(*token)) return Status(Code::kInvalidArgument, "auth: public and private keys don't match");
  }
  return t;
}

Result<std::string> JwtTokens::Sign(const std::string& user, uint64_t revision) const {
  if (sign_key_.empty()) {
    return Status(Code::kUnknown, "auth: token signing attempted with verify-only key");
  }
  const long exp = NowSeconds() + static_cast<long>(ttl_.count());
  if (pss_md_ != nullptr) return SignPss(user, revision, exp);
  jwt_t* jwt = nullptr;
  if (jwt_new(&jwt) != 0) return Status(Code::kInternal, "jwt: out of memory");
  int rc = jwt_add_grant(jwt, "username", user.c_str());
  if (rc == 0) rc = jwt_add_grant_int(jwt, "revision", static_cast<long>(revision));
  if (rc == 0) rc = jwt_add_grant_int(jwt, "exp", exp);
  if (rc == 0) {
    rc = jwt_set_alg(jwt, static_cast<jwt_alg_t>(alg_), reinterpret_cast<const unsigned char*>(sign_key_.data()),
                     static_cast<int>(sign_key_.size()));
  }
  char* encoded = rc == 0 ? jwt_encode_str(jwt) : nullptr;
  jwt_free(jwt);
  if (encoded == nullptr) return Status(Code::kInvalidArgument, "auth: cannot sign a JWT with this key and method");
  std::string token(encoded);
  std::free(encoded);
  return token;
}

std::optional<JwtTokens::Claims> JwtTokens::Verify(const std::string& token) const {
  if (pss_md_ != nullptr) return VerifyPss(token);
  jwt_t* jwt = nullptr;
  if (jwt_decode(&jwt, token.c_str(), reinterpret_cast<const unsigned char*>(verify_key_.data()),
                 static_cast<int>(verify_key_.size())) != 0 ||
      jwt == nullptr) {
    return std::nullopt;
  }
  std::optional<Claims> out;
  const char* user = jwt_get_grant(jwt, "username");
  errno = 0;
  const long revision = jwt_get_grant_int(jwt, "revision");
  const bool has_revision = errno == 0;
  errno = 0;
  const long exp = jwt_get_grant_int(jwt, "exp");
  const bool has_exp = errno == 0;
  if (jwt_get_alg(jwt) == static_cast<jwt_alg_t>(alg_) && user != nullptr && has_revision && revision > 0 &&
      (!has_exp || exp > NowSeconds())) {
    out = Claims{user, static_cast<uint64_t>(revision)};
  }
  jwt_free(jwt);
  return out;
}

// JWS compact serialization (RFC 7515) of {"alg":"PS256","typ":"JWT"} and
// the claims; the signature is RSASSA-PSS over "header.payload".
Result<std::string> JwtTokens::SignPss(const std::string& user, uint64_t revision, long exp) const {
  const Status cannot(Code::kInvalidArgument, "auth: cannot sign a JWT with this key and method");
  if (pss_sign_key_ == nullptr) return cannot;
  const nlohmann::json header = {{"alg", method_}, {"typ", "JWT"}};
  const nlohmann::json claims = {{"username", user}, {"revision", revision}, {"exp", exp}};
  const std::string input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  size_t n = 0;
  if (ctx == nullptr || EVP_DigestSignInit(ctx.get(), &pctx, pss_md_, nullptr, pss_sign_key_.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return cannot;
  }
  std::string sig(n, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return cannot;
  }
  sig.resize(n);
  return input + "." + Base64UrlEncode(sig);
}

std::optional<JwtTokens::Claims> JwtTokens::VerifyPss(const std::string& token) const {
  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string::npos || token.find('.', dot2 + 1) != std::string::npos) return std::nullopt;
  auto header = Base64UrlDecode(std::string_view(token).substr(0, dot1));
  auto payload = Base64UrlDecode(std::string_view(token).substr(dot1 + 1, dot2 - dot1 - 1));
  auto sig = Base64UrlDecode(std::string_view(token).substr(dot2 + 1));
  if (!header || !payload || !sig) return std::nullopt;
  const nlohmann::json h = nlohmann::json::parse(*header, nullptr, false);
  if (!h.is_object() || !h.contains("alg") || h["alg"] != method_) return std::nullopt;
  if (pss_verify_key_ == nullptr) return std::nullopt;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (ctx == nullptr || EVP_DigestVerifyInit(ctx.get(), &pctx, pss_md_, nullptr, pss_verify_key_.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) != 1 ||
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig->data()), sig->size(),
                       reinterpret_cast<const unsigned char*>(token.data()), dot2) != 1) {
    return std::nullopt;
  }
  const nlohmann::json c = nlohmann::json::parse(*payload, nullptr, false);
  if (!c.is_object()) return std::nullopt;
  const auto user = c.find("username");
  const auto revision = c.find("revision");
  const auto exp = c.find("exp");
  if (user == c.end() || !user->is_string() || revision == c.end() || !revision->is_number_integer() ||
      revision->get<int64_t>() <= 0) {
    return std::nullopt;
  }
  if (exp != c.end() && (!exp->is_number() || exp->get<double>() <= static_cast<double>(NowSeconds()))) {
    return std::nullopt;
  }
  return Claims{user->get<std::string>(), revision->get<uint64_t>()};
}

}  // namespace cairn::apply
