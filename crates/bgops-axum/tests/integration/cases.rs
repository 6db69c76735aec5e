//! One function per row of semantics §3, run against each backend.

use std::sync::Arc;
use std::time::Duration;

use bgops_axum::{FailMode, IdempotencyConfig, InFlightPolicy, ProblemKind, Scope};
use bgops_storage::IdempotencyStore;
use futures::future::join_all;

use crate::app::{start, start_on};
use crate::support::{down, key};

type Store = Arc<dyn IdempotencyStore>;

fn defaults() -> IdempotencyConfig {
    IdempotencyConfig::default()
        .exempt_path("/health")
        .exempt_path("/admin/*")
        .require_key_on("/required")
}

pub async fn replay_is_byte_exact(store: Store) {
    let app = start(store, defaults()).await;
    let k = key();
    let first = app.client.post("/echo", Some(&k), r#"{"a":1}"#).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("x-cache-hit"), Some("false"));
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(first.header("set-cookie"), Some("session=abc"));
    let second = app.client.post("/echo", Some(&k), r#"{"a":1}"#).await;
    assert_eq!(app.runs.get(), 1, "handler ran again");
    assert_eq!(second.status, 201);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.header("x-cache-hit"), Some("true"));
    assert_eq!(
        second.header("set-cookie"),
        None,
        "Set-Cookie must not be replayed"
    );
    for name in ["location", "x-custom", "content-type"] {
        assert_eq!(second.headers.get(name), first.headers.get(name), "{name}");
    }
    let links = |r: &crate::support::Reply| {
        r.headers
            .get_all("link")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        links(&second),
        vec!["</a>; rel=\"first\"", "</b>; rel=\"second\""]
    );
    assert_eq!(links(&second), links(&first));
    // A quoted (RFC 8941) key is the same key.
    let third = app
        .client
        .post("/echo", Some(&format!("\"{k}\"")), r#"{"a":1}"#)
        .await;
    assert_eq!(
        (third.status.as_u16(), third.body.clone()),
        (201, first.body.clone())
    );
    assert_eq!(app.runs.get(), 1);
}

pub async fn methods_not_covered_pass_through(store: Store) {
    let app = start(store, defaults()).await;
    let k = key();
    for method in ["GET", "PUT", "GET"] {
        let r = app
            .client
            .send(method, "/echo", &[("idempotency-key", &k)], "")
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("x-cache-hit"), None);
    }
    assert_eq!(app.runs.get(), 3);
    // PATCH is covered by default.
    for _ in 0..2 {
        let r = app
            .client
            .send("PATCH", "/echo", &[("idempotency-key", &k)], "p")
            .await
            .unwrap();
        assert_eq!(r.status, 201);
    }
    assert_eq!(app.runs.get(), 4);
}

pub async fn bad_keys_are_400(store: Store) {
    let app = start(store, defaults()).await;
    let long = "k".repeat(256);
    for bad in [
        "",
        "a b",
        "\"a b\"",
        "\"unterminated",
        "\"x\"y",
        long.as_str(),
    ] {
        let r = app.client.post("/echo", Some(bad), "{}").await;
        assert_eq!(r.status, 400, "{bad:?}");
        assert_eq!(r.problem_type(), ProblemKind::KeyInvalid.type_uri());
    }
    let r = app
        .client
        .send(
            "POST",
            "/echo",
            &[("idempotency-key", "a"), ("idempotency-key", "b")],
            "{}",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(app.runs.get(), 0);
    let ok = app.client.post("/echo", Some(&"k".repeat(255)), "{}").await;
    assert_eq!(ok.status, 201);
}

pub async fn missing_key_required_or_optional(store: Store) {
    let app = start(store, defaults()).await;
    let r = app.client.post("/required", None, "").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.problem_type(), ProblemKind::KeyMissing.type_uri());
    assert_eq!(app.runs.get(), 0);
    for _ in 0..2 {
        let r = app.client.post("/echo", None, "{}").await;
        assert_eq!(r.status, 201);
        assert_eq!(r.header("x-cache-hit"), None);
    }
    assert_eq!(
        app.runs.get(),
        2,
        "optional route without key passes through each time"
    );
    let r = app.client.post("/required", Some(&key()), "").await;
    assert_eq!(r.status, 200);
}

pub async fn scope_separates_tenants_and_users(store: Store) {
    let app = start(store, defaults()).await;
    let k = key();
    let send = |tenant: &'static str, user: Option<&'static str>| {
        let client = app.client.clone();
        let k = k.clone();
        async move {
            let mut h = vec![("idempotency-key", k.as_str()), ("x-tenant-id", tenant)];
            if let Some(u) = user {
                h.push(("x-user-id", u));
            }
            client.send("POST", "/echo", &h, "{}").await.unwrap()
        }
    };
    let a = send("tenant-a", None).await;
    let b = send("tenant-b", None).await;
    assert_ne!(a.body, b.body, "tenant B must not see tenant A's response");
    assert_eq!(app.runs.get(), 2);
    let a_user = send("tenant-a", Some("alice")).await;
    assert_eq!(app.runs.get(), 3, "a user scope is another address");
    assert_eq!(send("tenant-a", Some("alice")).await.body, a_user.body);
    assert_eq!(send("tenant-a", None).await.body, a.body);
    assert_eq!(app.runs.get(), 3);
}

pub async fn other_request_same_key_is_422(store: Store) {
    let app = start(store, defaults()).await;
    let k = key();
    assert_eq!(
        app.client
            .post("/echo", Some(&k), r#"{"a":1}"#)
            .await
            .status,
        201
    );
    for (path, body) in [
        ("/echo", r#"{"a":2}"#),
        ("/echo?x=1", r#"{"a":1}"#),
        ("/status/200", r#"{"a":1}"#),
    ] {
        let r = app.client.post(path, Some(&k), body).await;
        assert_eq!(r.status, 422, "{path} {body}");
        assert_eq!(r.problem_type(), ProblemKind::KeyReused.type_uri());
    }
    let r = app
        .client
        .send("PATCH", "/echo", &[("idempotency-key", &k)], r#"{"a":1}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(app.runs.get(), 1);
}

pub async fn body_over_limit_is_413(store: Store) {
    let app = start(store, defaults().max_request_bytes(1024)).await;
    let r = app
        .client
        .post("/echo", Some(&key()), &"x".repeat(1025))
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.problem_type(), ProblemKind::BodyTooLarge.type_uri());
    assert_eq!(
        app.client
            .post("/echo", Some(&key()), &"x".repeat(1024))
            .await
            .status,
        201
    );
    assert_eq!(app.runs.get(), 1);
}

pub async fn deterministic_statuses_are_stored(store: Store) {
    let app = start(store, defaults()).await;
    for code in [200u16, 204, 400, 404, 410, 422] {
        let k = key();
        let before = app.runs.get();
        let first = app
            .client
            .post(&format!("/status/{code}"), Some(&k), "")
            .await;
        let again = app
            .client
            .post(&format!("/status/{code}"), Some(&k), "")
            .await;
        assert_eq!((first.status.as_u16(), again.status.as_u16()), (code, code));
        assert_eq!(again.body, first.body);
        assert_eq!(again.header("idempotent-replayed"), Some("true"), "{code}");
        assert_eq!(app.runs.get(), before + 1, "{code} must be stored");
    }
}

pub async fn transient_statuses_release_the_claim(store: Store) {
    let app = start(store, defaults()).await;
    for code in [500u16, 502, 503, 401, 403, 408, 409, 429] {
        let k = key();
        let before = app.runs.get();
        let first = app
            .client
            .post(&format!("/status/{code}"), Some(&k), "")
            .await;
        assert_eq!(first.status.as_u16(), code);
        assert_eq!(first.header("idempotency-stored"), Some("false"));
        let again = app
            .client
            .post(&format!("/status/{code}"), Some(&k), "")
            .await;
        assert_eq!(again.status.as_u16(), code);
        assert_eq!(again.header("idempotent-replayed"), None);
        assert_eq!(app.runs.get(), before + 2, "{code} must not be stored");
    }
}

pub async fn panicking_handler_releases_the_claim(store: Store) {
    let app = start(store, defaults()).await;
    let k = key();
    // The panic ends the connection (no catch-panic layer): the client sees an error.
    let first = app
        .client
        .send("POST", "/panic", &[("idempotency-key", &k)], "")
        .await;
    assert!(first.is_err() || first.unwrap().status.is_server_error());
    let mut second = None;
    for _ in 0..50 {
        let r = app.client.post("/panic", Some(&k), "").await;
        if r.status != 409 {
            second = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = second.expect("claim was never released");
    assert_eq!(second.status, 200);
    assert_eq!(&second.body[..], b"run 2");
    assert_eq!(app.runs.get(), 2);
}

pub async fn in_flight_duplicate_gets_409(store: Store) {
    let app = start(store, defaults()).await;
    let k = key();
    let c = app.client.clone();
    let k2 = k.clone();
    let first = tokio::spawn(async move { c.post("/slow?ms=400", Some(&k2), "").await });
    wait_for_runs(&app, 1).await;
    let dup = app.client.post("/slow?ms=400", Some(&k), "").await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.header("retry-after"), Some("1"));
    assert_eq!(dup.problem_type(), ProblemKind::InFlight.type_uri());
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    let after = app.client.post("/slow?ms=400", Some(&k), "").await;
    assert_eq!(after.body, first.body);
    assert_eq!(app.runs.get(), 1);
}

pub async fn in_flight_duplicate_202_as_in_seed(store: Store) {
    let app = start(store, defaults().in_flight(InFlightPolicy::Accepted202)).await;
    let k = key();
    let c = app.client.clone();
    let k2 = k.clone();
    let first = tokio::spawn(async move { c.post("/slow?ms=300", Some(&k2), "").await });
    wait_for_runs(&app, 1).await;
    let dup = app.client.post("/slow?ms=300", Some(&k), "").await;
    assert_eq!(dup.status, 202);
    assert_eq!(dup.json()["status"], "in_progress");
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(app.runs.get(), 1);
}

pub async fn in_flight_duplicate_waits_and_replays(store: Store) {
    let app = start(
        store,
        defaults().in_flight(InFlightPolicy::Wait(Duration::from_secs(5))),
    )
    .await;
    let k = key();
    let c = app.client.clone();
    let k2 = k.clone();
    let first = tokio::spawn(async move { c.post("/slow?ms=300", Some(&k2), "").await });
    wait_for_runs(&app, 1).await;
    let dup = app.client.post("/slow?ms=300", Some(&k), "").await;
    let first = first.await.unwrap();
    assert_eq!(dup.status, 200);
    assert_eq!(dup.body, first.body);
    assert_eq!(dup.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.runs.get(), 1);
}

pub async fn lease_is_renewed_while_handler_runs(store: Store) {
    // Lease 600 ms (renewed every 200 ms), handler 2 s: without renewal the duplicate sent
    // a second after the handler started would find the lease expired and run it again.
    let engine = bgops_idempotency::IdempotencyEngine::builder(store)
        .lease(Duration::from_millis(600))
        .build();
    let app = start_on(engine, defaults()).await;
    let k = key();
    let c = app.client.clone();
    let k2 = k.clone();
    let first = tokio::spawn(async move { c.post("/slow?ms=2000", Some(&k2), "").await });
    wait_for_runs(&app, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dup = app.client.post("/slow?ms=2000", Some(&k), "").await;
    assert_eq!(dup.status, 409);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(app.runs.get(), 1);
}

/// Waits until the handlers have run `n` times (the first request holds its claim).
async fn wait_for_runs(app: &crate::app::TestApp, n: usize) {
    for _ in 0..500 {
        if app.runs.get() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the handler never started");
}

pub async fn streamed_and_large_responses_are_not_stored(store: Store) {
    let app = start(store, defaults()).await;
    for path in ["/stream", "/big"] {
        let k = key();
        let before = app.runs.get();
        let first = app.client.post(path, Some(&k), "").await;
        assert_eq!(first.status, 200);
        assert_eq!(first.header("idempotency-stored"), Some("false"));
        if path == "/stream" {
            assert_eq!(&first.body[..], b"chunk-1 chunk-2");
        } else {
            assert_eq!(first.body.len(), 2 << 20);
        }
        let again = app.client.post(path, Some(&k), "").await;
        assert_eq!(again.status, 410, "{path}");
        assert_eq!(
            again.problem_type(),
            ProblemKind::ResponseNotStored.type_uri()
        );
        assert_eq!(app.runs.get(), before + 1, "{path}: no second side effect");
    }
}

pub async fn exempt_paths_pass_through(store: Store) {
    let app = start(store, defaults()).await;
    let k = key();
    for path in ["/health", "/health", "/admin/x", "/admin/x/y"] {
        let r = app.client.post(path, Some(&k), "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cache-hit"), None);
    }
    assert_eq!(app.runs.get(), 4);
}

pub async fn operation_result_is_kept_in_the_record(store: Store) {
    let app = start(Arc::clone(&store), defaults()).await;
    let k = key();
    let r = app.client.post("/result", Some(&k), "").await;
    assert_eq!(r.json()["key"], k.as_str());
    let stored = |k: &str| {
        let store = Arc::clone(&store);
        let at = Scope::tenant("default").storage_key(k);
        async move {
            store
                .get_idempotency("default", &at)
                .await
                .unwrap()
                .expect("record")
        }
    };
    let record = stored(&k).await;
    assert_eq!(
        record.result,
        Some(serde_json::json!({"attached": true, "run": 1}))
    );
    assert_eq!(record.operation_type, "POST /result");
    assert!(record.payload.is_some(), "the response travels as bytes");
    // Without an attached result, nothing is kept as the result by default...
    let k = key();
    app.client.post("/echo", Some(&k), "{}").await;
    assert_eq!(stored(&k).await.result, None);
    // ...and the JSON body when asked.
    let app = start(Arc::clone(&store), defaults().json_body_as_result(true)).await;
    let k = key();
    app.client.post("/echo", Some(&k), "{}").await;
    assert_eq!(stored(&k).await.result.as_ref().unwrap()["key"], k.as_str());
}

pub async fn custom_header_names(store: Store) {
    let config = defaults()
        .key_header("X-Request-ID")
        .unwrap()
        .cache_hit_header("X-From-Cache")
        .unwrap();
    let app = start(store, config).await;
    let k = key();
    let h = [("x-request-id", k.as_str())];
    let first = app.client.send("POST", "/echo", &h, "{}").await.unwrap();
    assert_eq!(first.header("x-from-cache"), Some("false"));
    let again = app.client.send("POST", "/echo", &h, "{}").await.unwrap();
    assert_eq!(again.header("x-from-cache"), Some("true"));
    assert_eq!(again.header("x-cache-hit"), None);
    assert_eq!(app.runs.get(), 1);
}

pub async fn one_key_hundred_concurrent_requests(store: Store) {
    let app = start(store, defaults()).await;
    let k = key();
    let replies = join_all((0..100).map(|_| {
        let c = app.client.clone();
        let k = k.clone();
        async move { c.post("/slow?ms=50", Some(&k), "{}").await }
    }))
    .await;
    assert_eq!(app.runs.get(), 1, "handler must run once");
    let stored = app.client.post("/slow?ms=50", Some(&k), "{}").await;
    assert_eq!(stored.status, 200);
    for r in &replies {
        match r.status.as_u16() {
            200 => assert_eq!(r.body, stored.body),
            409 => assert_eq!(r.problem_type(), ProblemKind::InFlight.type_uri()),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(replies.iter().any(|r| r.status == 200));
}

pub async fn many_keys_at_once(store: Store) {
    let app = start(store, defaults()).await;
    let keys: Vec<String> = (0..200).map(|_| key()).collect();
    let round = || {
        join_all(keys.iter().map(|k| {
            let c = app.client.clone();
            let k = k.clone();
            async move { c.post("/echo", Some(&k), "{}").await }
        }))
    };
    let first = round().await;
    assert_eq!(app.runs.get(), 200);
    let second = round().await;
    assert_eq!(app.runs.get(), 200);
    for ((a, b), k) in first.iter().zip(&second).zip(&keys) {
        assert_eq!(a.status, 201);
        assert_eq!(a.json()["key"], k.as_str());
        assert_eq!(b.body, a.body);
        assert_eq!(b.header("x-cache-hit"), Some("true"));
    }
}

pub async fn store_down_fails_closed_with_503() {
    let app = start(down(), defaults()).await;
    let r = app.client.post("/echo", Some(&key()), "{}").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.problem_type(), ProblemKind::StoreUnavailable.type_uri());
    assert_eq!(app.runs.get(), 0);
    // Requests without a key are not affected.
    assert_eq!(app.client.post("/echo", None, "{}").await.status, 201);
}

pub async fn store_down_fails_open_when_chosen() {
    let app = start(down(), defaults().fail_mode(FailMode::Open)).await;
    let r = app.client.post("/echo", Some(&key()), "{}").await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("idempotency-stored"), Some("false"));
    assert_eq!(app.runs.get(), 1);
}

/// Issue 10 item 2: the client goes away while the handler runs. Nothing is released:
/// the handler finishes and its response is stored; the retry waits (409) and then
/// replays. Before, the claim's `Drop` released the key and the retry ran it again.
pub async fn client_disconnect_mid_handler_runs_once_and_retry_replays(store: Store) {
    use tokio::io::AsyncWriteExt as _;
    let app = start(store, defaults()).await;
    let k = key();
    let mut conn = tokio::net::TcpStream::connect(app.client.addr())
        .await
        .unwrap();
    let head = format!(
        "POST /slow?ms=400 HTTP/1.1\r\nhost: test\r\nidempotency-key: {k}\r\ncontent-length: 0\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    wait_for_runs(&app, 1).await;
    drop(conn); // the client disconnects mid-handler
    tokio::time::sleep(Duration::from_millis(50)).await;
    let during = app.client.post("/slow?ms=400", Some(&k), "").await;
    assert_eq!(
        during.status, 409,
        "the claim is held while the handler runs"
    );
    let replay = replay_when_done(&app, "/slow?ms=400", &k).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json()["run"], 1);
    assert_eq!(app.runs.get(), 1, "the handler ran once");
}

/// Issue 10 item 3: a path longer than 255 bytes works (the operation type is bounded).
pub async fn long_paths_work(store: Store) {
    let app = start(Arc::clone(&store), defaults()).await;
    let path = format!("/long/{}", "p".repeat(400));
    let k = key();
    let first = app.client.post(&path, Some(&k), "").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let again = app.client.post(&path, Some(&k), "").await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    // Another long path under the same key is another request, not a replay.
    let other = app.client.post(&format!("{path}q"), Some(&k), "").await;
    assert_eq!(other.status, 422);
    assert_eq!(app.runs.get(), 1);
    let record = store
        .get_idempotency("default", &Scope::tenant("default").storage_key(&k))
        .await
        .unwrap()
        .unwrap();
    assert!(record.operation_type.len() <= 255);
    assert!(record.operation_type.starts_with("POST /long/ppp"));
}

/// Issue 10 item 4: a request without a user sends the string a user's key is stored
/// under; it must neither replay the user's response nor see it in a status lookup.
pub async fn unscoped_request_cannot_address_a_scoped_key(store: Store) {
    let app = start(Arc::clone(&store), defaults()).await;
    let k = key();
    let alice = app
        .client
        .send(
            "POST",
            "/echo",
            &[("idempotency-key", &k), ("x-user-id", "alice")],
            "{}",
        )
        .await
        .unwrap();
    assert_eq!(alice.status, 201);
    let alice_at = Scope::tenant("default").with_user("alice").storage_key(&k);
    let attack = app.client.post("/echo", Some(&alice_at), "{}").await;
    assert_eq!(attack.status, 201);
    assert_eq!(
        attack.header("idempotent-replayed"),
        None,
        "alice's response replayed"
    );
    assert_ne!(attack.body, alice.body);
    assert_eq!(app.runs.get(), 2);
    // The status lookup of the unscoped key finds the attacker's own record only.
    let looked_up = store
        .get_idempotency("default", &Scope::tenant("default").storage_key(&alice_at))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(looked_up.user_id, None);
    let alices = store
        .get_idempotency("default", &alice_at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alices.user_id.as_deref(), Some("alice"));
}

/// Issue 10 item 3: a stored response that cannot be decoded is a 500 naming the
/// record, also when failing open; the handler is not run again.
pub async fn corrupt_stored_response_is_500_naming_the_record(store: Store) {
    use bgops_axum::{Fingerprinter as _, Sha256Fingerprint};
    let engine = bgops_idempotency::IdempotencyEngine::builder(store).build();
    let k = key();
    let at = Scope::tenant("default").storage_key(&k);
    let (parts, ()) = http::Request::post("/echo").body(()).unwrap().into_parts();
    let request = bgops_idempotency::KeyRequest::new("default", &at, "POST /echo")
        .fingerprint(Sha256Fingerprint.fingerprint(&parts, b"{}"));
    let bgops_idempotency::KeyStatus::Created(claim) = engine.begin(request).await.unwrap() else {
        panic!("creates")
    };
    let garbage = bgops_core::OperationOutcome::default().with_payload(&b"not a response"[..]);
    engine.complete(&claim, garbage).await.unwrap();
    let app = start_on(engine, defaults().fail_mode(FailMode::Open)).await;
    let r = app.client.post("/echo", Some(&k), "{}").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.problem_type(), ProblemKind::RecordCorrupt.type_uri());
    assert!(
        r.json()["detail"].as_str().unwrap().contains(&at),
        "{}",
        r.json()
    );
    assert_eq!(app.runs.get(), 0, "never fail open on corrupt data");
}

/// Retries `path` with key `k` until it is no longer in flight (409), at most 10 s.
pub async fn replay_when_done(
    app: &crate::app::TestApp,
    path: &str,
    k: &str,
) -> crate::support::Reply {
    for _ in 0..500 {
        let r = app.client.post(path, Some(k), "").await;
        if r.status != 409 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} stayed in flight");
}
