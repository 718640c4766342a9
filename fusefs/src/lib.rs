//! fusefs
