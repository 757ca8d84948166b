// ReadIndex bookkeeping on the leader (Raft thesis §6.4), batched, and the
// leader lease (§6.4.1).
//
// A read request records nothing in the log. The leader queues it; at the next
// flush (RawNode::GetReady) or periodic heartbeat, all queued requests join
// one "round": every heartbeat broadcast is a round with a fresh id, which the
// heartbeats carry and the answers echo. A round remembers the commit index
// and the leader's tick at sending. Once a quorum of voters has answered the
// round or a later one, the leader was still the leader after every request
// in the round arrived, so each may be served at the round's index.
//
// The same acknowledgments give the lease: a follower that answered round r
// received it after it was sent and ignores vote requests for an election
// timeout from then, so no other leader can exist until (the tick round r was
// sent) + election timeout, if clocks tick at the same rate.
//
// Internal to the Raft core. Thread-safety: none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "raft/message.h"

namespace cairn::raft {

// A served read: the host answers the request once it has applied `index`.
struct ReadState {
  uint64_t index = 0;
  std::string request_context;

  bool operator==(const ReadState&) const = default;
};

struct ReadRequest {
  NodeId from = kNoNode;  // the node whose host asked (the leader itself or a follower)
  std::string context;
};

class ReadOnly {
 public:
  size_t size() const { return size_; }
  bool HasUnsent() const { return !unsent_.empty(); }
  void Add(ReadRequest request);
  // Starts a round sent at `tick`, with every unsent request, at
  // `commit_index`; returns its id.
  uint64_t StartRound(uint64_t commit_index, uint64_t tick);
  // The id of the latest round started (0: none); heartbeats carry it.
  uint64_t latest_round() const { return next_round_ - 1; }
  // `voter` answered a heartbeat carrying round `round`.
  void Ack(NodeId voter, uint64_t round);
  // The highest round `voter` acknowledged.
  uint64_t AckedRound(NodeId voter) const;
  // Removes and returns the requests of all rounds with id <= `round`, each
  // with its round's index.
  std::vector<std::pair<ReadRequest, uint64_t>> Release(uint64_t round);
  // The tick at which `round` was sent, if still remembered (the last
  // kRememberedRounds rounds).
  std::optional<uint64_t> SentTick(uint64_t round) const;
  // Forgets all requests (leadership lost) and acknowledgments. Round ids keep
  // increasing, so answers to old heartbeats never match a new round.
  void Reset();

 private:
  struct Round {
    uint64_t id;
    uint64_t index;
    std::vector<ReadRequest> requests;
  };
  static constexpr size_t kRememberedRounds = 64;

  std::vector<ReadRequest> unsent_;
  std::deque<Round> rounds_;                              // rounds with requests
  std::deque<std::pair<uint64_t, uint64_t>> sent_ticks_;  // (round, tick), recent
  std::map<NodeId, uint64_t> acked_;
  uint64_t next_round_ = 1;
  size_t size_ = 0;
};

}  // namespace cairn::raft
