#include "mvcc/key_codec.h"

#include "mvccpb/kv.pb.h"
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

std::string VersionKey(std::string_view key, int64_t main, int64_t sub) {
  std::string out = KeyPrefix(key);
  storage::PutFixed64BE(&out, ~static_cast<uint64_t>(main));
  storage::PutFixed64BE(&out, ~static_cast<uint64_t>(sub));
  return out;
}

std::string VersionSeekKey(std::string_view key, int64_t rev) {
  std::string out = KeyPrefix(key);
  storage::PutFixed64BE(&out, ~static_cast<uint64_t>(rev));
  storage::PutFixed64BE(&out, 0);  // ~max sub: the newest change of `rev`
  return out;
}

bool DecodeVersionKey(std::string_view encoded, std::string* key, int64_t* main, int64_t* sub) {
  const size_t n = encoded.size();
  if (n < kVersionSuffixBytes + 2) return false;
  std::string_view body = encoded.substr(0, n - kVersionSuffixBytes - 2);
  if (encoded[n - kVersionSuffixBytes - 2] != '\0' || encoded[n - kVersionSuffixBytes - 1] != '\x01') {
    return false;
  }
  key->clear();
  key->reserve(body.size());
  for (size_t i = 0; i < body.size(); i++) {
    key->push_back(body[i]);
    if (body[i] == '\0') {
      if (i + 1 >= body.size() || body[i + 1] != '\xff') return false;
      i++;
    }
  }
  *main = static_cast<int64_t>(~storage::DecodeFixed64BE(encoded.substr(n - 16, 8)));
  *sub = static_cast<int64_t>(~storage::DecodeFixed64BE(encoded.substr(n - 8, 8)));
  return true;
}

int64_t VersionMain(std::string_view encoded) {
  return static_cast<int64_t>(~storage::DecodeFixed64BE(encoded.substr(encoded.size() - 16, 8)));
}

std::string NextKeySeekTarget(std::string_view encoded_version_key) {
  std::string out(encoded_version_key.substr(0, encoded_version_key.size() - kVersionSuffixBytes));
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

std::string EtcdRevisionKey(int64_t main, int64_t sub, bool tombstone) {
  std::string k;
  storage::PutFixed64BE(&k, static_cast<uint64_t>(main));
  k += '_';
  storage::PutFixed64BE(&k, static_cast<uint64_t>(sub));
  if (tombstone) k += 't';
  return k;
}

std::string EtcdTombstoneValue(std::string_view key) {
  mvccpb::KeyValue kv;
  kv.set_key(std::string(key));
  return kv.SerializeAsString();
}

}  // namespace cairn::mvcc
