//! `cargo xtask nats`, and the NATS server of `test` / `bench` / `ci`: a throwaway
//! `nats-server -js` from the one launcher, `bgops_storage::testing::server::nats`
//! (shared with the crates' tests).

use std::env;
use std::io;

pub use bgops_storage::testing::server::nats::{NatsServer, URL_VAR};

use crate::redis::{announce, wait_for_stdin_close};

/// `cargo xtask nats`: starts a throwaway `nats-server -js` (free port, temp store dir),
/// prints its URL and keeps it until stdin closes or Ctrl-C.
pub fn run_nats(_args: &[String]) -> io::Result<()> {
    let server = NatsServer::spawn()?;
    announce(URL_VAR, &server.url);
    wait_for_stdin_close();
    drop(server);
    Ok(())
}

/// Variables handed to child processes.
pub type EnvVars = Vec<(String, String)>;

/// `BGOPS_TEST_NATS_URL` for test and bench children: this process's value, or a
/// throwaway server started here (returned, so that it lives as long as the caller
/// holds it).
pub fn nats_env() -> Result<(EnvVars, Option<NatsServer>), String> {
    if let Ok(url) = env::var(URL_VAR) {
        if !url.is_empty() {
            return Ok((vec![(URL_VAR.to_owned(), url)], None));
        }
    }
    let server = NatsServer::spawn()
        .map_err(|e| format!("cannot start nats-server (apt-get install nats-server): {e}"))?;
    eprintln!(
        "xtask: throwaway nats-server -js at {} (store {})",
        server.url,
        server.store_dir.display()
    );
    Ok((vec![(URL_VAR.to_owned(), server.url.clone())], Some(server)))
}
