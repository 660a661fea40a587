//! A small HTTP/1.1 client for the daemon's Unix socket, over hyper's client connection
//! (`hyper::client::conn::http1`): the `swarm-node unlock`/`status` subcommands and
//! `testing::HttpClient` use it.
//!
//! One [`UnixClient`] is one keep-alive connection; requests go one after the other.
//! [`UnixClient::send`] returns the response with its body still streaming (hyper decodes
//! `Content-Length` and chunked bodies); [`UnixClient::request`] collects the body.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The socket could not be connected to (no daemon serving there, or no permission).
    #[error("connecting to {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The method or path does not make a valid request.
    #[error("invalid request {method} {path}: {source}")]
    Request {
        /// The method as given.
        method: String,
        /// The path as given.
        path: String,
        /// Why it is invalid.
        #[source]
        source: hyper::http::Error,
    },
    /// The exchange failed: the connection closed, or the answer was not valid HTTP/1.1.
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
}

impl From<HttpClientError> for std::io::Error {
    fn from(e: HttpClientError) -> std::io::Error {
        let kind = match &e {
            HttpClientError::Connect { source, .. } => source.kind(),
            HttpClientError::Request { .. } => std::io::ErrorKind::InvalidInput,
            HttpClientError::Http(_) => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

/// A complete answer: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers in the order received, names lowercased (values that are not text are lossy).
    pub headers: Vec<(String, String)>,
    /// Body bytes (decoded from chunked transfer encoding if it was).
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value (the first, if repeated); `name` in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive HTTP/1.1 connection to a Unix socket. Dropping it closes the connection.
#[derive(Debug)]
pub struct UnixClient {
    sender: SendRequest<Full<Bytes>>,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for UnixClient {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl UnixClient {
    /// Connects to the socket at `path`. Must be called within a tokio runtime (the connection
    /// is driven by a task of its own).
    pub async fn connect(path: &Path) -> Result<UnixClient, HttpClientError> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| HttpClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP client connection ended");
            }
        });
        Ok(UnixClient { sender, conn })
    }

    /// Sends `method path` (with `body` as `application/json` if given) and returns the answer
    /// as soon as its head arrives; the body streams from [`Response::into_body`].
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response<Incoming>, HttpClientError> {
        let invalid = |source| HttpClientError::Request {
            method: method.to_string(),
            path: path.to_string(),
            source,
        };
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).map_err(|e| invalid(e.into()))?)
            .uri(path)
            .header(hyper::header::HOST, "docker");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
            .map_err(invalid)?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// [`UnixClient::send`], then reads the whole body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Reply, HttpClientError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each of `replies` on one connection, byte for byte, after reading
    /// a request head (these requests carry no body).
    async fn serve_raw(replies: Vec<&'static [u8]>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for reply in replies {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                s.write_all(reply).await.unwrap();
            }
        });
        (dir, path)
    }

    #[tokio::test]
    async fn plain_and_chunked_bodies_on_one_connection() {
        let (_dir, path) = serve_raw(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Test: a\r\n\r\nok",
            b"HTTP/1.1 503 x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ])
        .await;
        let mut c = UnixClient::connect(&path).await.unwrap();
        let r = c.request("GET", "/info", None).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        assert!(r.headers.contains(&("x-test".to_string(), "a".to_string())));
        let r = c.request("GET", "/tasks", None).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
    }

    #[tokio::test]
    async fn garbage_and_missing_servers_are_errors() {
        let (_dir, path) = serve_raw(vec![b"garbage\r\n\r\n"]).await;
        let mut c = UnixClient::connect(&path).await.unwrap();
        assert!(matches!(
            c.request("GET", "/", None).await,
            Err(HttpClientError::Http(_))
        ));
        let missing = path.with_file_name("none.sock");
        assert!(matches!(
            UnixClient::connect(&missing).await,
            Err(HttpClientError::Connect { .. })
        ));
        let (_dir, path) = serve_raw(vec![]).await;
        let mut c = UnixClient::connect(&path).await.unwrap();
        assert!(matches!(
            c.request("GET", "no spaces allowed", None).await,
            Err(HttpClientError::Request { .. })
        ));
    }
}
