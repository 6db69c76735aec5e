//! What one operation costs the Redis server: CPU time in scripts (`INFO commandstats`,
//! `usec` of `evalsha`) and bytes on the wire each way (`INFO stats`,
//! `total_net_input_bytes` / `total_net_output_bytes`), per operation, on a server the
//! benchmark owns (so nothing else moves the counters). Std only, so the same file can
//! measure an older build of the crate side by side.

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};

/// Per-operation costs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Server CPU µs in `EVALSHA` (the script and the commands it calls).
    pub usec: f64,
    /// Bytes the client sent.
    pub sent: f64,
    /// Bytes the server answered.
    pub received: f64,
}

impl std::ops::Add for Cost {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            usec: self.usec + other.usec,
            sent: self.sent + other.sent,
            received: self.received + other.received,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    net_in: f64,
    net_out: f64,
    usec: f64,
}

fn info(port: u16, section: &str) -> String {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let mut reader = BufReader::new(stream);
    let request = format!("*2\r\n$4\r\nINFO\r\n${}\r\n{section}\r\n", section.len());
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .expect("write");
    let mut head = String::new();
    reader.read_line(&mut head).expect("read");
    let len: usize = head.trim()[1..].parse().expect("bulk length");
    let mut body = vec![0; len + 2];
    reader.read_exact(&mut body).expect("read");
    String::from_utf8_lossy(&body).into_owned()
}

fn field(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn counters(port: u16) -> Counters {
    let stats = info(port, "stats");
    let commands = info(port, "commandstats");
    let usec = commands
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("usec=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Counters {
        net_in: field(&stats, "total_net_input_bytes"),
        net_out: field(&stats, "total_net_output_bytes"),
        usec,
    }
}

/// Runs `op(0..n)` one after the other and returns the server's cost per call, less what
/// reading the counters itself costs.
pub async fn per_op<F, Fut>(port: u16, n: usize, mut op: F) -> Cost
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let a = counters(port);
    let b = counters(port);
    let overhead = (b.net_in - a.net_in, b.net_out - a.net_out);
    let before = counters(port);
    for i in 0..n {
        op(i).await;
    }
    let after = counters(port);
    let n = n as f64;
    Cost {
        usec: (after.usec - before.usec) / n,
        sent: (after.net_in - before.net_in - overhead.0) / n,
        received: (after.net_out - before.net_out - overhead.1) / n,
    }
}

/// One row of the table.
pub fn row(what: &str, cost: Cost) {
    println!(
        "{what:>44} {:>9.1} {:>9.0} {:>9.0}",
        cost.usec, cost.sent, cost.received
    );
}

/// The table's head.
pub fn head() {
    println!(
        "{:>44} {:>9} {:>9} {:>9}",
        "per operation", "Redis µs", "bytes out", "bytes in"
    );
}

/// A ~100-byte HTTP response, as the middleware stores it.
pub const RESPONSE: &[u8] = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 29\r\n\r\n{\"id\":42,\"status\":\"created\"}";
