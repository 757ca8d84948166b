// ClosedLoopRunner: drives N closed-loop clients, each with exactly one
// request in flight, until a total count of operations or a duration is
// reached, as etcd's benchmark does with N goroutines.
//
// The clients use gRPC's callback API, so no thread is parked per client: a
// completion callback (on one of gRPC's few threads) records the latency and
// starts that client's next request. The caller's thread only waits, redraws
// the progress bar and restarts clients whose requests failed inline (see
// Run()). Memory is bounded by the client count: one request, one response
// and one histogram per kind per client.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "report.h"

namespace cairn::bench {

// One client's operation. Start() issues one request and arranges for `done`
// to be called exactly once when it completes, on any thread. `kind` indexes
// the runner's kind names (0 when there is one kind). Start() is never called
// again before `done` of the previous operation has been called.
class OpClient {
 public:
  using Done = std::function<void(const grpc::Status& status, int kind)>;
  virtual ~OpClient() = default;
  // `ticket` is this operation's global sequence number (0, 1, 2, ...).
  virtual void Start(int64_t ticket, Done done) = 0;
  // Called once after the last operation, before the client is destroyed
  // (streams are closed here). Default: nothing.
  virtual void Close() {}
};

struct RunLimits {
  int64_t total = 0;              // operations, when duration_seconds == 0
  double duration_seconds = 0;    // > 0: stop starting operations after this
};

struct RunResult {
  double elapsed_seconds = 0;
  uint64_t ok = 0;
  uint64_t errors = 0;
  std::map<std::string, uint64_t> error_messages;
  std::vector<OperationStats> kinds;  // one per kind name
  LatencyHistogram all;
};

// Runs the clients to completion and returns what they measured. Blocks.
// `progress_label` empty: no progress bar.
RunResult RunClosedLoop(std::vector<std::unique_ptr<OpClient>>& clients,
                        const std::vector<std::string>& kind_names, const RunLimits& limits,
                        const std::string& progress_label);

// "DEADLINE_EXCEEDED: Deadline Exceeded" (messages cut to 120 characters so
// that a flood of distinct messages stays small).
std::string DescribeStatus(const grpc::Status& status);

}  // namespace cairn::bench
