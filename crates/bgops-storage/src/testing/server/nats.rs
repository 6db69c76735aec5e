//! The throwaway `nats-server -js` launcher and the NATS URL policy.
//!
//! - [`NatsServer::spawn`] starts `nats-server -js -a 127.0.0.1 -p <free port> -sd <temp
//!   dir>`, waits until it answers, and on drop kills it and deletes its store directory.
//!   [`NatsServer::stop`] and [`NatsServer::start`] stop and start the same server (same
//!   port, same store) for fault tests.
//! - [`test_url`] is the policy every test and bench follows: `BGOPS_TEST_NATS_URL` when
//!   set, otherwise a throwaway server held for the life of the calling process (in CI,
//!   `cargo xtask` starts one and sets the variable).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The variable naming the NATS server tests use.
pub const URL_VAR: &str = "BGOPS_TEST_NATS_URL";

/// How to get a server when the tests cannot find one.
const HOW: &str = "install nats-server (`apt-get install nats-server`), or start one with \
                   `cargo xtask nats` and set BGOPS_TEST_NATS_URL=nats://127.0.0.1:<port>";

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether a NATS server answers on `port` (it greets every client with `INFO {...}`).
pub fn answers(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

/// Waits up to 20 s for a server on `port`.
fn wait_for(port: u16) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers(port) {
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("nats-server on port {port} did not answer within 20 s"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A throwaway `nats-server -js` owned by the caller: killed, and its store directory
/// deleted, on drop.
#[derive(Debug)]
pub struct NatsServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// Its JetStream store directory.
    pub store_dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port with a fresh store directory.
    ///
    /// # Errors
    /// When `nats-server` cannot be run or does not answer within 20 s.
    pub fn spawn() -> std::io::Result<Self> {
        let port = free_port()?;
        let store_dir = std::env::temp_dir().join(format!(
            "bgops-nats-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&store_dir)?;
        let mut server = Self {
            port,
            url: format!("nats://127.0.0.1:{port}"),
            store_dir,
            child: None,
        };
        server.start()?;
        Ok(server)
    }

    /// Starts the server again (same port, same store) after [`NatsServer::stop`]; does
    /// nothing while it runs.
    ///
    /// # Errors
    /// When `nats-server` cannot be run or does not answer within 20 s.
    pub fn start(&mut self) -> std::io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot run nats-server: {e}; {HOW}"))
            })?;
        self.child = Some(child);
        wait_for(self.port)
    }

    /// Kills the server (SIGKILL) and waits for it; the store directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}

/// The NATS URL for tests and benches: `BGOPS_TEST_NATS_URL`, or else a throwaway server
/// started once and held until this process exits (a shell holds it and kills it when
/// our end of its stdin closes).
///
/// # Panics
/// When the variable is unset and no server can be started, or under `CI` when the
/// variable is unset (CI must get its server from `cargo xtask`).
pub fn test_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var(URL_VAR) {
            if !url.is_empty() {
                return url;
            }
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "{URL_VAR} is not set: the NATS tests need a server in CI; {HOW}"
        );
        eprintln!("note: {URL_VAR} is unset; starting a throwaway nats-server ({HOW})");
        spawn_held().unwrap_or_else(|e| panic!("cannot start nats-server: {e}; {HOW}"))
    })
    .clone()
}

const HOLD_SCRIPT: &str = r#"
dir=$(mktemp -d)
nats-server -js -a 127.0.0.1 -p "$1" -sd "$dir" >/dev/null 2>&1 &
pid=$!
read _ || true
kill $pid; wait; rm -rf "$dir"
"#;

fn spawn_held() -> std::io::Result<String> {
    static HELD: OnceLock<Mutex<Vec<Child>>> = OnceLock::new();
    let port = free_port()?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(HOLD_SCRIPT)
        .arg("sh")
        .arg(port.to_string())
        .stdin(Stdio::piped())
        // No handle of ours in the shell: a test runner waiting for output must not
        // wait for the server.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    if let Ok(mut held) = HELD.get_or_init(Default::default).lock() {
        held.push(child);
    }
    wait_for(port)?;
    Ok(format!("nats://127.0.0.1:{port}"))
}
