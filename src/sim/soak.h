// Runs many seeds of the simulation: the CTest suites and the raft-soak
// runner share this.
//
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "sim/simulation.h"

namespace cairn::sim {

struct SoakSummary {
  uint64_t runs = 0;
  uint64_t failures = 0;
  // One paragraph per failing seed: the violation, the options and the
  // command that reproduces it.
  std::vector<std::string> reports;
  SimStats totals;
  double seconds = 0;

  std::string ToString() const;
};

// Runs seeds [first_seed, first_seed + count) of `profile`. Stops at the
// first failure if `stop_at_first_failure`. Progress lines go to `progress`
// (may be null).
SoakSummary RunSeeds(const std::string& profile, uint64_t first_seed, uint64_t count,
                     bool stop_at_first_failure, std::ostream* progress);

// The report for one failed run.
std::string FailureReport(const SimOptions& options, const SimResult& result);

}  // namespace cairn::sim
