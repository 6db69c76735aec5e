//! Integration tests of bgops-saga (one binary, modules by topic).

mod crash;
mod dynamic;
mod events;
mod fake_store;
mod recovery;
mod support;
mod typed;
