// Base64 on OpenSSL's codec: Go's base64.StdEncoding (padded; etcd's
// hashedPassword field) and base64.RawURLEncoding (unpadded, '-' and '_';
// JWS segments, RFC 7515).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cairn {

std::string Base64Encode(std::string_view in);
// nullopt unless `in` is padded standard base64.
std::optional<std::string> Base64Decode(std::string_view in);

std::string Base64UrlEncode(std::string_view in);
// nullopt unless `in` is unpadded URL-safe base64.
std::optional<std::string> Base64UrlDecode(std::string_view in);

}  // namespace cairn
