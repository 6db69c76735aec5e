//! `cargo xtask redis` / `redis-cluster`: throwaway servers from the one launcher,
//! `bgops_storage::testing::server::redis` (shared with every crate's tests).

use std::io::{self, BufRead};

pub use bgops_storage::testing::server::redis::{RedisCluster, RedisServer};

/// `cargo xtask redis`: starts a throwaway server, prints its URL and keeps it until
/// stdin closes or Ctrl-C.
pub fn run_redis(_args: &[String]) -> io::Result<()> {
    let server = RedisServer::spawn()?;
    announce("BGOPS_TEST_REDIS_URL", server.url());
    wait_for_stdin_close();
    drop(server);
    Ok(())
}

/// `cargo xtask redis-cluster`: starts a throwaway three-node cluster, prints its URL
/// and keeps it until stdin closes or Ctrl-C.
pub fn run_redis_cluster(_args: &[String]) -> io::Result<()> {
    let cluster = RedisCluster::spawn()?;
    announce("BGOPS_TEST_REDIS_CLUSTER_URL", cluster.url());
    wait_for_stdin_close();
    drop(cluster);
    Ok(())
}

pub(crate) fn announce(var: &str, url: &str) {
    println!("{url}");
    eprintln!("export {var}='{url}'");
    eprintln!("(press Ctrl-C or close stdin to stop it)");
}

pub(crate) fn wait_for_stdin_close() {
    // Ctrl-C reaches the server too (same process group), so it stops either way; a
    // closed stdin lets scripts stop it by closing the pipe.
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
    }
}
