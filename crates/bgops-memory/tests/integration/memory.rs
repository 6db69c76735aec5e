//! Memory-specific tests.
