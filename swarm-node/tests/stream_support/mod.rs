//! A streaming HTTP/1.1 GET over a Unix socket for the `/events` and `logs?follow` tests: the
//! head is read at once, then the chunked body piece by piece as the server sends it. Dropping
//! the [`Stream`] closes the connection (the client going away).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Longest any one read waits: a test that gets nothing fails instead of hanging.
pub const READ_LIMIT: Duration = Duration::from_secs(30);

/// An open streamed answer.
pub struct Stream {
    conn: BufReader<UnixStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body bytes received and not yet taken.
    buf: Vec<u8>,
    /// The server ended the body.
    pub ended: bool,
}

impl Stream {
    /// Sends `GET path` and reads the answer's head.
    pub async fn get(socket: &Path, path: &str) -> Stream {
        let mut conn = UnixStream::connect(socket).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n");
        conn.write_all(req.as_bytes()).await.expect("send");
        let mut conn = BufReader::new(conn);
        let mut line = String::new();
        tokio::time::timeout(READ_LIMIT, conn.read_line(&mut line))
            .await
            .expect("status line in time")
            .expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let mut headers = Vec::new();
        loop {
            line.clear();
            conn.read_line(&mut line).await.expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Stream {
            conn,
            status,
            headers,
            buf: Vec::new(),
            ended: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    /// Reads the next piece of the body into the buffer; `false` once the body ended.
    async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        if !self.chunked() {
            // A fixed-length (or close-delimited) body: read what is there.
            let len: Option<usize> = self.header("content-length").and_then(|v| v.parse().ok());
            let mut body = vec![0u8; len.unwrap_or(0)];
            if len.is_some() {
                self.conn.read_exact(&mut body).await.expect("body");
            } else {
                self.conn.read_to_end(&mut body).await.expect("body");
            }
            self.buf.extend_from_slice(&body);
            self.ended = true;
            return true;
        }
        let mut line = String::new();
        let n = tokio::time::timeout(READ_LIMIT, self.conn.read_line(&mut line))
            .await
            .expect("a chunk in time")
            .expect("chunk size");
        if n == 0 {
            self.ended = true;
            return false;
        }
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .expect("chunk size is hex");
        if size == 0 {
            let mut end = String::new();
            let _ = self.conn.read_line(&mut end).await;
            self.ended = true;
            return false;
        }
        let mut chunk = vec![0u8; size + 2];
        self.conn.read_exact(&mut chunk).await.expect("chunk");
        chunk.truncate(size);
        self.buf.extend_from_slice(&chunk);
        true
    }

    /// The next newline-terminated line of the body (without the newline), `None` at its end.
    pub async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next frame of Docker's multiplexed stream: (stream byte, payload), `None` at the end.
    pub async fn next_frame(&mut self) -> Option<(u8, String)> {
        loop {
            if self.buf.len() >= 8 {
                let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
                    as usize;
                if self.buf.len() >= 8 + len {
                    let frame: Vec<u8> = self.buf.drain(..8 + len).collect();
                    return Some((frame[0], String::from_utf8_lossy(&frame[8..]).into_owned()));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Every remaining line until the server ends the body.
    pub async fn rest_lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(l) = self.next_line().await {
            out.push(l);
        }
        out
    }
}
