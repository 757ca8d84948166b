#include "keys.h"

#include <algorithm>

namespace cairn::bench {

std::string FormatKey(const std::string& prefix, int key_size, int64_t index) {
  std::string digits = std::to_string(index);
  const int64_t pad = static_cast<int64_t>(key_size) - static_cast<int64_t>(prefix.size()) -
                      static_cast<int64_t>(digits.size());
  std::string key = prefix;
  if (pad > 0) key.append(static_cast<size_t>(pad), '0');
  key += digits;
  return key;
}

std::string MakeValue(int size) {
  static constexpr char kPattern[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string value(static_cast<size_t>(std::max(size, 0)), 'x');
  for (size_t i = 0; i < value.size(); ++i) value[i] = kPattern[i % (sizeof(kPattern) - 1)];
  return value;
}

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key: etcd's "\0" range_end
}

}  // namespace cairn::bench
