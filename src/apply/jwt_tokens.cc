#include "apply/jwt_tokens.h"

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

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
  const jwt_alg_t alg = jwt_str_alg(method.c_str());
  if (method.empty() || alg == JWT_ALG_INVAL || alg == JWT_ALG_NONE) {
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
  jwt_t* jwt = nullptr;
  if (jwt_new(&jwt) != 0) return Status(Code::kInternal, "jwt: out of memory");
  const long exp = static_cast<long>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch() + ttl_)
          .count());
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
  const long now = static_cast<long>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  if (jwt_get_alg(jwt) == static_cast<jwt_alg_t>(alg_) && user != nullptr && has_revision && revision > 0 &&
      (!has_exp || exp > now)) {
    out = Claims{user, static_cast<uint64_t>(revision)};
  }
  jwt_free(jwt);
  return out;
}

}  // namespace cairn::apply
