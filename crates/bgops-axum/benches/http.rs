//! HTTP benchmark (placeholder, filled in next).
fn main() {}
