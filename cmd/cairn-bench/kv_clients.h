// The closed-loop clients of the unary workloads (put, range, txn-put, mixed)
// and of lease-keepalive (one request/response pair on a long-lived stream).
//
// Each client owns its request, response and call context, so it must only
// be driven by RunClosedLoop (one operation in flight at a time).
#pragma once

#include <memory>
#include <string>

#include "bench_options.h"
#include "closed_loop.h"
#include "connections.h"

namespace cairn::bench {

// Where a client's keys live and how they are chosen.
struct KeySpec {
  std::string prefix;
  int key_size = 16;
  int value_size = 8;
  int64_t key_space = 1;
  bool sequential = false;
  uint64_t seed = 1;
};

// Put: one key per operation (sequential or random over the key space).
std::unique_ptr<OpClient> MakePutClient(Connection& connection, const KeySpec& keys,
                                        double timeout_seconds);

// Range: when `prefix_keys` > 1, every operation reads the whole prefix and
// expects `prefix_keys` keys; otherwise one key from the key space. With
// `expect_found`, a missing key (or short prefix) counts as an error.
std::unique_ptr<OpClient> MakeRangeClient(Connection& connection, const KeySpec& keys,
                                          Consistency consistency, int64_t prefix_keys,
                                          bool expect_found, double timeout_seconds);

// Txn compare-and-swap: If(mod_revision(key) == last seen) Then(Put) Else(Get).
// Kind 0 = committed, kind 1 = conflict (the Else branch ran; the client
// learns the current revision and goes on). With `client_count` > 0 the key
// space is partitioned so client `client_index` only touches its own keys
// (conflicts then come only from outside writers); 0 shares every key.
std::unique_ptr<OpClient> MakeTxnPutClient(Connection& connection, const KeySpec& keys,
                                           int client_index, int client_count,
                                           double timeout_seconds);

// Mixed: kind 0 = Range of one key (probability read_fraction), kind 1 = Put.
std::unique_ptr<OpClient> MakeMixedClient(Connection& connection, const KeySpec& keys,
                                          const MixedOptions& options, double timeout_seconds);

// Lease keep-alive: grants one lease (blocking, in the factory), then each
// operation is one LeaseKeepAliveRequest/Response on the client's stream.
// Close() ends the stream and revokes the lease. Returns nullptr and sets
// `error` when the grant fails.
std::unique_ptr<OpClient> MakeLeaseKeepAliveClient(Connection& connection, int64_t ttl_seconds,
                                                   double timeout_seconds, std::string* error);

}  // namespace cairn::bench
