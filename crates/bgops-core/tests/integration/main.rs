//! Integration tests of bgops-core.

mod key_vectors;
