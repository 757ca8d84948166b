// Report: what one workload run measured, printed for a person (text) or for
// a script (--json); ProgressBar: a one-line progress display.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "histogram.h"

namespace cairn::bench {

// Latency and count of one kind of operation (e.g. "read" and "write" in the
// mixed workload; most workloads have one kind).
struct OperationStats {
  std::string name;
  LatencyHistogram latency;
};

struct Report {
  std::string workload;
  nlohmann::json config = nlohmann::json::object();
  double elapsed_seconds = 0;
  // Successful operations (their latencies are in `latency`).
  uint64_t ok = 0;
  uint64_t errors = 0;
  // "CODE: message" of failed operations -> count.
  std::map<std::string, uint64_t> error_messages;
  LatencyHistogram latency;
  std::vector<OperationStats> kinds;  // only reported when more than one
  // Workload-specific results (watch delivery check, CAS conflicts, ...).
  nlohmann::json extra = nlohmann::json::object();
  // False when a correctness check of the workload failed (exit status 1).
  bool passed = true;
  // The unit of `ok`/throughput ("ops"; "events" for watch).
  std::string unit = "ops";
  // CPU (user + system) this process used during the run: the load
  // generator shares the machine with the server, so its cost is reported.
  double client_cpu_seconds = 0;

  double Throughput() const { return elapsed_seconds > 0 ? ok / elapsed_seconds : 0; }
  nlohmann::json ToJson() const;
  void PrintText(std::ostream& out) const;
};

// CPU seconds (user + system) used by this process so far.
double ProcessCpuSeconds();

// Latency summary in milliseconds: p50, p90, p99, p99.9, max, mean, min.
nlohmann::json LatencySummaryJson(const LatencyHistogram& histogram);

// Draws "[#####.....]  42%  4200 ops  1234/s" on one line, redrawn in place,
// only when stdout is a terminal (never into a pipe or file a script reads).
class ProgressBar {
 public:
  // `total` > 0: progress is done/total; else `duration_seconds` drives it.
  ProgressBar(std::string label, int64_t total, double duration_seconds);
  ~ProgressBar() { Finish(); }

  // Redraws at most every 100 ms.
  void Update(int64_t done);
  // Erases the line. Idempotent.
  void Finish();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::string label_;
  int64_t total_;
  double duration_seconds_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace cairn::bench
