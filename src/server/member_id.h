// Member and cluster ids computed exactly as etcd computes them
// (server/etcdserver/api/membership: computeMemberId, genID), so the same
// flags give the same ids in `etcdctl member list` on cairn and on etcd.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cairn::server {

// The first 8 bytes (big-endian) of SHA-1(sorted peer URLs joined + token),
// plus the Unix time in seconds when a member is added at runtime
// (`unix_seconds` >= 0).
uint64_t ComputeMemberId(std::vector<std::string> peer_urls, const std::string& cluster_token,
                         int64_t unix_seconds = -1);
// The first 8 bytes (big-endian) of SHA-1 over the sorted member ids, each as
// 8 big-endian bytes.
uint64_t ComputeClusterId(std::vector<uint64_t> member_ids);

}  // namespace cairn::server
