//! The throwaway `redis` server launcher and the Redis URL policy, shared by every crate's
//! tests and by `cargo xtask redis` / `redis-cluster` / `test` / `bench`.
//!
//! - [`url`] / [`cluster_url`]: `BGOPS_TEST_REDIS_URL` / `BGOPS_TEST_REDIS_CLUSTER_URL`
//!   when set (the xtask sets them), otherwise a throwaway server (or 3-node cluster)
//!   started once per test process and stopped when the process exits.
//! - [`RedisServer`] / [`RedisCluster`]: servers a test or the xtask owns (killed on drop);
//!   a server can be stopped and restarted on the same port for fault tests.
//! - [`delete_prefix`]: removes every key under a prefix (a test's own data).
//!
//! Servers are local `redis-server` processes (install the Debian package
//! `redis-server`). With `BGOPS_TEST_DOCKER=1` a single server runs in a Docker container
//! (`redis:7-alpine`, through the `docker` CLI) instead; the cluster is always local
//! processes. Std only: no async runtime and no driver, so `cargo xtask` builds fast.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The single-node URL variable.
pub const URL_VAR: &str = "BGOPS_TEST_REDIS_URL";
/// The cluster URL variable.
pub const CLUSTER_URL_VAR: &str = "BGOPS_TEST_REDIS_CLUSTER_URL";
/// Set to `1` to run throwaway single servers in Docker.
pub const DOCKER_VAR: &str = "BGOPS_TEST_DOCKER";
/// The image of the Docker path.
pub const DOCKER_IMAGE: &str = "redis:7-alpine";

/// How long a fresh server (or cluster) may take to answer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

const HOW: &str = "install redis-server (`apt-get install redis-server`), or start one \
                   with `cargo xtask redis` and set BGOPS_TEST_REDIS_URL";

fn docker_wanted() -> bool {
    std::env::var(DOCKER_VAR).is_ok_and(|v| v == "1")
}

/// The single-node URL of this test process: `BGOPS_TEST_REDIS_URL`, or a throwaway
/// server started on first use (Docker when `BGOPS_TEST_DOCKER=1`).
///
/// # Panics
/// When no server can be started (the message says how to provide one).
pub fn url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        from_env(URL_VAR).unwrap_or_else(|| {
            eprintln!("note: {URL_VAR} is unset; starting a throwaway Redis for these tests");
            let server = RedisServer::spawn().unwrap_or_else(|e| panic!("{e}; {HOW}"));
            let url = server.url().to_owned();
            keep_for_process(Held::Server(server));
            url
        })
    })
    .clone()
}

/// The cluster URL of this test process: `BGOPS_TEST_REDIS_CLUSTER_URL`, or a throwaway
/// 3-node cluster started on first use.
///
/// # Panics
/// When no cluster can be started.
pub fn cluster_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        from_env(CLUSTER_URL_VAR).unwrap_or_else(|| {
            eprintln!("note: {CLUSTER_URL_VAR} is unset; starting a throwaway Redis Cluster");
            let cluster = RedisCluster::spawn().unwrap_or_else(|e| panic!("{e}; {HOW}"));
            let url = cluster.url().to_owned();
            keep_for_process(Held::Cluster(cluster));
            url
        })
    })
    .clone()
}

fn from_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

enum Held {
    Server(RedisServer),
    Cluster(RedisCluster),
}

/// Keeps a shared server until the process exits. Statics are never dropped, so a
/// watchdog shell per server kills it once our end of its stdin closes, which the OS
/// does when this process exits however it exits.
fn keep_for_process(held: Held) {
    static HELD: OnceLock<Mutex<Vec<(Held, Child)>>> = OnceLock::new();
    let pids: Vec<String> = match &held {
        Held::Server(s) => s.node.kill_command(),
        Held::Cluster(c) => c.nodes.iter().flat_map(Node::kill_command).collect(),
    };
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(format!("read _ ; {}", pids.join(" ; ")))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match watchdog {
        Ok(child) => {
            if let Ok(mut held_all) = HELD.get_or_init(Mutex::default).lock() {
                held_all.push((held, child));
            }
        }
        Err(e) => eprintln!("note: no watchdog for the throwaway Redis ({e}); it may outlive us"),
    }
}

/// How a node runs.
#[derive(Debug)]
enum Runner {
    Local { child: Option<Child>, dir: PathBuf },
    Docker { container: String },
}

/// One `redis-server` (a process or a container) on a fixed loopback port.
#[derive(Debug)]
struct Node {
    port: u16,
    extra: Vec<String>,
    runner: Runner,
}

