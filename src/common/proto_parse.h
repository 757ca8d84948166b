// Parsing protobuf messages with an explicit nesting limit.
//
// Protobuf's default recursion limit (100 nested messages) refuses a valid
// etcd txn nested more than 50 levels deep (each level is a TxnRequest inside
// a RequestOp). etcd has no such limit: its own check (too many operations in
// txn request, against --max-txn-ops) decides. Requests are therefore parsed
// with a limit derived from --max-txn-ops, and log entries with a fixed limit
// above any such limit, so that whatever the API accepted parses again on
// apply and replay, whatever --max-txn-ops the member restarts with.
//
// The limit still exists, and is capped, because parsing recurses: a hostile
// request of a few MiB could otherwise nest deep enough to overflow a thread's
// stack.
//
// Thread safety: the functions are thread-safe.
#pragma once

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/message_lite.h>

#include <algorithm>
#include <string_view>

namespace cairn {

// Nesting allowed a client's request: a txn of --max-txn-ops levels (two
// messages per level, and the op inside the deepest one) parses, so etcd's
// check rather than the parser refuses one level more.
// Default: 100 (protobuf's) for small --max-txn-ops; at most kMaxRequestRecursion.
constexpr int kMaxRequestRecursion = 4096;
inline int RequestRecursionLimit(int max_txn_ops) {
  const int wanted = 2 * std::max(max_txn_ops, 0) + 8;
  return std::clamp(wanted, 100, kMaxRequestRecursion);
}

// Nesting allowed a log entry (cairnpb.InternalRequest wraps the client's
// request one level deeper). Use for every parse of a stored InternalRequest.
constexpr int kLogEntryRecursion = kMaxRequestRecursion + 4;

// Parses `bytes` into `out` (cleared first) with at most `recursion_limit`
// nested messages. Returns false if the bytes are not a complete, well-formed
// message of out's type or nest deeper.
inline bool ParseWithRecursionLimit(std::string_view bytes, int recursion_limit,
                                    google::protobuf::MessageLite* out) {
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(bytes.data()),
                                               static_cast<int>(bytes.size()));
  input.SetRecursionLimit(recursion_limit);
  return out->ParseFromCodedStream(&input) && input.ConsumedEntireMessage();
}

}  // namespace cairn
