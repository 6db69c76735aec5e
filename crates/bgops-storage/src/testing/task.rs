//! Cases for the task part of the contract (being written).

/// Defines one `#[tokio::test]` per task case, each on a fresh `$fixture`.
#[macro_export]
macro_rules! task_suite {
    ($fixture:expr) => {
        $crate::__conformance_cases!($fixture, task, []);
    };
}
