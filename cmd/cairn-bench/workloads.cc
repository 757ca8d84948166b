#include "workloads.h"

#include <algorithm>

namespace cairn::bench {
namespace {

RunLimits LimitsOf(const CommonOptions& common) {
  RunLimits limits;
  limits.total = common.total;
  limits.duration_seconds = common.duration_seconds;
  return limits;
}

KeySpec ForClient(const KeySpec& keys, int client_index) {
  KeySpec spec = keys;
  spec.seed = keys.seed + static_cast<uint64_t>(client_index);
  return spec;
}

Report ToReport(const std::string& workload, RunResult result) {
  Report report;
  report.workload = workload;
  report.elapsed_seconds = result.elapsed_seconds;
  report.ok = result.ok;
  report.errors = result.errors;
  report.error_messages = std::move(result.error_messages);
  report.latency = result.all;
  report.kinds = std::move(result.kinds);
  report.passed = report.errors == 0;
  return report;
}

Report SetupFailure(const std::string& workload, const std::string& error) {
  Report report;
  report.workload = workload;
  report.passed = false;
  report.errors = 1;
  report.error_messages["setup: " + error] = 1;
  return report;
}

}  // namespace

std::string Preload(const CommonOptions& common, const KeySpec& keys, int64_t count,
                    ConnectionPool& pool) {
  KeySpec spec = keys;
  spec.key_space = count;
  spec.sequential = true;
  const int writers = static_cast<int>(std::min<int64_t>(count, std::max(common.clients, 16)));
  std::vector<std::unique_ptr<OpClient>> clients;
  for (int i = 0; i < writers; ++i) {
    clients.push_back(MakePutClient(pool.ForClient(i), spec, common.request_timeout_seconds));
  }
  RunLimits limits;
  limits.total = count;
  RunResult result = RunClosedLoop(clients, {"put"}, limits, "preload");
  if (result.errors > 0) return "preload: " + result.error_messages.begin()->first;
  return "";
}

Report RunPut(const CommonOptions& common, const KeySpec& keys, ConnectionPool& pool) {
  std::vector<std::unique_ptr<OpClient>> clients;
  for (int i = 0; i < common.clients; ++i) {
    clients.push_back(MakePutClient(pool.ForClient(i), ForClient(keys, i),
                                    common.request_timeout_seconds));
  }
  return ToReport("put", RunClosedLoop(clients, {"put"}, LimitsOf(common), "put"));
}

Report RunRange(const CommonOptions& common, const KeySpec& keys, const RangeOptions& options,
                ConnectionPool& pool) {
  const int64_t preload_count = options.keys_per_range > 1 ? options.keys_per_range : keys.key_space;
  if (options.preload) {
    std::string error = Preload(common, keys, preload_count, pool);
    if (!error.empty()) return SetupFailure("range", error);
  }
  std::vector<std::unique_ptr<OpClient>> clients;
  for (int i = 0; i < common.clients; ++i) {
    clients.push_back(MakeRangeClient(pool.ForClient(i), ForClient(keys, i), options.consistency,
                                      options.keys_per_range, options.preload,
                                      common.request_timeout_seconds));
  }
  return ToReport("range", RunClosedLoop(clients, {"range"}, LimitsOf(common), "range"));
}

Report RunTxnPut(const CommonOptions& common, const KeySpec& keys, bool shared_keys,
                 ConnectionPool& pool) {
  std::vector<std::unique_ptr<OpClient>> clients;
  for (int i = 0; i < common.clients; ++i) {
    clients.push_back(MakeTxnPutClient(pool.ForClient(i), ForClient(keys, i), i,
                                       shared_keys ? 0 : common.clients,
                                       common.request_timeout_seconds));
  }
  Report report = ToReport(
      "txn-put", RunClosedLoop(clients, {"committed", "conflict"}, LimitsOf(common), "txn-put"));
  report.extra["cas_committed"] = report.kinds[0].latency.count();
  report.extra["cas_conflicts"] = report.kinds[1].latency.count();
  return report;
}

Report RunMixed(const CommonOptions& common, const KeySpec& keys, const MixedOptions& options,
                ConnectionPool& pool) {
  if (options.preload) {
    std::string error = Preload(common, keys, keys.key_space, pool);
    if (!error.empty()) return SetupFailure("mixed", error);
  }
  std::vector<std::unique_ptr<OpClient>> clients;
  for (int i = 0; i < common.clients; ++i) {
    clients.push_back(MakeMixedClient(pool.ForClient(i), ForClient(keys, i), options,
                                      common.request_timeout_seconds));
  }
  Report report =
      ToReport("mixed", RunClosedLoop(clients, {"read", "write"}, LimitsOf(common), "mixed"));
  report.extra["reads"] = report.kinds[0].latency.count();
  report.extra["writes"] = report.kinds[1].latency.count();
  return report;
}

Report RunLeaseKeepAlive(const CommonOptions& common, const LeaseOptions& options,
                         ConnectionPool& pool) {
  std::vector<std::unique_ptr<OpClient>> clients;
  for (int i = 0; i < common.clients; ++i) {
    std::string error;
    auto client = MakeLeaseKeepAliveClient(pool.ForClient(i), options.ttl_seconds,
                                           common.request_timeout_seconds, &error);
    if (client == nullptr) {
      for (auto& opened : clients) opened->Close();
      return SetupFailure("lease-keepalive", error);
    }
    clients.push_back(std::move(client));
  }
  Report report = ToReport("lease-keepalive", RunClosedLoop(clients, {"keepalive"},
                                                            LimitsOf(common), "lease-keepalive"));
  report.extra["leases"] = common.clients;
  return report;
}

}  // namespace cairn::bench
