//! Throwaway servers for tests and `cargo xtask`, and the one URL policy: a test reads
//! `BGOPS_TEST_{REDIS,POSTGRES,NATS}_URL`; when unset, the xtask (or the test itself)
//! starts a throwaway server on a free port and stops it after.

pub mod nats;
pub mod postgres;
pub mod redis;
