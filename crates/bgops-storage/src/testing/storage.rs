//! Cases for the storage part of the contract (being written).

/// Defines one `#[tokio::test]` per storage case, each on a fresh `$fixture`.
#[macro_export]
macro_rules! storage_suite {
    ($fixture:expr) => {
        $crate::__conformance_cases!($fixture, storage, []);
    };
}
