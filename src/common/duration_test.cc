#include "common/duration.h"

#include <gtest/gtest.h>

namespace cairn {
namespace {

TEST(ParseGoDurationMs, UnitsAndSequences) {
  EXPECT_EQ(*ParseGoDurationMs("10ms"), 10);
  EXPECT_EQ(*ParseGoDurationMs("1.5s"), 1500);
  EXPECT_EQ(*ParseGoDurationMs("1h30m"), 5400000);
  EXPECT_EQ(*ParseGoDurationMs("0s"), 0);
}

TEST(ParseGoDurationMs, ZeroNeedsNoUnitAsInGo) {
  EXPECT_EQ(*ParseGoDurationMs("0"), 0);
  EXPECT_FALSE(ParseGoDurationMs("5").ok());  // Go: "missing unit in duration"
  EXPECT_FALSE(ParseGoDurationMs("").ok());
  EXPECT_FALSE(ParseGoDurationMs("ms").ok());
  EXPECT_FALSE(ParseGoDurationMs("3d").ok());
}

}  // namespace
}  // namespace cairn
