//! Counts round trips as the server sees them: `MONITOR` lists every command with its
//! origin, and commands a script calls are marked `[.. lua]`, so top-level commands (one
//! per round trip) are the other lines. (`INFO commandstats` cannot tell them apart: it
//! counts a script's inner calls too.)

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

/// A MONITOR connection to a server on loopback.
pub struct Monitor {
    port: u16,
    reader: BufReader<TcpStream>,
    marks: u64,
}

impl Monitor {
    pub fn start(port: u16) -> std::io::Result<Self> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"*1\r\n$7\r\nMONITOR\r\n")?;
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok)?;
        Ok(Self {
            port,
            reader,
            marks: 0,
        })
    }

    /// Names of the top-level commands seen since the last call, up to a marker sent now.
    pub fn take(&mut self) -> std::io::Result<Vec<String>> {
        self.marks += 1;
        let marker = format!("bgops-monitor-mark-{}", self.marks);
        let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        let cmd = format!("*2\r\n$4\r\nECHO\r\n${}\r\n{marker}\r\n", marker.len());
        conn.write_all(cmd.as_bytes())?;
        let mut commands = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Ok(commands);
            }
            if line.contains(&marker) {
                return Ok(commands);
            }
            let Some((origin, rest)) = line.split_once("] ") else {
                continue;
            };
            if origin.ends_with(" lua") || rest.contains("bgops-monitor-mark-") {
                continue;
            }
            let name = rest.split('"').nth(1).unwrap_or("").to_ascii_lowercase();
            commands.push(name);
        }
    }
}
