#include "mvcc/key_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace cairn::mvcc {
namespace {

// Every key of length <= 3 over an alphabet that holds the bytes the escaping
// treats specially (0x00, 0x01, 0xff) and ordinary ones. 6^0 + ... + 6^3 keys.
std::vector<std::string> AllShortKeys() {
  const std::string alphabet(
      "\x00\x01\x02"
      "a\xfe\xff",
      6);
  std::vector<std::string> keys = {""};
  std::vector<std::string> frontier = {""};
  for (int len = 1; len <= 3; len++) {
    std::vector<std::string> next;
    for (const auto& prefix : frontier) {
      for (char c : alphabet) next.push_back(prefix + c);
    }
    keys.insert(keys.end(), next.begin(), next.end());
    frontier = std::move(next);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

// etcd's prefix end (clientv3.GetPrefixRangeEnd): the prefix with its last
// non-0xff byte incremented; "\0" (every key) when the prefix is all 0xff.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<uint8_t>(prefix.back()) < 0xff) {
      prefix.back() = static_cast<char>(static_cast<uint8_t>(prefix.back()) + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

TEST(KeyCodecTest, EscapeDoublesOnlyZeroBytes) {
  EXPECT_EQ(EscapeKey(""), "");
  EXPECT_EQ(EscapeKey("abc"), "abc");
  EXPECT_EQ(EscapeKey(std::string("a\0b", 3)), std::string("a\0\xff"
                                                           "b",
                                                           4));
  EXPECT_EQ(EscapeKey(std::string("\0\0", 2)), std::string("\0\xff\0\xff", 4));
  EXPECT_EQ(EscapeKey("\xff\x01"), "\xff\x01");
  EXPECT_EQ(KeyPrefix("k"), std::string("k\0\x01", 3));
  EXPECT_EQ(KeyPrefixEnd("k"), std::string("k\0\x02", 3));
}

// Byte order of encoded versions must be: user key ascending, then main
// revision descending, then sub revision descending (newest first).
TEST(KeyCodecTest, VersionKeysSortByKeyThenNewestFirst) {
  const auto keys = AllShortKeys();
  const int64_t revs[] = {1, 2, 255, 256, 1 << 20, std::numeric_limits<int64_t>::max()};
  const int64_t subs[] = {0, 1, 255, 256};
  struct Version {
    std::string key;
    int64_t main, sub;
    std::string encoded;
  };
  std::vector<Version> versions;
  for (const auto& k : keys) {
    for (int64_t r : revs) {
      for (int64_t s : subs) versions.push_back({k, r, s, VersionKey(k, r, s)});
    }
  }
  auto model_less = [](const Version& a, const Version& b) {
    if (a.key != b.key) return a.key < b.key;
    if (a.main != b.main) return a.main > b.main;
    return a.sub > b.sub;
  };
  std::vector<Version> by_model = versions;
  std::sort(by_model.begin(), by_model.end(), model_less);
  std::vector<Version> by_bytes = versions;
  std::sort(by_bytes.begin(), by_bytes.end(),
            [](const Version& a, const Version& b) { return a.encoded < b.encoded; });
  ASSERT_EQ(by_model.size(), by_bytes.size());
  for (size_t i = 0; i < by_model.size(); i++) {
    ASSERT_EQ(by_model[i].encoded, by_bytes[i].encoded)
        << "position " << i << ": model has key " << testing::PrintToString(by_model[i].key) << "@"
        << by_model[i].main << "." << by_model[i].sub << ", bytes have "
        << testing::PrintToString(by_bytes[i].key) << "@" << by_bytes[i].main << "."
        << by_bytes[i].sub;
  }
  // No two versions encode alike.
  for (size_t i = 1; i < by_bytes.size(); i++) {
    ASSERT_LT(by_bytes[i - 1].encoded, by_bytes[i].encoded);
  }
}

// The bounds the range scan uses: [KeyPrefix(k), KeyPrefixEnd(k)) holds
// exactly k's versions; EscapeKey(b) <= version of j  <=>  j >= b; and
// version of j < EscapeKey(e)  <=>  j < e.
TEST(KeyCodecTest, ScanBoundsSelectExactlyTheUserRange) {
  const auto keys = AllShortKeys();
  for (const auto& bound : keys) {
    const std::string lower = EscapeKey(bound);
    const std::string own_lo = KeyPrefix(bound), own_hi = KeyPrefixEnd(bound);
    for (const auto& k : keys) {
      for (int64_t rev : {int64_t{1}, int64_t{1} << 40}) {
        const std::string v = VersionKey(k, rev, 3);
        ASSERT_EQ(v >= lower, k >= bound)
            << testing::PrintToString(k) << " vs lower " << testing::PrintToString(bound);
        ASSERT_EQ(v < lower, k < bound)
            << testing::PrintToString(k) << " vs upper " << testing::PrintToString(bound);
        ASSERT_EQ(v >= own_lo && v < own_hi, k == bound)
            << testing::PrintToString(k) << " in versions of " << testing::PrintToString(bound);
      }
    }
  }
}

TEST(KeyCodecTest, PrefixRangeSelectsExactlyKeysWithThePrefix) {
  const auto keys = AllShortKeys();
  for (const auto& prefix : keys) {
    if (prefix.empty()) continue;
    const std::string end = PrefixEnd(prefix);
    const std::string lower = EscapeKey(prefix);
    const bool from_key = end == std::string(1, '\0');
    const std::string upper = from_key ? "" : EscapeKey(end);
    for (const auto& k : keys) {
      const std::string v = VersionKey(k, 7, 0);
      const bool in_scan = v >= lower && (upper.empty() || v < upper);
      const bool has_prefix = k.compare(0, prefix.size(), prefix) == 0;
      ASSERT_EQ(in_scan, has_prefix)
          << "key " << testing::PrintToString(k) << " prefix " << testing::PrintToString(prefix);
    }
  }
}

TEST(KeyCodecTest, SeekTargetsLandOnTheRightVersion) {
  const auto keys = AllShortKeys();
  for (size_t i = 0; i < keys.size(); i++) {
    const std::string& k = keys[i];
    // VersionSeekKey(k, r) sorts before (at or above) every version of k at
    // main revision r, and after every version newer than r.
    const std::string seek = VersionSeekKey(k, 10);
    EXPECT_LE(seek, VersionKey(k, 10, 0));
    EXPECT_LE(seek, VersionKey(k, 10, 1 << 30));
    EXPECT_LE(seek, VersionKey(k, 9, 0));
    EXPECT_GT(seek, VersionKey(k, 11, 0));
    EXPECT_GT(seek, VersionKey(k, 11, 1 << 30));
    EXPECT_GE(seek, KeyPrefix(k));
    EXPECT_LT(seek, KeyPrefixEnd(k));
    // NextKeySeekTarget skips every version of k and no version of the next key.
    const std::string next = NextKeySeekTarget(VersionKey(k, 5, 2));
    EXPECT_EQ(next, KeyPrefixEnd(k));
    EXPECT_GT(next, VersionKey(k, 1, 0));
    if (i + 1 < keys.size()) {
      EXPECT_LE(next, VersionKey(keys[i + 1], std::numeric_limits<int64_t>::max(), 1 << 30))
          << testing::PrintToString(k);
    }
  }
}

TEST(KeyCodecTest, VersionKeyRoundTrip) {
  std::mt19937_64 rng(42);
  const auto keys = AllShortKeys();
  std::vector<std::string> samples = keys;
  samples.push_back(std::string(300, '\0'));
  samples.push_back(std::string(300, '\xff'));
  samples.push_back(std::string("\0\x01\0\xff", 4));  // looks like a terminator inside
  for (const auto& k : samples) {
    const int64_t main = static_cast<int64_t>(rng() >> 1);
    const int64_t sub = static_cast<int64_t>(rng() % 100000);
    const std::string enc = VersionKey(k, main, sub);
    std::string key;
    int64_t m = -1, s = -1;
    ASSERT_TRUE(DecodeVersionKey(enc, &key, &m, &s)) << testing::PrintToString(k);
    EXPECT_EQ(key, k);
    EXPECT_EQ(m, main);
    EXPECT_EQ(s, sub);
    EXPECT_EQ(VersionMain(enc), main);
  }
  std::string key;
  int64_t m = 0, s = 0;
  ASSERT_TRUE(DecodeVersionKey(VersionKey("", 1, 0), &key, &m, &s));
  EXPECT_EQ(key, "");
  EXPECT_EQ(m, 1);
  ASSERT_TRUE(
      DecodeVersionKey(VersionKey("x", std::numeric_limits<int64_t>::max(), 0), &key, &m, &s));
  EXPECT_EQ(m, std::numeric_limits<int64_t>::max());
}

TEST(KeyCodecTest, DecodeVersionKeyRejectsMalformedInput) {
  std::string key;
  int64_t m = 0, s = 0;
  EXPECT_FALSE(DecodeVersionKey("", &key, &m, &s));
  EXPECT_FALSE(DecodeVersionKey(std::string(17, '\0'), &key, &m, &s));  // too short
  std::string good = VersionKey("ab", 3, 1);
  // Wrong terminator.
  std::string bad = good;
  bad[bad.size() - 17] = '\x02';
  EXPECT_FALSE(DecodeVersionKey(bad, &key, &m, &s));
  // A 0x00 in the body not followed by 0xff.
  bad = std::string("a\0b", 3) + std::string("\0\x01", 2) + std::string(16, '\0');
  EXPECT_FALSE(DecodeVersionKey(bad, &key, &m, &s));
  // A 0x00 as the last body byte.
  bad = std::string("a\0", 2) + std::string("\0\x01", 2) + std::string(16, '\0');
  EXPECT_FALSE(DecodeVersionKey(bad, &key, &m, &s));
  EXPECT_TRUE(DecodeVersionKey(good, &key, &m, &s));
}

TEST(KeyCodecTest, RevKeyRoundTripAndOrder) {
  std::vector<std::pair<int64_t, int64_t>> revs = {{1, 0},   {1, 1},   {1, 300},      {2, 0},
                                                   {255, 7}, {256, 0}, {1LL << 40, 2}};
  std::string prev;
  for (const auto& [main, sub] : revs) {
    std::string enc = RevKey(main, sub);
    ASSERT_EQ(enc.size(), 16u);
    int64_t m = 0, s = 0;
    ASSERT_TRUE(DecodeRevKey(enc, &m, &s));
    EXPECT_EQ(m, main);
    EXPECT_EQ(s, sub);
    EXPECT_GT(enc, prev) << main << "." << sub;  // ascending, as the change log is read
    prev = enc;
  }
  int64_t m = 0, s = 0;
  EXPECT_FALSE(DecodeRevKey("short", &m, &s));
  EXPECT_FALSE(DecodeRevKey(std::string(17, '\0'), &m, &s));
}

}  // namespace
}  // namespace cairn::mvcc
