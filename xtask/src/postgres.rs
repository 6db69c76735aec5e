//! Throwaway PostgreSQL for tests and benchmarks (`cargo xtask postgres`), from the one
//! launcher, `bgops_storage::testing::server::postgres` (shared with the tests).

use std::io::{self, BufRead};

pub use bgops_storage::testing::server::postgres::{PostgresServer, URL_VAR};

/// `cargo xtask postgres`: starts a throwaway server, prints its URL and keeps it until
/// stdin closes or Ctrl-C.
pub fn run_postgres(_args: &[String]) -> io::Result<()> {
    let server = PostgresServer::spawn()?;
    println!("{}", server.url);
    eprintln!("export {URL_VAR}='{}'", server.url);
    eprintln!("(press Ctrl-C or close stdin to stop it)");
    for line in io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(server);
    Ok(())
}

/// Adds `BGOPS_TEST_POSTGRES_URL` to the children's environment: this process's value
/// when set, else a throwaway server started here (returned: it stops when dropped).
pub fn env(vars: &mut Vec<(String, String)>) -> Result<Option<PostgresServer>, String> {
    if let Ok(url) = std::env::var(URL_VAR) {
        vars.push((URL_VAR.to_owned(), url));
        return Ok(None);
    }
    let server = PostgresServer::spawn().map_err(|e| {
        format!("cannot start PostgreSQL (apt-get install postgresql, or set {URL_VAR}): {e}")
    })?;
    eprintln!("xtask: throwaway PostgreSQL at {}", server.url);
    vars.push((URL_VAR.to_owned(), server.url.clone()));
    Ok(Some(server))
}
