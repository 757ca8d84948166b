#include "mvcc/key_codec.h"

#include "storage/engine.h"

namespace cairn::mvcc {

std::string EscapeKey(std::string_view key) {
  std::string out;
  out.reserve(key.size() + 2);
  for (char c : key) {
    out.push_back(c);
    if (c == '\0') out.push_back('\xff');
  }
  return out;
}

std::string KeyPrefix(std::string_view key) {
  std::string out = EscapeKey(key);
  out.push_back('\0');
  out.push_back('\x01');
  return out;
}

std::string KeyPrefixEnd(std::string_view key) {
  std::string out = EscapeKey(key);
  out.push_back('\0');
  out.push_back('\x02');
  return out;
}

std::string VersionKey(std::string_view key, int64_t revision) {
  std::string out = KeyPrefix(key);
  storage::PutFixed64BE(&out, ~static_cast<uint64_t>(revision));
  return out;
}

bool DecodeVersionKey(std::string_view encoded, std::string* key, int64_t* revision) {
  if (encoded.size() < 10) return false;
  std::string_view body = encoded.substr(0, encoded.size() - 10);
  if (encoded[encoded.size() - 10] != '\0' || encoded[encoded.size() - 9] != '\x01') return false;
  key->clear();
  key->reserve(body.size());
  for (size_t i = 0; i < body.size(); i++) {
    key->push_back(body[i]);
    if (body[i] == '\0') {
      if (i + 1 >= body.size() || body[i + 1] != '\xff') return false;
      i++;
    }
  }
  *revision = static_cast<int64_t>(~storage::DecodeFixed64BE(encoded.substr(encoded.size() - 8)));
  return true;
}

std::string NextKeySeekTarget(std::string_view encoded_version_key) {
  std::string out(encoded_version_key.substr(0, encoded_version_key.size() - 8));
  out.back() = '\x02';
  return out;
}

std::string RevKey(int64_t main, int64_t sub) {
  std::string out;
  storage::PutFixed64BE(&out, static_cast<uint64_t>(main));
  storage::PutFixed64BE(&out, static_cast<uint64_t>(sub));
  return out;
}

bool DecodeRevKey(std::string_view encoded, int64_t* main, int64_t* sub) {
  if (encoded.size() != 16) return false;
  *main = static_cast<int64_t>(storage::DecodeFixed64BE(encoded.substr(0, 8)));
  *sub = static_cast<int64_t>(storage::DecodeFixed64BE(encoded.substr(8, 8)));
  return true;
}

}  // namespace cairn::mvcc
