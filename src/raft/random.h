// The only source of randomness the Raft core uses (randomized election
// timeouts). Injected so a simulator can drive it from one seed.
//
// Thread-safety: none; owned by the host, used only from the thread that
// drives the RawNode.
#pragma once

#include <cstdint>

namespace cairn::raft {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // A uniformly distributed value in [0, bound). REQUIRES: bound > 0.
  virtual uint64_t Uniform(uint64_t bound) = 0;
};

// SplitMix64: small, fast, and good enough for timeouts and simulations.
class SplitMix64 final : public RandomSource {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t Uniform(uint64_t bound) override { return Next() % bound; }

 private:
  uint64_t state_;
};

}  // namespace cairn::raft
