//! # bgops-redis
//!
//! Redis storage backend of bgops on fred: Lua scripts for every atomic step.
