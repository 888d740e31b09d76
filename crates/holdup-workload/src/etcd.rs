//! The etcd side of `loadgen --etcd-put`: one keep-alive HTTP/1.1 connection
//! to etcd's v3 JSON gateway, each request a `POST /v3/kv/put` of a small
//! value under one of [`KEYS_PER_CONNECTION`] keys of its own (so the store
//! stays small and every put is an fsync'd raft entry, not a growing data set).

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Distinct keys each connection cycles through.
pub const KEYS_PER_CONNECTION: usize = 64;

/// Standard base64 (RFC 4648, with padding), which the gateway wants for
/// keys and values.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A client connection's prepared requests and its read buffer.
pub struct PutClient {
    requests: Vec<Vec<u8>>,
    next: usize,
    buf: Vec<u8>,
    /// The first failed answer, for the final line (status line or reason).
    pub first_error: Option<String>,
}

impl PutClient {
    /// Requests for connection `conn` to etcd at `host` (the Host header).
    pub fn new(conn: u32, host: &str) -> PutClient {
        let value = base64(&[b'v'; 96]);
        let requests = (0..KEYS_PER_CONNECTION)
            .map(|k| {
                let key = base64(format!("holdup-load/{conn}/{k}").as_bytes());
                let body = format!(r#"{{"key":"{key}","value":"{value}"}}"#);
                format!(
                    "POST /v3/kv/put HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
            .collect();
        PutClient {
            requests,
            next: 0,
            buf: Vec::with_capacity(4096),
            first_error: None,
        }
    }

    /// Sends the next put and reads its whole answer. Ok(false): etcd
    /// answered, but not with 200 (recorded in `first_error`).
    pub fn put(&mut self, conn: &mut TcpStream) -> io::Result<bool> {
        let req = &self.requests[self.next];
        self.next = (self.next + 1) % self.requests.len();
        conn.write_all(req)?;
        let (status, body_start, framing) = self.read_head(conn)?;
        let consumed = match framing {
            Framing::Length(n) => {
                self.fill(conn, body_start + n)?;
                body_start + n
            }
            Framing::Chunked => self.read_chunked(conn, body_start)?,
        };
        let ok = status.contains(" 200 ");
        if !ok && self.first_error.is_none() {
            let body = String::from_utf8_lossy(&self.buf[body_start..consumed]);
            self.first_error = Some(format!("{status}: {}", body.trim()));
        }
        self.buf.drain(..consumed);
        Ok(ok)
    }

    /// Reads until `buf` holds at least `n` bytes.
    fn fill(&mut self, conn: &mut TcpStream, n: usize) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        while self.buf.len() < n {
            let got = conn.read(&mut chunk)?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "etcd closed the connection mid-answer",
                ));
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    /// Reads the status line and headers: the status line, where the body
    /// starts, and how it is framed.
    fn read_head(&mut self, conn: &mut TcpStream) -> io::Result<(String, usize, Framing)> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            let have = self.buf.len();
            if have > 64 * 1024 {
                return Err(bad("answer headers over 64 KiB"));
            }
            self.fill(conn, have + 1)?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("").to_string();
        let mut framing = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                let n = value
                    .parse()
                    .map_err(|_| bad("unreadable Content-Length"))?;
                framing = Some(Framing::Length(n));
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                framing = Some(Framing::Chunked);
            }
        }
        let framing =
            framing.ok_or_else(|| bad("answer has neither Content-Length nor chunked body"))?;
        Ok((status, end + 4, framing))
    }

    /// Reads a chunked body starting at `at`; returns where the answer ends.
    fn read_chunked(&mut self, conn: &mut TcpStream, mut at: usize) -> io::Result<usize> {
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[at..], b"\r\n") {
                    break at + i;
                }
                let have = self.buf.len();
                self.fill(conn, have + 1)?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[at..line_end]);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
            let chunk_end = line_end + 2 + size + 2;
            self.fill(conn, chunk_end)?;
            at = chunk_end;
            if size == 0 {
                return Ok(at);
            }
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("etcd answer: {what}"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }
}
