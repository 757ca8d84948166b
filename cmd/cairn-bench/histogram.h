// LatencyHistogram: a fixed-size log-linear histogram of nanosecond values,
// in the manner of HdrHistogram.
//
// Values below 2^kPrecisionBits are counted exactly; above, each power of two
// is cut into 2^(kPrecisionBits-1) equal buckets, so a reported percentile is
// within 1/128 (0.8%) of the true sample whatever its magnitude. The bucket
// array is allocated once (34 KiB) and never grows, so recording costs
// a few instructions and no allocation.
//
// Thread safety: none. Give each recording thread (or each closed-loop
// client, whose callbacks never overlap) its own histogram and Merge() them.
#pragma once

#include <cstdint>
#include <vector>

namespace cairn::bench {

class LatencyHistogram {
 public:
  LatencyHistogram();

  void Record(uint64_t value_ns);
  // Adds every sample of `other` to this histogram.
  void Merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  uint64_t min_ns() const { return count_ == 0 ? 0 : min_ns_; }
  uint64_t max_ns() const { return max_ns_; }
  double mean_ns() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_ns_) / count_; }

  // The smallest recorded value v such that at least `quantile` (0..1] of
  // the samples are <= v, rounded up to its bucket's upper bound (and capped
  // at the exact maximum). 0 when empty.
  uint64_t ValueAtQuantile(double quantile) const;

 private:
  static constexpr int kPrecisionBits = 8;
  static constexpr uint64_t kLinearLimit = uint64_t{1} << kPrecisionBits;
  static constexpr uint64_t kSubBuckets = kLinearLimit / 2;
  // Larger values (over 18 minutes) share the last bucket.
  static constexpr int kMaxValueBits = 40;
  static constexpr uint64_t kMaxBucketedValue = (uint64_t{1} << kMaxValueBits) - 1;
  static constexpr int kBucketCount =
      static_cast<int>(kLinearLimit + (kMaxValueBits - kPrecisionBits) * kSubBuckets);

  static int BucketIndex(uint64_t value);
  static uint64_t BucketUpperBound(int index);

  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  uint64_t sum_ns_ = 0;
  uint64_t min_ns_ = UINT64_MAX;
  uint64_t max_ns_ = 0;
};

}  // namespace cairn::bench
