//! Shared setup for the `api_*` tests: the API on a temporary Unix socket over a `TestBackend`, a
//! raw HTTP client, and data-driven request checks.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::Value;
use swarm_node::api::ApiOptions;
use swarm_node::testing::{HttpClient, HttpResponse, TestBackend, TestServer};

/// A served backend and one client connection.
pub struct Env {
    pub backend: Arc<TestBackend>,
    pub server: TestServer,
    pub client: HttpClient,
}

/// One request and what must come back.
pub struct Case<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: Option<Value>,
    pub status: u16,
    /// A substring of the `message` (errors) or of the body (successes); "" checks nothing.
    pub contains: &'a str,
}

/// Shorthand for a [`Case`].
pub fn case<'a>(
    method: &'a str,
    path: &'a str,
    body: Option<Value>,
    status: u16,
    contains: &'a str,
) -> Case<'a> {
    Case {
        method,
        path,
        body,
        status,
        contains,
    }
}

impl Env {
    pub async fn with(backend: Arc<TestBackend>) -> Env {
        Env::with_options(backend, ApiOptions::default()).await
    }

    /// Like [`Env::with`], serving with `options` (connection cap, timeouts, service limits).
    pub async fn with_options(backend: Arc<TestBackend>, options: ApiOptions) -> Env {
        let server = TestServer::start_with(backend.clone(), options)
            .await
            .expect("bind");
        let client = server.client().await.expect("connect");
        Env {
            backend,
            server,
            client,
        }
    }

    /// A node that ran `swarm init`.
    pub async fn active() -> Env {
        Env::with(TestBackend::active().await).await
    }

    /// A node in no swarm.
    pub async fn inactive() -> Env {
        Env::with(TestBackend::new()).await
    }

    pub async fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        self.client
            .request(method, path, bytes.as_deref())
            .await
            .expect("request")
    }

    pub async fn raw(&mut self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        self.client
            .request(method, path, Some(body))
            .await
            .expect("request")
    }

    pub async fn get(&mut self, path: &str) -> HttpResponse {
        self.call("GET", path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> HttpResponse {
        self.call("POST", path, Some(&body)).await
    }

    /// Runs `c` and checks status, message and, for errors, the JSON error shape.
    pub async fn check(&mut self, c: &Case<'_>) -> HttpResponse {
        let r = self.call(c.method, c.path, c.body.as_ref()).await;
        let what = format!("{} {} -> {} {}", c.method, c.path, r.status, r.text());
        assert_eq!(r.status, c.status, "{what}");
        if r.status >= 400 {
            assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
            let msg = r.json()["message"].as_str().map(str::to_string);
            let msg = msg.unwrap_or_else(|| panic!("no message: {what}"));
            assert!(msg.contains(c.contains), "{what}: want {:?}", c.contains);
        } else {
            assert!(
                r.text().contains(c.contains),
                "{what}: want {:?}",
                c.contains
            );
        }
        r
    }

    /// Runs every case in order.
    pub async fn check_all(&mut self, cases: &[Case<'_>]) {
        for c in cases {
            self.check(c).await;
        }
    }

    /// The store, encoded (to prove a failed request changed nothing).
    pub fn snapshot(&self) -> Vec<u8> {
        self.backend.store().snapshot().encode()
    }

    /// Creates a secret and returns its id.
    pub async fn secret(&mut self, name: &str, data: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let r = self
            .post(
                "/v1.44/secrets/create",
                serde_json::json!({"Name": name, "Data": b64}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["ID"].as_str().expect("id").to_string()
    }

    /// Creates a replicated busybox service and returns its id.
    pub async fn service(&mut self, name: &str, replicas: u64) -> String {
        let r = self
            .post(
                "/v1.44/services/create",
                serde_json::json!({
                    "Name": name,
                    "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Args": ["sleep", "60"]}},
                    "Mode": {"Replicated": {"Replicas": replicas}}
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["ID"].as_str().expect("id").to_string()
    }

    /// `Version.Index` of the object at `path`.
    pub async fn version(&mut self, path: &str) -> u64 {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["Version"]["Index"].as_u64().expect("version")
    }
}
