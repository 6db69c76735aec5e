//! Where the tests find a Redis server, and throwaway servers they can stop and start.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bgops_redis::RedisStorage;
use bgops_storage::testing::{Fixture, TimeControl};

/// Redis decides expiry by its own clock, so time passes by sleeping.
pub struct Sleep;

#[async_trait]
impl TimeControl for Sleep {
    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// Long enough for a few calls on a busy 2-core machine, short enough to sleep out.
pub const SHORT_LEASE: Duration = Duration::from_millis(400);

const HOW: &str = "start one with `cargo xtask redis` (or `redis-server`) and set \
                   BGOPS_TEST_REDIS_URL=redis://127.0.0.1:<port>";

/// The single-node URL: `BGOPS_TEST_REDIS_URL`, or outside CI a throwaway server.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| url_from_env("BGOPS_TEST_REDIS_URL", false))
        .clone()
}

/// The cluster URL: `BGOPS_TEST_REDIS_CLUSTER_URL`, or outside CI a throwaway cluster.
pub fn cluster_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| url_from_env("BGOPS_TEST_REDIS_CLUSTER_URL", true))
        .clone()
}

fn url_from_env(var: &str, cluster: bool) -> String {
    if let Ok(url) = std::env::var(var) {
        if !url.is_empty() {
            return url;
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{var} is not set: the Redis tests need a server in CI; {HOW}{}",
        if cluster {
            " (cluster: `cargo xtask redis-cluster`)"
        } else {
            ""
        }
    );
    eprintln!("note: {var} is unset; starting a throwaway redis-server for these tests ({HOW})");
    if cluster {
        spawn_cluster()
    } else {
        spawn_single()
    }
}

/// A fresh store with a prefix of its own, so tests never touch each other's keys.
pub async fn storage_at(url: &str) -> RedisStorage {
    RedisStorage::builder(url)
        .prefix(format!("bgops-test-{}", uuid::Uuid::new_v4().simple()))
        .pool_size(2)
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}; {HOW}"))
}

pub async fn fixture() -> Fixture {
    let storage = storage_at(&redis_url()).await;
    Fixture {
        storage: Arc::new(storage),
        time: Arc::new(Sleep),
        short_lease: SHORT_LEASE,
    }
}

pub async fn cluster_fixture() -> Fixture {
    let storage = storage_at(&cluster_url()).await;
    Fixture {
        storage: Arc::new(storage),
        time: Arc::new(Sleep),
        short_lease: SHORT_LEASE,
    }
}

/// A loopback port nobody listens on (with its cluster bus port + 10000 free too).
pub fn free_port(with_bus: bool) -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if !with_bus
            || (port < 55_000 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok())
        {
            return port;
        }
    }
}

/// Sends one RESP command, returns the raw reply.
pub fn raw_command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        let _ = write!(req, "${}\r\n{a}\r\n", a.len());
    }
    stream.write_all(req.as_bytes())?;
    let mut buf = vec![0; 8192];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `redis-server` on `port` that this test owns: killed on drop (and on stop).
pub struct Server {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
    extra: Vec<String>,
}

impl Server {
    pub fn start(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// With extra `redis-server` arguments (e.g. `--requirepass`).
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("bgops-redis-test-{port}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let extra = extra.iter().map(|s| (*s).to_owned()).collect();
        let mut server = Self {
            port,
            child: None,
            dir,
            extra,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir", &self.dir.to_string_lossy()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server ({e}); {HOW}"));
        self.child = Some(child);
        let port = self.port;
        // PONG, or NOAUTH from a server with a password: either way it answers.
        wait_until("redis-server", || {
            raw_command(port, &["PING"]).is_ok_and(|r| r.contains("PONG") || r.contains("NOAUTH"))
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Keeps a throwaway server alive for the whole test binary: a shell holds it and kills
/// it when our end of its stdin closes, which happens when this process exits.
fn hold(script: &str, ports: &[u16]) {
    static HELD: OnceLock<std::sync::Mutex<Vec<Child>>> = OnceLock::new();
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(ports.iter().map(u16::to_string))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start a throwaway redis-server ({e}); {HOW}"));
    HELD.get_or_init(Default::default)
        .lock()
        .expect("lock")
        .push(child);
}

const HOLD_SCRIPT: &str = r#"
dir=$(mktemp -d); pids=""
for p in "$@"; do
  mkdir -p "$dir/$p"
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/$p" \
    $CLUSTER_ARGS >/dev/null 2>&1 &
  pids="$pids $!"
done
read _ || true
kill $pids; wait; rm -rf "$dir"
"#;

fn spawn_single() -> String {
    let port = free_port(false);
    hold(&HOLD_SCRIPT.replace("$CLUSTER_ARGS", ""), &[port]);
    wait_until("redis-server", || {
        raw_command(port, &["PING"]).is_ok_and(|r| r.contains("PONG"))
    });
    format!("redis://127.0.0.1:{port}")
}

fn spawn_cluster() -> String {
    let ports: Vec<u16> = (0..3).map(|_| free_port(true)).collect();
    let args = "--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000";
    hold(&HOLD_SCRIPT.replace("$CLUSTER_ARGS", args), &ports);
    for &p in &ports {
        wait_until("cluster node", || {
            raw_command(p, &["PING"]).is_ok_and(|r| r.contains("PONG"))
        });
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for &p in &ports {
        wait_until("cluster_state:ok", || {
            raw_command(p, &["CLUSTER", "INFO"]).is_ok_and(|r| r.contains("cluster_state:ok"))
        });
    }
    format!(
        "redis-cluster://{}?node={}&node={}",
        nodes[0], nodes[1], nodes[2]
    )
}
