// The watch workload: W watchers on one prefix, spread over S Watch streams,
// while one writer puts to that prefix at a fixed rate (open loop) or, with
// put_rate 0, as fast as max_puts_in_flight outstanding puts allow.
//
// Measured: delivery latency of every event (from just before its Put was
// sent to its arrival at a watcher; the send time travels in the value), and
// checked: every watcher saw every acknowledged Put exactly once, nothing
// else, in increasing mod_revision order.
//
// Bounds: the writer keeps at most max_puts_in_flight puts outstanding; each
// watcher keeps one byte per put to count deliveries (watchers x puts bytes,
// refused above 1 GiB); each stream has one read and one write in flight.
#pragma once

#include "bench_options.h"
#include "connections.h"
#include "kv_clients.h"
#include "report.h"

namespace cairn::bench {

// `keys.prefix` is the watched prefix; puts cycle over keys.key_space keys.
// The writer runs for common.duration_seconds if > 0, else common.total puts.
Report RunWatch(const CommonOptions& common, const KeySpec& keys, const WatchOptions& options,
                ConnectionPool& pool);

}  // namespace cairn::bench
