#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace cairn::bench {

LatencyHistogram::LatencyHistogram() : buckets_(kBucketCount, 0) {}

// Values < 2^P map to themselves. A larger value with bit width w keeps its
// top P bits: shift = w - P, sub = value >> shift lies in [2^(P-1), 2^P),
// and each shift owns 2^(P-1) consecutive buckets after the linear ones.
int LatencyHistogram::BucketIndex(uint64_t value) {
  if (value < kLinearLimit) return static_cast<int>(value);
  const int shift = std::bit_width(value) - kPrecisionBits;
  const uint64_t sub = value >> shift;
  return static_cast<int>(kLinearLimit + (shift - 1) * kSubBuckets + (sub - kSubBuckets));
}

uint64_t LatencyHistogram::BucketUpperBound(int index) {
  const uint64_t i = static_cast<uint64_t>(index);
  if (i < kLinearLimit) return i;
  const uint64_t shift = (i - kLinearLimit) / kSubBuckets + 1;
  const uint64_t sub = (i - kLinearLimit) % kSubBuckets + kSubBuckets;
  return ((sub + 1) << shift) - 1;
}

void LatencyHistogram::Record(uint64_t value_ns) {
  ++buckets_[BucketIndex(std::min(value_ns, kMaxBucketedValue))];
  ++count_;
  sum_ns_ += value_ns;
  min_ns_ = std::min(min_ns_, value_ns);
  max_ns_ = std::max(max_ns_, value_ns);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (int i = 0; i < kBucketCount; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ns_ += other.sum_ns_;
  min_ns_ = std::min(min_ns_, other.min_ns_);
  max_ns_ = std::max(max_ns_, other.max_ns_);
}

uint64_t LatencyHistogram::ValueAtQuantile(double quantile) const {
  if (count_ == 0) return 0;
  quantile = std::clamp(quantile, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(quantile * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (int i = 0; i < kBucketCount; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(BucketUpperBound(i), max_ns_);
  }
  return max_ns_;
}

}  // namespace cairn::bench
