//! Worker ids, fresh for every process start.

/// A worker id unique to this process start: `{name}:{host}:{pid}:{random}`.
///
/// A restarted process must never reuse its predecessor's id, or it could be taken for
/// the holder of claims that died with the old process. Leases are per task and fenced by
/// attempt number, so the id is for people and logs, but it should still never repeat.
///
/// ```
/// let a = bgops_queue::fresh_worker_id("worker-1");
/// let b = bgops_queue::fresh_worker_id("worker-1");
/// assert!(a.starts_with("worker-1:"));
/// assert_ne!(a, b);
/// ```
pub fn fresh_worker_id(name: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{name}:{host}:{}:{}", std::process::id(), &random[..12])
}
