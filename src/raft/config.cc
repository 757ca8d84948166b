#include "raft/config.h"

#include "raft/errors.h"

namespace cairn::raft {

Status Config::Validate() const {
  if (id == kNoNode) return errors::InvalidConfig("id must not be 0");
  if (heartbeat_interval_ticks <= 0) {
    return errors::InvalidConfig("heartbeat_interval_ticks must be greater than 0");
  }
  if (election_timeout_ticks <= heartbeat_interval_ticks) {
    return errors::InvalidConfig("election_timeout_ticks must be greater than heartbeat_interval_ticks");
  }
  if (max_inflight_msgs == 0) return errors::InvalidConfig("max_inflight_msgs must be greater than 0");
  if (max_size_per_msg_bytes == 0) {
    return errors::InvalidConfig("max_size_per_msg_bytes must be greater than 0");
  }
  if (max_committed_bytes_per_ready == 0) {
    return errors::InvalidConfig("max_committed_bytes_per_ready must be greater than 0");
  }
  if (max_pending_read_requests == 0) {
    return errors::InvalidConfig("max_pending_read_requests must be greater than 0");
  }
  if (read_only_option == ReadOnlyOption::kLeaseBased && !check_quorum) {
    return errors::InvalidConfig("lease-based reads require check_quorum");
  }
  return Status::Ok();
}

}  // namespace cairn::raft
