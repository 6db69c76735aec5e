//! A server on an ephemeral loopback port, a real HTTP client, and store doubles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use bgops_storage::testing::decorators::{FailingStorage, Fault};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Serves `app` on 127.0.0.1:0; the server stops when the test's runtime ends.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The problem `type` of a problem+json response.
    pub fn problem_type(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        self.json()["type"].as_str().unwrap().to_owned()
    }
}

/// A keep-alive HTTP/1 client (hyper).
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
    addr: SocketAddr,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            addr,
        }
    }

    /// The server's address (for raw TCP clients).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, hyper_util::client::legacy::Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .inner
            .request(req.body(Full::new(body.into())).unwrap())
            .await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// POST with an optional key.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &str) -> Reply {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(k) = key {
            headers.push(("idempotency-key", k));
        }
        self.send("POST", path, &headers, body.to_owned())
            .await
            .unwrap()
    }
}

/// A unique key per call.
pub fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Counts handler runs.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn inc(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A memory store behind the fault injector of `bgops_storage::testing`.
pub fn failing() -> Arc<FailingStorage> {
    Arc::new(FailingStorage::failing(Arc::new(
        bgops_memory::MemoryStorage::new(),
    )))
}

/// A store whose every call fails as if the backend were down.
pub fn down() -> Arc<FailingStorage> {
    let store = failing();
    store.hook().fail_everything(Fault::Unavailable);
    store
}

/// Waits until `check` holds (polling every 20 ms, at most 10 s).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}
