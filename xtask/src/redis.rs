//! Throwaway Redis servers for tests and benchmarks: one node (`cargo xtask redis`) or a
//! three-node cluster (`cargo xtask redis-cluster`), each on free loopback ports with its
//! own temporary directory, killed when dropped. Std only, so xtask builds fast.

use std::fmt::Write as _;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a fresh server (or cluster) may take to answer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// One `redis-server` process and its directory; killed and removed on drop.
struct Node {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Node {
    fn start(port: u16, extra: &[&str]) -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("bgops-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let port_text = port.to_string();
        let mut args = vec![
            "--port",
            port_text.as_str(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ];
        args.extend_from_slice(extra);
        let dir_text = dir.to_string_lossy().into_owned();
        args.extend_from_slice(&["--dir", dir_text.as_str()]);
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start redis-server ({e}); install it (`apt-get install \
                         redis-server`) or set BGOPS_TEST_REDIS_URL to a running server"
                    ),
                )
            })?;
        let mut node = Self { port, child, dir };
        node.wait_for_pong()?;
        Ok(node)
    }

    fn wait_for_pong(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "redis-server on port {} exited early: {status}",
                    self.port
                )));
            }
            if command(self.port, &["PING"]).is_ok_and(|reply| reply.starts_with("+PONG")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server on port {} did not answer PING", self.port),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Killing may fail only if it already exited; either way it is gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway single `redis-server` on a free loopback port; killed on drop.
pub struct RedisServer {
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    _node: Node,
}

impl RedisServer {
    /// Starts the server without persistence and waits until it answers PING.
    pub fn spawn() -> io::Result<Self> {
        let port = free_port(false)?;
        let node = Node::start(port, &[])?;
        Ok(Self {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            _node: node,
        })
    }
}

/// A throwaway three-node Redis Cluster (no replicas) on loopback; killed on drop.
pub struct RedisCluster {
    /// `redis-cluster://127.0.0.1:p1?node=127.0.0.1:p2&node=127.0.0.1:p3` (fred's format).
    pub url: String,
    /// The nodes' ports.
    pub ports: Vec<u16>,
    _nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts three cluster-enabled nodes, joins them with `redis-cli --cluster create`
    /// and waits until every node reports `cluster_state:ok`.
    pub fn spawn() -> io::Result<Self> {
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            // The cluster bus listens on port + 10000, so both must be free.
            let port = free_port(true)?;
            nodes.push(Node::start(
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
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
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
        Ok(Self {
            url,
            ports,
            _nodes: nodes,
        })
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
fn free_port(with_bus: bool) -> io::Result<u16> {
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

/// Sends one command in RESP and returns the raw reply text (enough for PING and
/// CLUSTER INFO).
fn command(port: u16, args: &[&str]) -> io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        let _ = write!(request, "${}\r\n{arg}\r\n", arg.len());
    }
    stream.write_all(request.as_bytes())?;
    let mut buf = [0_u8; 4096];
    let mut reply = Vec::new();
    loop {
        let n = stream.read(&mut buf)?;
        reply.extend_from_slice(&buf[..n]);
        if n == 0 || reply_complete(&reply) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

fn reply_complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    if let Some(rest) = text.strip_prefix('$') {
        let Some((len, body)) = rest.split_once("\r\n") else {
            return false;
        };
        return len
            .parse::<usize>()
            .map_or(true, |len| body.len() >= len + 2);
    }
    text.ends_with("\r\n")
}

/// `cargo xtask redis`: starts a throwaway server, prints its URL and keeps it until
/// stdin closes or Ctrl-C.
pub fn run_redis(_args: &[String]) -> io::Result<()> {
    let server = RedisServer::spawn()?;
    announce("BGOPS_TEST_REDIS_URL", &server.url);
    wait_for_stdin_close();
    drop(server);
    Ok(())
}

/// `cargo xtask redis-cluster`: starts a throwaway three-node cluster, prints its URL
/// and keeps it until stdin closes or Ctrl-C.
pub fn run_redis_cluster(_args: &[String]) -> io::Result<()> {
    let cluster = RedisCluster::spawn()?;
    announce("BGOPS_TEST_REDIS_CLUSTER_URL", &cluster.url);
    wait_for_stdin_close();
    drop(cluster);
    Ok(())
}

fn announce(var: &str, url: &str) {
    println!("{url}");
    eprintln!("export {var}='{url}'");
    eprintln!("(press Ctrl-C or close stdin to stop it)");
}

fn wait_for_stdin_close() {
    // Ctrl-C reaches the server too (same process group), so it stops either way; a
    // closed stdin lets scripts stop it by closing the pipe.
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
    }
}
