#include "common/status.h"

namespace cairn {

std::string Status::ToString() const {
  if (ok()) return "OK";
  return "code " + std::to_string(static_cast<int>(code_)) + ": " + message_;
}

namespace errors {
Status EmptyKey() { return {Code::kInvalidArgument, "etcdserver: key is not provided"}; }
Status KeyNotFound() { return {Code::kInvalidArgument, "etcdserver: key not found"}; }
Status ValueProvided() { return {Code::kInvalidArgument, "etcdserver: value is provided"}; }
Status LeaseProvided() { return {Code::kInvalidArgument, "etcdserver: lease is provided"}; }
Status TooManyOps() {
  return {Code::kInvalidArgument, "etcdserver: too many operations in txn request"};
}
Status DuplicateKey() {
  return {Code::kInvalidArgument, "etcdserver: duplicate key given in txn request"};
}
Status Compacted() {
  return {Code::kOutOfRange, "etcdserver: mvcc: required revision has been compacted"};
}
Status FutureRev() {
  return {Code::kOutOfRange, "etcdserver: mvcc: required revision is a future revision"};
}
Status NoSpace() { return {Code::kResourceExhausted, "etcdserver: mvcc: database space exceeded"}; }
Status LeaseNotFound() { return {Code::kNotFound, "etcdserver: requested lease not found"}; }
Status LeaseExist() { return {Code::kFailedPrecondition, "etcdserver: lease already exists"}; }
Status LeaseTTLTooLarge() { return {Code::kOutOfRange, "etcdserver: too large lease TTL"}; }
Status RequestTooLarge() { return {Code::kInvalidArgument, "etcdserver: request is too large"}; }
Status AuthNotEnabled() {
  return {Code::kFailedPrecondition, "etcdserver: authentication is not enabled"};
}
Status RootUserNotExist() { return {Code::kFailedPrecondition, "etcdserver: root user does not exist"}; }
Status RootRoleNotExist() { return {Code::kFailedPrecondition, "etcdserver: root user does not have root role"}; }
Status UserAlreadyExist() { return {Code::kFailedPrecondition, "etcdserver: user name already exists"}; }
Status UserEmpty() { return {Code::kInvalidArgument, "etcdserver: user name is empty"}; }
Status UserNotFound() { return {Code::kFailedPrecondition, "etcdserver: user name not found"}; }
Status RoleAlreadyExist() { return {Code::kFailedPrecondition, "etcdserver: role name already exists"}; }
Status RoleNotFound() { return {Code::kFailedPrecondition, "etcdserver: role name not found"}; }
Status RoleEmpty() { return {Code::kInvalidArgument, "etcdserver: role name is empty"}; }
Status AuthFailed() {
  return {Code::kInvalidArgument, "etcdserver: authentication failed, invalid user ID or password"};
}
Status PermissionNotGiven() { return {Code::kInvalidArgument, "etcdserver: permission not given"}; }
Status PermissionDenied() { return {Code::kPermissionDenied, "etcdserver: permission denied"}; }
Status RoleNotGranted() { return {Code::kFailedPrecondition, "etcdserver: role is not granted to the user"}; }
Status PermissionNotGranted() {
  return {Code::kFailedPrecondition, "etcdserver: permission is not granted to the role"};
}
Status InvalidAuthToken() { return {Code::kUnauthenticated, "etcdserver: invalid auth token"}; }
Status InvalidAuthMgmt() { return {Code::kInvalidArgument, "etcdserver: invalid auth management"}; }
Status AuthOldRevision() { return {Code::kInvalidArgument, "etcdserver: revision of auth store is old"}; }
Status NoPasswordUser() {
  return {Code::kUnknown, "auth: authentication failed, password was given for no password user"};
}
Status MemberNotFound() { return {Code::kNotFound, "etcdserver: member not found"}; }
Status MemberExist() { return {Code::kFailedPrecondition, "etcdserver: member ID already exist"}; }
Status PeerURLExist() { return {Code::kFailedPrecondition, "etcdserver: Peer URLs already exists"}; }
Status MemberBadURLs() { return {Code::kInvalidArgument, "etcdserver: given member URLs are invalid"}; }
Status NotEnoughStartedMembers() {
  return {Code::kUnknown, "etcdserver: re-configuration failed due to not enough started members"};
}
Status Unhealthy() { return {Code::kUnavailable, "etcdserver: unhealthy cluster"}; }
Status MemberNotLearner() { return {Code::kFailedPrecondition, "etcdserver: can only promote a learner member"}; }
Status LearnerNotReady() {
  return {Code::kFailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader"};
}
Status BadLeaderTransferee() { return {Code::kFailedPrecondition, "etcdserver: bad leader transferee"}; }
Status LeaderTransferTimeout() {
  return {Code::kUnknown, "etcdserver: request timed out, leader transfer took too long"};
}
Status TooManyLearners() { return {Code::kFailedPrecondition, "etcdserver: too many learner members in cluster"}; }
Status Stopped() { return {Code::kUnavailable, "etcdserver: server stopped"}; }
Status Timeout() { return {Code::kUnavailable, "etcdserver: request timed out"}; }
Status ContextDeadlineExceeded() { return {Code::kUnknown, "context deadline exceeded"}; }
Status LeaderChanged() { return {Code::kUnavailable, "etcdserver: leader changed"}; }
Status NoLeader() { return {Code::kUnavailable, "etcdserver: no leader"}; }
Status NotLeader() { return {Code::kFailedPrecondition, "etcdserver: not leader"}; }
Status TooManyRequests() { return {Code::kResourceExhausted, "etcdserver: too many requests"}; }
Status Corrupt() { return {Code::kDataLoss, "etcdserver: corrupt cluster"}; }
Status NotCapable() { return {Code::kUnavailable, "etcdserver: not capable"}; }
Status Internal(std::string message) { return {Code::kInternal, std::move(message)}; }
}  // namespace errors

}  // namespace cairn
