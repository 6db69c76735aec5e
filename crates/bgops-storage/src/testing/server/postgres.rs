//! The throwaway `postgres` server launcher, and the URL policy of the PostgreSQL tests.
//!
//! [`PostgresServer::spawn`] runs `initdb` into a fresh temporary directory (trust
//! authentication, `fsync=off`, listening on `127.0.0.1:<free port>`, its unix socket in
//! that directory) and `pg_ctl start -w`. `synchronous_commit` stays on: with `fsync`
//! off a commit survives a server crash (`pg_ctl restart -m immediate`, as the fault
//! tests do) but not a machine crash, which no test needs. A small `sh` process holds the server: when its
//! stdin closes (the [`PostgresServer`] is dropped, or the process that started it exits,
//! even by SIGKILL) it stops the server (`pg_ctl stop -m immediate`) and deletes the
//! directory. So nothing is left behind by a test binary that dies.
//!
//! PostgreSQL refuses to run as root. When this process is root (CI containers are), the
//! directory is handed to the `postgres` user (which the Debian `postgresql` package
//! creates) and every server command runs as `runuser -u postgres --`.
//!
//! The binaries are found on `PATH` (`pg_ctl`, `initdb`), else under
//! `/usr/lib/postgresql/<version>/bin` (Debian's layout, newest version first).
//!
//! Std only: `cargo xtask` includes this file as a module (`#[path]`), so it must not use
//! anything from this crate.

use std::io::{self, BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The variable the tests read the server's URL from.
pub const URL_VAR: &str = "BGOPS_TEST_POSTGRES_URL";

/// What to tell someone whose tests cannot find a server.
pub const HOW: &str = "start one with `cargo xtask postgres` (needs the Debian `postgresql` \
                       package: initdb and pg_ctl) and set \
                       BGOPS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:<port>/postgres";

/// The script of the holder process: `$1` dir, `$2` port, `$3` bin dir, `$4` the prefix
/// that runs a command as the server's user (empty when not root), `$5` the server's
/// options.
const HOLD_SCRIPT: &str = r#"
dir="$1"; port="$2"; bin="$3"; as="$4"; opts="$5"
# Ctrl-C reaches this shell too; it must live on to stop the server (which pg_ctl puts
# in a session of its own) once our stdin closes.
trap '' INT HUP
fail() { echo "failed: $1" ; cat "$dir"/*.log >&2 2>/dev/null; rm -rf "$dir"; exit 1; }
$as "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync \
  >"$dir/initdb.log" 2>&1 || fail initdb
$as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "$opts" start >/dev/null 2>&1 || fail pg_ctl
echo ready
read _ || true
$as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
rm -rf "$dir"
"#;

/// The server's options: loopback only, on `port`, its socket in `dir`, no fsync.
fn options(port: u16, dir: &Path) -> String {
    format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c full_page_writes=off \
         -c max_connections=300",
        dir.display()
    )
}

/// A throwaway PostgreSQL server; stopped and deleted when dropped.
#[derive(Debug)]
pub struct PostgresServer {
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub url: String,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    run_as: Vec<String>,
    holder: Option<(Child, ChildStdin)>,
}

impl PostgresServer {
    /// Starts a server on a free loopback port (takes a second or two: `initdb`).
    ///
    /// # Errors
    /// When `initdb`/`pg_ctl` are missing or fail (their log is in the message).
    pub fn spawn() -> io::Result<Self> {
        let bin = bin_dir().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "initdb/pg_ctl not found on PATH nor under /usr/lib/postgresql/*/bin; \
                 install PostgreSQL (`apt-get install postgresql`) or set \
                 BGOPS_TEST_POSTGRES_URL to a running server",
            )
        })?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("bgops-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let run_as = if is_root() {
            // The server's user must own its directory (and reach it: /tmp is world-x).
            let status = Command::new("chown").arg("postgres:").arg(&dir).status()?;
            if !status.success() {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(io::Error::other(
                    "running as root, and cannot hand the data directory to the `postgres` \
                     user (PostgreSQL refuses to run as root; the Debian `postgresql` \
                     package creates that user)",
                ));
            }
            vec![
                "runuser".into(),
                "-u".into(),
                "postgres".into(),
                "--".into(),
            ]
        } else {
            Vec::new()
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(HOLD_SCRIPT)
            .arg("sh")
            .arg(&dir)
            .arg(port.to_string())
            .arg(&bin)
            .arg(run_as.join(" "))
            .arg(options(port, &dir))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        match stdin {
            Some(stdin) if line.trim() == "ready" => Ok(Self {
                url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                port,
                dir,
                bin,
                run_as,
                holder: Some((child, stdin)),
            }),
            _ => {
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "cannot start a throwaway PostgreSQL on port {port} ({}; logs above)",
                    line.trim()
                )))
            }
        }
    }

    /// The server's temporary directory (data in `data/`, log in `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `pg_ctl <args>` on this server's data directory (as the server's user).
    ///
    /// # Errors
    /// When `pg_ctl` cannot run or fails.
    pub fn pg_ctl(&self, args: &[&str]) -> io::Result<()> {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(pg_ctl);
                cmd
            }
            None => Command::new(pg_ctl),
        };
        let status = cmd
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(log)
            .args(args)
            .stdout(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "pg_ctl {args:?} failed: {status}"
            )))
        }
    }

    /// Kills the server without a clean shutdown and starts it again
    /// (`pg_ctl restart -m immediate -w`): what a crash and a supervisor's restart do.
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn restart_immediate(&self) -> io::Result<()> {
        self.pg_ctl(&["restart", "-m", "immediate", "-w", "-t", "60"])
    }

    /// Stops the server (`pg_ctl stop -m immediate`); [`start`](Self::start) brings it back.
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn stop_immediate(&self) -> io::Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"])
    }

    /// Starts a stopped server again, on the same port and data.
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn start(&self) -> io::Result<()> {
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-o",
            &options(self.port, &self.dir),
        ])
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.holder.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Where `initdb` and `pg_ctl` live: the directory of `pg_ctl` on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("pg_ctl").is_file() && dir.join("initdb").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                bin.join("pg_ctl").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The URL policy: `BGOPS_TEST_POSTGRES_URL` when set and not empty; else (outside CI) a
/// throwaway server, started once per process and stopped when the process exits.
///
/// # Panics
/// When the variable is unset in CI (`CI` set), or no server can be started: the message
/// says how to provide one.
pub fn url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    static HELD: Mutex<Option<PostgresServer>> = Mutex::new(None);
    URL.get_or_init(|| {
        if let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) {
            return url;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "{URL_VAR} is not set: the PostgreSQL tests need a server in CI; {HOW}"
        );
        eprintln!("note: {URL_VAR} is unset; starting a throwaway PostgreSQL ({HOW})");
        let server = PostgresServer::spawn()
            .unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}; {HOW}"));
        let url = server.url.clone();
        // Held for the life of the process: statics are never dropped, and the holder
        // process cleans up when our end of its stdin closes at exit.
        if let Ok(mut held) = HELD.lock() {
            *held = Some(server);
        }
        url
    })
    .clone()
}
