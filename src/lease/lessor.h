// Lessor: the leases of the node and their deadlines.
//
// Leases are part of the replicated state: Grant and Revoke are applied from
// the log (apply thread), persisted in column kLease in the same batch as the
// rest of the entry. Deadlines are not replicated: they live in memory, start
// at grant or at Open (restart refreshes every lease to its full TTL, as etcd's
// lessor does on promotion) and move on KeepAlive. Expiry is only detected
// here; revocation goes through the mutation path like any other change.
//
// Thread-safe: a mutex guards the in-memory map.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "storage/engine.h"

namespace cairn::lease {

struct LessorOptions {
  // TTLs below this are raised to it (etcd: 3/2 election timeout). Default 2 s.
  int64_t min_ttl_seconds = 2;
  // Grants above this fail (etcd's MaxLeaseTTL).
  int64_t max_ttl_seconds = 9000000000LL;
};

struct LeaseInfo {
  int64_t id = 0;
  int64_t granted_ttl_seconds = 0;
  int64_t remaining_ms = 0;
};

class Lessor {
 public:
  Lessor(storage::Engine* engine, const Clock* clock, LessorOptions options);

  // Loads the persisted leases and starts every deadline afresh.
  Status Open();

  // Apply thread: validates and stages a grant in `batch`; the lease becomes
  // visible right away (the caller commits the batch before answering).
  Result<LeaseInfo> Grant(storage::WriteBatch* batch, int64_t id, int64_t ttl_seconds);
  // Apply thread: stages the removal of the lease record. Keys are the caller's.
  Status Revoke(storage::WriteBatch* batch, int64_t id);

  bool Exists(int64_t id) const;
  // Moves the deadline to now + TTL; returns the TTL, or LeaseNotFound.
  Result<int64_t> Renew(int64_t id);
  Result<LeaseInfo> Get(int64_t id) const;
  std::vector<int64_t> List() const;
  // This member became the leader (etcd's Promote): every lease expires no
  // sooner than its full TTL plus `extend_ms` from now, so a lease kept alive
  // through the previous leader is not expired before its holder can reach
  // this one.
  void Promote(int64_t extend_ms);
  // Leases whose deadline passed, at most `max`. Each is reported again after
  // `retry_ms` if still present (its revocation may have been lost).
  std::vector<int64_t> Expired(size_t max, int64_t retry_ms = 3000);
  size_t size() const;

 private:
  struct Entry {
    int64_t ttl_seconds = 0;
    int64_t deadline_ms = 0;
    int64_t reported_ms = -1;
  };
  storage::Engine* engine_;
  const Clock* clock_;
  LessorOptions options_;
  mutable std::mutex mu_;
  std::map<int64_t, Entry> leases_;  // GUARDED_BY(mu_)
};

std::string LeaseRowKey(int64_t id);

}  // namespace cairn::lease
