#include "server/member_id.h"

#include <openssl/sha.h>

#include <algorithm>

namespace cairn::server {

namespace {
uint64_t First8BigEndian(const std::string& bytes) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | digest[i];
  return v;
}
}  // namespace

uint64_t ComputeMemberId(std::vector<std::string> peer_urls, const std::string& cluster_token,
                         int64_t unix_seconds) {
  std::sort(peer_urls.begin(), peer_urls.end());
  std::string b;
  for (const auto& u : peer_urls) b += u;
  b += cluster_token;
  if (unix_seconds >= 0) b += std::to_string(unix_seconds);
  return First8BigEndian(b);
}

uint64_t ComputeClusterId(std::vector<uint64_t> member_ids) {
  std::sort(member_ids.begin(), member_ids.end());
  std::string b;
  for (uint64_t id : member_ids) {
    for (int i = 7; i >= 0; i--) b.push_back(static_cast<char>((id >> (8 * i)) & 0xff));
  }
  return First8BigEndian(b);
}

}  // namespace cairn::server
