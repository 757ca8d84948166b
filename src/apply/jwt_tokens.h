// etcd's --auth-token jwt (server/auth/jwt.go, options.go) on libjwt:
//
//   --auth-token jwt,pub-key=app.rsa.pub,priv-key=app.rsa,sign-method=RS256,ttl=5m
//
// A token is a JWT signed with `sign-method` (RS256/384/512, ES256/384/512,
// HS256/384/512 through libjwt; PS256/384/512, which libjwt 1.10 lacks, as a
// JWS of our own framing signed by OpenSSL's RSA-PSS, salt length = hash
// length as Go's jwt signs, any salt length accepted as Go verifies), with
// the claims etcd writes:
// "username", "revision" (the auth revision at login) and "exp" (now + ttl,
// default 5 minutes). Any member with the key verifies any member's tokens;
// they cannot be revoked, but a token older than the auth store's revision
// is refused with "revision of auth store is old", as etcd. A token is valid
// only with the configured algorithm (a token claiming another "alg",
// "none" included, is refused) and before "exp". Without priv-key the member
// only verifies (etcd's verify-only mode); for RS/ES with only priv-key the
// public key is derived from it.
//
// Thread-safety: immutable after Create; Sign and Verify may run anywhere.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"

struct evp_md_st;
struct evp_pkey_st;

namespace cairn::apply {

class JwtTokens {
 public:
  // `options`: the --auth-token value after "jwt," ("pub-key=...,priv-key=...,
  // sign-method=...,ttl=..."). Errors are etcd's (invalid auth options,
  // invalid auth signature method) with the reason.
  static Result<std::unique_ptr<JwtTokens>> Create(const std::string& options);

  Result<std::string> Sign(const std::string& user, uint64_t revision) const;
  struct Claims {
    std::string user;
    uint64_t revision = 0;
  };
  std::optional<Claims> Verify(const std::string& token) const;

 private:
  JwtTokens() = default;
  Result<std::string> SignPss(const std::string& user, uint64_t revision, long exp) const;
  std::optional<Claims> VerifyPss(const std::string& token) const;

  int alg_ = 0;  // jwt_alg_t; unused for PS*
  std::string method_;
  const evp_md_st* pss_md_ = nullptr;  // PS*: the digest
  std::string sign_key_, verify_key_;
  // PS*: the keys, parsed once (null if absent or not RSA).
  std::shared_ptr<evp_pkey_st> pss_sign_key_, pss_verify_key_;
  std::chrono::seconds ttl_{300};
};

}  // namespace cairn::apply
