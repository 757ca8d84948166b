// Output helpers shared by cairnctl's commands, matching etcdctl's printers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cairn::ctl {

// A table as etcdctl's table printer draws it (tablewriter, cells right
// aligned, headers upper-cased and centred). Rows have the header's width.
std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// Bytes in SI units as go-humanize's Bytes ("512 B", "1.5 kB", "20 MB").
std::string HumanBytes(uint64_t bytes);

// Lower-case hex without leading zeros, as Go's "%x".
std::string Hex(uint64_t v);

}  // namespace cairn::ctl
