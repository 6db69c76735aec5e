//! Crash test, in-process variant (placeholder until written).
