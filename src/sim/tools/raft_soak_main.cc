// raft-soak: runs the Raft simulator over many seeds, or one seed with a trace.
//
//   raft-soak --seeds=100000 [--start=1] [--profile=mixed] [--keep-going]
//   raft-soak --seed=1234 [--profile=mixed] [--trace]
//
// Profiles: mixed (default), small, mutation-commit-previous-term,
// mutation-read-before-term-commit, mutation-vote-without-log-check (these
// are expected to fail: they break a rule on purpose). Exit status 1 if any
// seed failed. Also: make raft-soak SEEDS=N / SEED=N TRACE=1 / PROFILE=name.
#include <cstdlib>
#include <iostream>
#include <string>

#include "sim/soak.h"

namespace {

bool Flag(const std::string& arg, const std::string& name, std::string* value) {
  const std::string prefix = "--" + name + "=";
  if (arg.rfind(prefix, 0) != 0) return false;
  *value = arg.substr(prefix.size());
  return true;
}

int Usage() {
  std::cerr << "usage: raft-soak [--profile=NAME] (--seeds=N [--start=S] [--keep-going] | "
               "--seed=S [--trace])\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string profile = "mixed";
  uint64_t seeds = 1000;
  uint64_t start = 1;
  bool single = false;
  uint64_t seed = 0;
  bool trace = false;
  bool keep_going = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    try {
      if (Flag(arg, "profile", &v)) {
        profile = v;
      } else if (Flag(arg, "seeds", &v)) {
        seeds = std::stoull(v);
      } else if (Flag(arg, "start", &v)) {
        start = std::stoull(v);
      } else if (Flag(arg, "seed", &v)) {
        seed = std::stoull(v);
        single = true;
      } else if (arg == "--trace") {
        trace = true;
      } else if (arg == "--keep-going") {
        keep_going = true;
      } else {
        return Usage();
      }
    } catch (const std::exception&) {
      return Usage();
    }
  }

  if (single) {
    auto options = cairn::sim::SimOptions::ForSeed(profile, seed);
    if (!options.ok()) {
      std::cerr << options.status().ToString() << "\n";
      return 2;
    }
    std::cout << "options: " << options->ToString() << "\n";
    cairn::sim::Simulation sim(*options);
    if (trace) sim.set_trace(&std::cout);
    cairn::sim::SimResult result = sim.Run();
    if (!result.ok) {
      std::cout << cairn::sim::FailureReport(*options, result) << "\n";
      return 1;
    }
    std::cout << "seed " << seed << " ok: " << result.stats.ToString() << "\n";
    return 0;
  }

  std::cout << "raft-soak: profile " << profile << ", seeds " << start << ".." << start + seeds - 1
            << std::endl;
  cairn::sim::SoakSummary summary =
      cairn::sim::RunSeeds(profile, start, seeds, !keep_going, &std::cout);
  std::cout << summary.ToString() << std::endl;
  return summary.failures == 0 ? 0 : 1;
}
