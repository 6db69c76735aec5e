//! A board on a loopback port, a plain HTTP/1.0 client, and seeded data.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bgops_board::Board;
use bgops_core::{
    OperationOutcome, SagaEvent, SagaEventKind, SagaStatus, SagaStep, SagaStepStatus, SagaWorkflow,
};
use bgops_memory::MemoryStorage;
use bgops_storage::{BeginOutcome, BeginRequest, NewTask, Storage};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A served board and its store.
pub struct Served {
    pub addr: SocketAddr,
    pub storage: Arc<MemoryStorage>,
}

/// Serves `configure(Board::new(storage))` nested at `/bgops` on 127.0.0.1.
pub async fn serve(configure: impl FnOnce(Board) -> Board) -> Served {
    let storage = Arc::new(MemoryStorage::new());
    let addr = serve_on(storage.clone(), configure).await;
    Served { addr, storage }
}

/// Serves a board over any store, nested at `/bgops`.
pub async fn serve_on(
    storage: Arc<dyn Storage>,
    configure: impl FnOnce(Board) -> Board,
) -> SocketAddr {
    let board = configure(Board::new(storage).poll_interval(Duration::from_millis(50)));
    let app = axum::Router::new().nest("/bgops", board.into_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (HTTP/1.0: the server closes after the response) and reads it all.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    if !body.is_empty() {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], "").await
}

/// An open SSE stream, read as text.
pub struct EventStream {
    stream: TcpStream,
    pub seen: String,
}

impl EventStream {
    pub async fn open(addr: SocketAddr, path: &str) -> Self {
        Self::open_with(addr, path, "X-Test: 1").await
    }

    /// Opens with one extra header line (`Name: value`).
    pub async fn open_with(addr: SocketAddr, path: &str, header: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{header}\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        Self {
            stream,
            seen: String::new(),
        }
    }

    /// Reads until `needle` has arrived (bounded: the test fails after 10 s, never hangs).
    pub async fn until(&mut self, needle: &str) -> &str {
        let wait = async {
            let mut buf = [0_u8; 4096];
            while !self.seen.contains(needle) {
                let n = self.stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "stream closed before {needle:?}; got\n{}", self.seen);
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            panic!("no {needle:?} within 10 s; got\n{}", self.seen);
        }
        &self.seen
    }
}

/// What [`seed`] stored.
pub struct Seeded {
    pub tenant: String,
    pub key: String,
    pub saga_id: String,
    pub failed_task: String,
    pub pending_task: String,
}

/// One completed record, one saga whose compensation failed (7 events), two tasks.
pub async fn seed(storage: &dyn Storage) -> Seeded {
    let tenant = "acme".to_owned();
    let key = "order-1".to_owned();
    let BeginOutcome::Started(claim) = storage
        .begin(BeginRequest::new(&tenant, &key, "create_order", "tok-1"))
        .await
        .unwrap()
    else {
        panic!("fresh key");
    };
    storage
        .complete(
            &tenant,
            &key,
            &claim.token,
            OperationOutcome::succeeded(json!({"order": 7})),
        )
        .await
        .unwrap();

    let now = time::OffsetDateTime::now_utc();
    let mut reserve = SagaStep::new("reserve", "reserve_inventory", json!({}))
        .with_compensation("release_inventory", json!({}));
    reserve.status = SagaStepStatus::CompensationFailed;
    reserve.attempts = 1;
    reserve.compensation_attempts = 3;
    reserve.compensation_error = Some("inventory service down".into());
    let mut charge = SagaStep::new("charge", "charge_card", json!({}));
    charge.status = SagaStepStatus::Failed;
    charge.attempts = 2;
    charge.error = Some("card declined".into());
    let mut saga = SagaWorkflow::new(&tenant, "order", vec![reserve, charge], now);
    saga.status = SagaStatus::CompensationFailed;
    saga.error = Some("card declined".into());
    let id: Arc<str> = Arc::from(saga.saga_id.as_str());
    let ev = |status, kind| SagaEvent {
        saga_id: Arc::clone(&id),
        at: now,
        fence: 1,
        status,
        kind,
    };
    let history = [
        ev(SagaStatus::Pending, SagaEventKind::Created),
        ev(
            SagaStatus::Running,
            SagaEventKind::StepStarted {
                step_index: 0,
                name: "reserve".into(),
                attempt: 1,
            },
        ),
        ev(
            SagaStatus::Running,
            SagaEventKind::StepSucceeded {
                step_index: 0,
                name: "reserve".into(),
                output: json!({"held": 1}),
            },
        ),
        ev(
            SagaStatus::Running,
            SagaEventKind::StepFailed {
                step_index: 1,
                name: "charge".into(),
                error: "card declined".into(),
            },
        ),
        ev(
            SagaStatus::Compensating,
            SagaEventKind::Compensating {
                reason: "step charge failed".into(),
            },
        ),
        ev(
            SagaStatus::Compensating,
            SagaEventKind::CompensationFailed {
                step_index: 0,
                name: "reserve".into(),
                error: "inventory service down".into(),
            },
        ),
        ev(SagaStatus::CompensationFailed, SagaEventKind::Finished),
    ];
    storage.create_saga(&saga, None, &history).await.unwrap();

    let failed = storage
        .submit_task(NewTask::new(
            "emails",
            "send_email",
            json!({"to": "a@example.com"}),
        ))
        .await
        .unwrap()
        .task;
    let claimed = storage
        .claim_task(&failed.task_id, "worker-1", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    storage
        .fail_task_permanently(
            &failed.task_id,
            claimed.lease.unwrap().attempt,
            "mailbox does not exist",
        )
        .await
        .unwrap();
    let pending = storage
        .submit_task(NewTask::new(
            "emails",
            "send_email",
            json!({"to": "b@example.com"}),
        ))
        .await
        .unwrap()
        .task;
    Seeded {
        tenant,
        key,
        saga_id: saga.saga_id,
        failed_task: failed.task_id,
        pending_task: pending.task_id,
    }
}