impl Node {
    fn local(port: u16, extra: &[&str]) -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("bgops-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut node = Self {
            port,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            runner: Runner::Local { child: None, dir },
        };
        node.start()?;
        Ok(node)
    }

    fn docker(port: u16, extra: &[&str]) -> io::Result<Self> {
        let name = format!("bgops-redis-{}-{port}", std::process::id());
        let output = Command::new("docker")
            .args(["run", "-d", "--rm", "--name", &name, "-p"])
            .arg(format!("127.0.0.1:{port}:6379"))
            .args([
                DOCKER_IMAGE,
                "redis-server",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run docker ({e})")))?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "docker run {DOCKER_IMAGE} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let node = Self {
            port,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            runner: Runner::Docker { container: name },
        };
        node.wait_for_answer(None)?;
        Ok(node)
    }

    fn start(&mut self) -> io::Result<()> {
        match &mut self.runner {
            Runner::Local { child, dir } => {
                // Output goes to a file, not to our stderr: an inherited handle would keep a
                // test runner waiting on a server that outlives its test on purpose.
                let log = std::fs::File::create(dir.join("redis.log"))?;
                let spawned = Command::new("redis-server")
                    .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                    .arg("--dir")
                    .arg(dir.as_os_str())
                    .args(&self.extra)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot start redis-server ({e})"))
                    })?;
                *child = Some(spawned);
            }
            Runner::Docker { container } => {
                let status = Command::new("docker")
                    .args(["start", container.as_str()])
                    .stdout(Stdio::null())
                    .status()?;
                if !status.success() {
                    return Err(io::Error::other("docker start failed"));
                }
            }
        }
        let port = self.port;
        match &mut self.runner {
            Runner::Local { child, dir } => wait_answer(port, child.as_mut()).map_err(|e| {
                let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                io::Error::new(e.kind(), format!("{e}; its log ends: {}", tail.join(" | ")))
            }),
            Runner::Docker { .. } => wait_answer(port, None),
        }
    }

    fn wait_for_answer(&self, child: Option<&mut Child>) -> io::Result<()> {
        wait_answer(self.port, child)
    }

    fn stop(&mut self) {
        match &mut self.runner {
            Runner::Local { child, .. } => {
                if let Some(mut c) = child.take() {
                    // Killing fails only if it already exited; either way it is gone.
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            Runner::Docker { container } => {
                // A container started with --rm would be removed by `stop`: kill the
                // server inside instead, so `start` can bring the same container back.
                let _ = Command::new("docker")
                    .args(["kill", "--signal", "KILL", container.as_str()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// Shell commands that stop this node (for the process watchdog).
    fn kill_command(&self) -> Vec<String> {
        match &self.runner {
            Runner::Local { child, dir } => child
                .as_ref()
                .map(|c| {
                    vec![format!(
                        "kill {} ; rm -rf '{}'",
                        c.id(),
                        dir.to_string_lossy().replace('\'', "")
                    )]
                })
                .unwrap_or_default(),
            Runner::Docker { container } => vec![format!("docker rm -f {container} >/dev/null")],
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        match &self.runner {
            Runner::Local { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Runner::Docker { container } => {
                let _ = Command::new("docker")
                    .args(["rm", "-f", container.as_str()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Waits until the server on `port` answers PING (PONG, or NOAUTH from a server with a
/// password: either way it is up).
fn wait_answer(port: u16, mut child: Option<&mut Child>) -> io::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(c) = child.as_deref_mut() {
            if let Some(status) = c.try_wait()? {
                return Err(io::Error::other(format!(
                    "redis-server on port {port} exited early: {status}"
                )));
            }
        }
        if command(port, &["PING"]).is_ok_and(|r| r.starts_with("+PONG") || r.contains("NOAUTH")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("redis-server on port {port} did not answer PING"),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A throwaway single Redis server on a free loopback port, killed on drop. It can be
/// stopped and restarted on the same port (fault tests).
#[derive(Debug)]
pub struct RedisServer {
    url: String,
    node: Node,
}

impl RedisServer {
    /// Starts a server without persistence and waits until it answers PING: a Docker
    /// container when `BGOPS_TEST_DOCKER=1`, otherwise a local `redis-server`.
    ///
    /// # Errors
    /// When the server cannot be started or does not answer within 20 s.
    pub fn spawn() -> io::Result<Self> {
        Self::spawn_with(&[])
    }

    /// As [`spawn`](Self::spawn), with extra `redis-server` arguments (e.g.
    /// `["--requirepass", "secret"]`).
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    pub fn spawn_with(extra: &[&str]) -> io::Result<Self> {
        let port = free_port(false)?;
        let node = if docker_wanted() {
            Node::docker(port, extra)?
        } else {
            Node::local(port, extra)?
        };
        Ok(Self {
            url: format!("redis://127.0.0.1:{port}"),
            node,
        })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// Kills the server (its data is lost: no persistence); [`restart`](Self::restart)
    /// brings an empty one back on the same port.
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Starts the server again on the same port and waits until it answers.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    pub fn restart(&mut self) -> io::Result<()> {
        self.node.stop();
        self.node.start()
    }

    /// Suspends the server process (SIGSTOP) without closing its connections: calls hang
    /// until [`resume`](Self::resume), as on a stalled server. Local servers only.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("-STOP")
    }

    /// Resumes a server suspended by [`pause`](Self::pause).
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn resume(&self) -> io::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> io::Result<()> {
        match &self.node.runner {
            Runner::Local { child: Some(c), .. } => {
                let status = Command::new("kill")
                    .args([signal, &c.id().to_string()])
                    .status()?;
                if status.success() {
                    Ok(())
                } else {
                    Err(io::Error::other(format!("kill {signal} failed")))
                }
            }
            Runner::Docker { container } => {
                let verb = if signal == "-STOP" {
                    "pause"
                } else {
                    "unpause"
                };
                let status = Command::new("docker").args([verb, container]).status()?;
                if status.success() {
                    Ok(())
                } else {
                    Err(io::Error::other(format!("docker {verb} failed")))
                }
            }
            Runner::Local { child: None, .. } => Err(io::Error::other("server is stopped")),
        }
    }
}

/// A throwaway three-node Redis Cluster (no replicas) on loopback, killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    url: String,
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts three cluster-enabled local nodes, joins them with `redis-cli --cluster
    /// create` and waits until every node reports `cluster_state:ok`.
    ///
    /// # Errors
    /// When a node cannot be started or the cluster does not form within 20 s.
    pub fn spawn() -> io::Result<Self> {
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            // The cluster bus listens on port + 10000, so both must be free.
            let port = free_port(true)?;
            nodes.push(Node::local(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ],
            )?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        wait_cluster_ok(&ports)?;
        let url = format!(
            "redis-cluster://{}?{}",
            addresses[0],
            addresses[1..]
                .iter()
                .map(|a| format!("node={a}"))
                .collect::<Vec<_>>()
                .join("&")
        );
        Ok(Self { url, nodes })
    }

    /// `redis-cluster://127.0.0.1:p1?node=127.0.0.1:p2&node=127.0.0.1:p3` (fred's form).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}

fn wait_cluster_ok(ports: &[u16]) -> io::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let all_ok = ports.iter().all(|&port| {
            command(port, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains("cluster_state:ok"))
        });
        if all_ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the Redis cluster did not reach cluster_state:ok",
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port nobody listens on (and, for cluster nodes, whose bus port + 10000 is
/// free too). Another process may take it before the server binds; startup then fails
/// loudly rather than silently.
///
/// # Errors
/// When no such port is found.
pub fn free_port(with_bus: bool) -> io::Result<u16> {
    for _ in 0..200 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if !with_bus {
            return Ok(port);
        }
        if port < 55_000 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free loopback port pair found"))
}

/// Sends one command to a loopback server and returns the raw RESP reply text (enough
/// for PING, INFO, CLUSTER INFO, DBSIZE, KEYS on a test server).
///
/// # Errors
/// When the server cannot be reached or does not answer within 2 s.
pub fn command(port: u16, args: &[&str]) -> io::Result<String> {
    let mut conn = Conn::connect(&format!("127.0.0.1:{port}"), None)?;
    conn.send(args)?;
    let mut reply = Vec::new();
    conn.read_raw(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Deletes every key that starts with `prefix` on the server(s) of `url` (a
/// `redis://[user:pass@]host:port` or `redis-cluster://host:port?node=host:port...` URL),
/// with `SCAN MATCH` and `UNLINK` in batches. Returns how many were deleted.
///
/// # Errors
/// When a server cannot be reached or answers an error.
pub fn delete_prefix(url: &str, prefix: &str) -> io::Result<u64> {
    let (nodes, auth) = parse_url(url)?;
    let pattern = format!("{}*", glob_escape(prefix));
    let mut deleted = 0;
    for node in nodes {
        let mut conn = Conn::connect(&node, auth.as_ref())?;
        let mut cursor = "0".to_owned();
        loop {
            conn.send(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?;
            let Resp::Array(parts) = conn.read()? else {
                return Err(io::Error::other("unexpected SCAN reply"));
            };
            let mut parts = parts.into_iter();
            let (Some(Resp::Bulk(next)), Some(Resp::Array(keys))) = (parts.next(), parts.next())
            else {
                return Err(io::Error::other("unexpected SCAN reply"));
            };
            for key in keys {
                if let Resp::Bulk(k) = key {
                    // One key per command: on a cluster, keys of one batch may sit in
                    // different slots.
                    conn.send_bytes(&[b"UNLINK", &k])?;
                    if let Resp::Int(n) = conn.read()? {
                        deleted += u64::try_from(n).unwrap_or(0);
                    }
                }
            }
            cursor = String::from_utf8_lossy(&next).into_owned();
            if cursor == "0" {
                break;
            }
        }
    }
    Ok(deleted)
}

/// Escapes glob characters of a `SCAN MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `(user, password)`; an empty user is the default one.
type Credentials = (String, String);

/// The `host:port` of each node and the credentials of a Redis URL.
fn parse_url(url: &str) -> io::Result<(Vec<String>, Option<Credentials>)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad Redis URL {url:?}"),
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.split('/').next().unwrap_or(authority);
    let (auth, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or(("", userinfo));
            (Some((user.to_owned(), pass.to_owned())), host)
        }
        None => (None, authority),
    };
    let mut nodes = vec![host.to_owned()];
    if scheme.contains("cluster") {
        for pair in query.unwrap_or("").split('&') {
            if let Some(node) = pair.strip_prefix("node=") {
                nodes.push(node.to_owned());
            }
        }
    }
    Ok((nodes, auth))
}

/// A RESP reply.
enum Resp {
    Simple,
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Resp>),
}

/// A blocking RESP2 connection (test plumbing only).
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn connect(address: &str, auth: Option<&Credentials>) -> io::Result<Self> {
        let stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut conn = Self {
            reader: BufReader::new(stream),
        };
        if let Some((user, pass)) = auth {
            if user.is_empty() {
                conn.send(&["AUTH", pass])?;
            } else {
                conn.send(&["AUTH", user, pass])?;
            }
            conn.read()?;
        }
        Ok(conn)
    }

    fn send(&mut self, args: &[&str]) -> io::Result<()> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send_bytes(&args)
    }

    fn send_bytes(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let mut head = String::new();
            let _ = write!(head, "${}\r\n", arg.len());
            request.extend_from_slice(head.as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request)
    }

    /// Reads one reply, keeping its raw bytes.
    fn read_raw(&mut self, raw: &mut Vec<u8>) -> io::Result<Resp> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        raw.extend_from_slice(&line);
        if line.len() < 3 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short reply"));
        }
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        let number = || {
            text.parse::<i64>()
                .map_err(|_| io::Error::other(format!("bad RESP length {text:?}")))
        };
        match line[0] {
            b'+' => Ok(Resp::Simple),
            b'-' => Ok(Resp::Error(text)),
            b':' => Ok(Resp::Int(number()?)),
            b'$' => {
                let Ok(len) = usize::try_from(number()?) else {
                    return Ok(Resp::Nil);
                };
                let mut body = vec![0; len + 2];
                self.reader.read_exact(&mut body)?;
                raw.extend_from_slice(&body);
                body.truncate(len);
                Ok(Resp::Bulk(body))
            }
            b'*' => {
                let Ok(len) = usize::try_from(number()?) else {
                    return Ok(Resp::Nil);
                };
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.read_raw(raw)?);
                }
                Ok(Resp::Array(items))
            }
            other => Err(io::Error::other(format!(
                "unknown RESP type {:?}",
                char::from(other)
            ))),
        }
    }

    /// Reads one reply; an error reply is an `Err`.
    fn read(&mut self) -> io::Result<Resp> {
        let mut raw = Vec::new();
        match self.read_raw(&mut raw)? {
            Resp::Error(text) => Err(io::Error::other(format!("redis error: {text}"))),
            reply => Ok(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_nodes_and_password() {
        let (nodes, auth) = parse_url("redis://:pw@127.0.0.1:6379/0").unwrap();
        assert_eq!(nodes, ["127.0.0.1:6379"]);
        assert_eq!(auth, Some((String::new(), "pw".to_owned())));
        let (nodes, auth) =
            parse_url("redis-cluster://127.0.0.1:1?node=127.0.0.1:2&node=127.0.0.1:3").unwrap();
        assert_eq!(nodes, ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        assert!(auth.is_none());
        assert_eq!(glob_escape("a*b[c]"), "a\\*b\\[c\\]");
    }
}
