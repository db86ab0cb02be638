//! A minimal blocking HTTP/1.1 keep-alive client over one `TcpStream`.
//!
//! Written out instead of using reqwest's blocking client because that client hands every request
//! to a background runtime thread and back, which adds tens of microseconds to each sample — more
//! than the PostgreSQL client (which runs its connection on the calling thread) pays. Measuring the
//! server needs a client as lean as the other side's.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

pub struct HttpClient {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    head: Vec<u8>,
}

/// A response: status and body (the body is left in the caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl HttpClient {
    pub fn new(addr: SocketAddr) -> HttpClient {
        HttpClient { addr, conn: None, head: Vec::with_capacity(256) }
    }

    fn connection(&mut self) -> io::Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr)?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::with_capacity(64 * 1024, stream));
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    pub fn get(&mut self, path: &str, body: &mut Vec<u8>) -> io::Result<Status> {
        self.request("GET", path, None, &[], body)
    }

    pub fn post(&mut self, path: &str, content_type: &str, payload: &[u8], body: &mut Vec<u8>) -> io::Result<Status> {
        self.request("POST", path, Some(content_type), payload, body)
    }

    /// One request on the kept-alive connection (reconnecting once if the server closed it).
    pub fn request(&mut self, method: &str, path: &str, content_type: Option<&str>, payload: &[u8], body: &mut Vec<u8>) -> io::Result<Status> {
        let reused = self.conn.is_some();
        match self.try_request(method, path, content_type, payload, body) {
            Err(e) if reused && matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
                self.conn = None;
                self.try_request(method, path, content_type, payload, body)
            }
            other => other,
        }
    }

    fn try_request(&mut self, method: &str, path: &str, content_type: Option<&str>, payload: &[u8], body: &mut Vec<u8>) -> io::Result<Status> {
        self.head.clear();
        write!(self.head, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr)?;
        if let Some(ct) = content_type {
            write!(self.head, "Content-Type: {ct}\r\n")?;
        }
        if method != "GET" || !payload.is_empty() {
            write!(self.head, "Content-Length: {}\r\n", payload.len())?;
        }
        self.head.extend_from_slice(b"\r\n");
        let head = std::mem::take(&mut self.head);
        let result = (|| {
            let conn = self.connection()?;
            let stream = conn.get_mut();
            if payload.len() < 16 * 1024 {
                let mut all = head.clone();
                all.extend_from_slice(payload);
                stream.write_all(&all)?;
            } else {
                stream.write_all(&head)?;
                stream.write_all(payload)?;
            }
            read_response(conn, body)
        })();
        self.head = head;
        match result {
            Ok((status, close)) => {
                if close {
                    self.conn = None;
                }
                Ok(status)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one response; the second value tells whether the server will close the connection.
fn read_response(conn: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> io::Result<(Status, bool)> {
    body.clear();
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the response"));
    }
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in the headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().map_err(|_| bad("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size_text = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text.trim(), 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    line.clear();
                    conn.read_line(&mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            conn.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        conn.read_exact(body)?;
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        conn.read_to_end(body)?;
        close = true;
    }
    Ok((Status(status), close))
}
