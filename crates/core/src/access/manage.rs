//! Management use cases behind `/api/v1`: users, groups, projects and
//! their members, robot accounts, personal access tokens, the audit log
//! and signing key rotation. Each checks the caller with `decide()` first.
