//! Write mode: the task actions and their CSRF protection.

use bgops_core::TaskStatus;
use bgops_storage::TaskStore as _;

use crate::support::{get, request, seed, serve};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// The CSRF token embedded in a page's forms.
fn token(page: &str) -> String {
    let at =
        page.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn retry_needs_the_token_and_the_same_origin() {
    let board = serve(|b| b.write_mode(true)).await;
    let s = seed(board.storage.as_ref()).await;
    let page = get(board.addr, &format!("/bgops/tasks/{}", s.failed_task)).await;
    assert!(page.body.contains(r#"id="retry""#), "{}", page.body);
    let csrf = token(&page.body);
    let path = format!("/bgops/tasks/{}/retry", s.failed_task);
    let status = |storage: &std::sync::Arc<bgops_memory::MemoryStorage>, id: &str| {
        let id = id.to_owned();
        let storage = std::sync::Arc::clone(storage);
        async move { storage.get_task(&id).await.unwrap().unwrap().status }
    };

    // No token, a wrong token, a cross-site request with the right token: refused.
    for (headers, body) in [
        (vec![FORM], String::new()),
        (vec![FORM], "csrf=wrong".to_owned()),
        (
            vec![FORM, ("Origin", "http://evil.example")],
            format!("csrf={csrf}"),
        ),
        (
            vec![FORM, ("Sec-Fetch-Site", "cross-site")],
            format!("csrf={csrf}"),
        ),
    ] {
        let refused = request(board.addr, "POST", &path, &headers, &body).await;
        assert_eq!(refused.status, 403, "{headers:?} {body}: {}", refused.body);
        assert_eq!(
            status(&board.storage, &s.failed_task).await,
            TaskStatus::Failed
        );
    }

    let origin = format!("http://{}", board.addr);
    let done = request(
        board.addr,
        "POST",
        &path,
        &[FORM, ("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.header("location"),
        Some(format!("/bgops/tasks/{}", s.failed_task).as_str())
    );
    assert_eq!(
        status(&board.storage, &s.failed_task).await,
        TaskStatus::Pending
    );
    // Retrying a pending task is a conflict, not a silent success.
    let again = request(board.addr, "POST", &path, &[FORM], &format!("csrf={csrf}")).await;
    assert_eq!(again.status, 409, "{}", again.body);
}

#[tokio::test]
async fn delete_removes_the_task() {
    let board = serve(|b| b.write_mode(true)).await;
    let s = seed(board.storage.as_ref()).await;
    let page = get(board.addr, &format!("/bgops/tasks/{}", s.pending_task)).await;
    assert!(
        !page.body.contains(r#"id="retry""#),
        "a pending task has no retry button"
    );
    let csrf = token(&page.body);
    let path = format!("/bgops/tasks/{}/delete", s.pending_task);
    let done = request(board.addr, "POST", &path, &[FORM], &format!("csrf={csrf}")).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        board
            .storage
            .get_task(&s.pending_task)
            .await
            .unwrap()
            .is_none()
    );
    let again = request(board.addr, "POST", &path, &[FORM], &format!("csrf={csrf}")).await;
    assert_eq!(again.status, 404);
}
