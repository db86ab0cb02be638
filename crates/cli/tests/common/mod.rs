//! What the binary's test files share: the built binary and a `causeway serve` child process.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// A `causeway serve` child on a free port; `url` is read from its first line, so it is up.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_with(Command::new(BIN), data, extra)
    }

    /// `start`, from a command prepared by the caller (environment, resource limits).
    pub fn start_with(mut command: Command, data: &Path, extra: &[&str]) -> Server {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the server prints its address").unwrap();
        let url = first.strip_prefix("causeway listening on ").unwrap_or_else(|| panic!("unexpected: {first}")).to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }

    /// `host:port`, for raw TCP.
    pub fn addr(&self) -> &str {
        self.url.strip_prefix("http://").expect("the server listens on http://")
    }

    /// SIGKILL, and wait for it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
