//! placeholder replaced by the isolation tests
