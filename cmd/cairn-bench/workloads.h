// The closed-loop workloads: each builds its clients, runs them with
// RunClosedLoop and returns a Report. Setup that is not measured (preloading
// keys, granting leases) happens first and fails the report on error.
#pragma once

#include "bench_options.h"
#include "connections.h"
#include "kv_clients.h"
#include "report.h"

namespace cairn::bench {

Report RunPut(const CommonOptions& common, const KeySpec& keys, ConnectionPool& pool);
Report RunRange(const CommonOptions& common, const KeySpec& keys, const RangeOptions& options,
                ConnectionPool& pool);
// `shared_keys`: every client may touch every key (contended CAS).
Report RunTxnPut(const CommonOptions& common, const KeySpec& keys, bool shared_keys,
                 ConnectionPool& pool);
Report RunMixed(const CommonOptions& common, const KeySpec& keys, const MixedOptions& options,
                ConnectionPool& pool);
Report RunLeaseKeepAlive(const CommonOptions& common, const LeaseOptions& options,
                         ConnectionPool& pool);

// Writes keys [0, count) under keys.prefix with --clients writers (not
// measured). Returns an empty string, or the first error.
std::string Preload(const CommonOptions& common, const KeySpec& keys, int64_t count,
                    ConnectionPool& pool);

}  // namespace cairn::bench
