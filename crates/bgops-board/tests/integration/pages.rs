//! The read-only pages.

use bgops_core::{SagaStatus, SagaWorkflow};
use bgops_storage::{SagaStore as _, TaskStore as _};

use crate::support::{get, request, seed, serve};

#[tokio::test]
async fn overview_counts_by_status_with_health_and_strict_headers() {
    let board = serve(|b| b).await;
    seed(board.storage.as_ref()).await;
    let page = get(board.addr, "/bgops").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let body = &page.body;
    assert!(
        body.contains(r#"data-k="sagas.compensation_failed">1<"#),
        "{body}"
    );
    assert!(body.contains(r#"data-k="sagas.running">0<"#), "{body}");
    assert!(body.contains(r#"data-k="tasks.failed">1<"#), "{body}");
    assert!(body.contains(r#"data-k="tasks.pending">1<"#), "{body}");
    assert!(
        body.contains(r#"data-k="idempotency_records">1<"#),
        "{body}"
    );
    assert!(body.contains(">healthy<"), "{body}");
    assert!(body.contains(" ms<"), "latency shown: {body}");
    // Links and assets carry the mount path; the live stream is announced.
    assert!(body.contains(r#"href="/bgops/sagas""#), "{body}");
    assert!(body.contains(r#"src="/bgops/assets/board.js""#), "{body}");
    assert!(
        body.contains(r#"data-live="/bgops/live/overview""#),
        "{body}"
    );
}

#[tokio::test]
async fn assets_are_served_by_the_router_itself() {
    let board = serve(|b| b).await;
    let js = get(board.addr, "/bgops/assets/board.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.body.contains("EventSource"));
    assert!(
        !js.body.contains("innerHTML"),
        "values are written as text only"
    );
    let css = get(board.addr, "/bgops/assets/board.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert!(!css.body.contains("http"), "no external asset");
}

#[tokio::test]
async fn sagas_filter_by_status_type_and_tenant() {
    let board = serve(|b| b).await;
    let s = seed(board.storage.as_ref()).await;
    let link = format!(r#"href="/bgops/sagas/{}""#, s.saga_id);
    for (query, shown) in [
        ("", true),
        ("?status=compensation_failed", true),
        ("?status=running", false),
        ("?type=order", true),
        ("?type=refund", false),
        ("?tenant=acme", true),
        ("?tenant=globex", false),
        ("?status=&type=&tenant=", true),
    ] {
        let page = get(board.addr, &format!("/bgops/sagas{query}")).await;
        assert_eq!(page.status, 200, "{query}: {}", page.body);
        assert_eq!(page.body.contains(&link), shown, "{query}: {}", page.body);
    }
    let bad = get(board.addr, "/bgops/sagas?status=bogus").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("unknown saga status"), "{}", bad.body);
}

#[tokio::test]
async fn a_saga_page_shows_steps_and_the_timeline_with_compensations_and_errors() {
    let board = serve(|b| b).await;
    let s = seed(board.storage.as_ref()).await;
    let page = get(board.addr, &format!("/bgops/sagas/{}", s.saga_id)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    let types: Vec<&str> = body
        .split(r#"data-type=""#)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "created",
            "step_started",
            "step_succeeded",
            "step_failed",
            "compensating",
            "compensation_failed",
            "finished"
        ]
    );
    assert!(body.contains("card declined"), "{body}");
    assert!(body.contains("inventory service down"), "{body}");
    assert!(body.contains("release_inventory"), "{body}");
    assert!(
        body.contains(r#"class="badge compensation_failed""#),
        "{body}"
    );
    assert!(
        body.contains(&format!("/bgops/live/sagas/{}?from=7", s.saga_id)),
        "{body}"
    );
    let missing = get(board.addr, "/bgops/sagas/nope").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn stored_text_is_escaped() {
    let board = serve(|b| b).await;
    let saga = SagaWorkflow::new(
        "<b>t</b>",
        "<script>alert(1)</script>",
        vec![],
        time::OffsetDateTime::now_utc(),
    );
    let mut saga = saga;
    saga.status = SagaStatus::Pending;
    board.storage.create_saga(&saga, None, &[]).await.unwrap();
    for path in [
        "/bgops/sagas".to_owned(),
        format!("/bgops/sagas/{}", saga.saga_id),
        "/bgops".to_owned(),
    ] {
        let page = get(board.addr, &path).await;
        assert!(
            !page.body.contains("<script>alert"),
            "{path}: {}",
            page.body
        );
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn tasks_by_queue_and_status_and_a_task_with_its_attempts() {
    let board = serve(|b| b).await;
    let s = seed(board.storage.as_ref()).await;
    let failed = get(board.addr, "/bgops/tasks?queue=emails&status=failed").await;
    assert_eq!(failed.status, 200);
    assert!(failed.body.contains(&s.failed_task), "{}", failed.body);
    assert!(!failed.body.contains(&s.pending_task), "{}", failed.body);
    let other = get(board.addr, "/bgops/tasks?queue=sms").await;
    assert!(other.body.contains("No tasks match."), "{}", other.body);
    let task = get(board.addr, &format!("/bgops/tasks/{}", s.failed_task)).await;
    assert_eq!(task.status, 200);
    assert!(task.body.contains("worker-1"), "{}", task.body);
    assert!(
        task.body.contains("mailbox does not exist"),
        "{}",
        task.body
    );
    assert!(!task.body.contains("csrf"), "read-only: no action forms");
    assert_eq!(
        get(board.addr, "/bgops/tasks?status=done").await.status,
        400
    );
    assert_eq!(get(board.addr, "/bgops/tasks/nope").await.status, 404);
}

#[tokio::test]
async fn idempotency_records_are_looked_up_by_tenant_and_key() {
    let board = serve(|b| b).await;
    let s = seed(board.storage.as_ref()).await;
    let found = get(
        board.addr,
        &format!("/bgops/keys?tenant={}&key={}", s.tenant, s.key),
    )
    .await;
    assert_eq!(found.status, 200);
    assert!(found.body.contains(r#"id="record""#), "{}", found.body);
    assert!(found.body.contains("create_order"), "{}", found.body);
    assert!(
        found.body.contains(r#"class="badge completed""#),
        "{}",
        found.body
    );
    let other_tenant = get(
        board.addr,
        &format!("/bgops/keys?tenant=globex&key={}", s.key),
    )
    .await;
    assert!(
        other_tenant.body.contains(r#"id="not-found""#),
        "{}",
        other_tenant.body
    );
    let bad = get(board.addr, "/bgops/keys?tenant=acme&key=a%20b").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn the_read_only_board_has_no_write_routes() {
    let board = serve(|b| b).await;
    let s = seed(board.storage.as_ref()).await;
    let post = request(
        board.addr,
        "POST",
        &format!("/bgops/tasks/{}/retry", s.failed_task),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "csrf=x",
    )
    .await;
    assert!(post.status == 404 || post.status == 405, "{}", post.status);
    let task = board
        .storage
        .get_task(&s.failed_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, bgops_core::TaskStatus::Failed);
}

#[tokio::test]
async fn an_unreachable_store_shows_on_the_overview_and_fails_other_pages_with_503() {
    use std::sync::Arc;

    use bgops_storage::testing::decorators::{FailingStorage, Fault};

    let store = Arc::new(FailingStorage::failing(Arc::new(
        bgops_memory::MemoryStorage::new(),
    )));
    let addr = crate::support::serve_on(store.clone(), |b| b).await;
    store.hook().fail_everything(Fault::Unavailable);
    let overview = get(addr, "/bgops").await;
    assert_eq!(
        overview.status, 200,
        "the overview is where to look when the store is down"
    );
    assert!(overview.body.contains(">unreachable<"), "{}", overview.body);
    assert!(
        overview.body.contains("unavailable"),
        "the error is shown: {}",
        overview.body
    );
    let sagas = get(addr, "/bgops/sagas").await;
    assert_eq!(sagas.status, 503, "{}", sagas.body);
    store.hook().heal();
    let overview = get(addr, "/bgops").await;
    assert!(overview.body.contains(">healthy<"), "{}", overview.body);
}

#[tokio::test]
async fn the_board_works_unnested_too() {
    use std::sync::Arc;

    let storage: Arc<dyn bgops_storage::Storage> = Arc::new(bgops_memory::MemoryStorage::new());
    let app = bgops_board::router(storage);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"href="/sagas""#), "{}", page.body);
    assert!(
        page.body.contains(r#"src="/assets/board.js""#),
        "{}",
        page.body
    );
}
