// Key and value generation for the workloads.
//
// A key is the prefix followed by a zero-padded decimal index, padded so the
// whole key is key_size bytes (e.g. prefix "p/", size 16 -> "p/00000000000042").
// Printable keys keep etcdctl output readable when looking at a bench run.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "bench_options.h"

namespace cairn::bench {

std::string FormatKey(const std::string& prefix, int key_size, int64_t index);

// A value of exactly `size` bytes (a repeating pattern).
std::string MakeValue(int size);

// Chooses the key index of each operation. One per client (not thread-safe).
class KeyChooser {
 public:
  KeyChooser(const KeyOptions& options, uint64_t seed)
      : key_space_(options.key_space), sequential_(options.sequential_keys), random_(seed) {}

  // `operation` is the global ticket of this operation (unique across
  // clients), so sequential mode visits every key once per pass.
  int64_t Next(int64_t operation) {
    if (sequential_) return operation % key_space_;
    return static_cast<int64_t>(random_() % static_cast<uint64_t>(key_space_));
  }

 private:
  int64_t key_space_;
  bool sequential_;
  std::mt19937_64 random_;
};

// The smallest string greater than every string starting with `prefix`
// (etcd's range_end for a prefix).
std::string PrefixEnd(const std::string& prefix);

}  // namespace cairn::bench
