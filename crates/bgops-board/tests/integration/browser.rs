//! The board in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! by fantoccini. Opens the overview, watches a new saga appear live, clicks through to
//! its timeline and watches its compensation arrive live.
//!
//! Needs `chromium` and `chromedriver` on `PATH` (Debian: `apt-get install chromium
//! chromium-driver`, which `.ci/run` does); skipped with a notice when they are missing
//! outside CI, a failure in CI. With
//! `BGOPS_SCREENSHOTS=<dir>` it saves `board-overview.png` and `board-saga.png` there.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaEvent, SagaEventKind, SagaStatus, SagaStep, SagaStepStatus, SagaWorkflow};
use bgops_storage::SagaStore as _;
use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::support::serve;

/// A program on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn event(id: &Arc<str>, fence: u64, status: SagaStatus, kind: SagaEventKind) -> SagaEvent {
    SagaEvent {
        saga_id: Arc::clone(id),
        at: time::OffsetDateTime::now_utc(),
        fence,
        status,
        kind,
    }
}

fn screenshot(name: &str, png: &[u8]) {
    if let Some(dir) = std::env::var_os("BGOPS_SCREENSHOTS") {
        let path = PathBuf::from(dir).join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("saved {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_appears_live_and_its_compensation_shows_on_its_timeline() {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are missing: .ci/run installs them in CI"
        );
        eprintln!(
            "SKIPPED board browser test: install chromium and chromedriver \
             (Debian: apt-get install chromium chromium-driver)"
        );
        return;
    };
    let port = free_port();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860"],
        }
    });
    let caps = caps.as_object().unwrap().clone();
    // chromedriver takes a moment to listen: retry the session for up to 10 s.
    let mut client = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let client = client.expect("a WebDriver session within 10 s");
    let board = serve(|b| b).await;
    // Something to look at besides the new saga.
    crate::support::seed(board.storage.as_ref()).await;
    let base = format!("http://{}/bgops", board.addr);
    let wait = || client.wait().at_most(Duration::from_secs(10));

    // The overview follows its live stream.
    client.goto(&base).await.unwrap();
    wait()
        .for_element(Locator::Css("#live-state.on"))
        .await
        .unwrap();

    // A service starts a saga: it appears on the open page without a reload.
    let now = time::OffsetDateTime::now_utc();
    let steps = vec![
        SagaStep::new(
            "reserve inventory",
            "reserve_inventory",
            json!({"sku": "A1"}),
        )
        .with_compensation("release_inventory", json!({})),
        SagaStep::new("charge card", "charge_card", json!({"amount": 100})),
    ];
    let saga = SagaWorkflow::new("acme", "order", steps, now);
    let id: Arc<str> = Arc::from(saga.saga_id.as_str());
    board
        .storage
        .create_saga(
            &saga,
            None,
            &[event(&id, 0, SagaStatus::Pending, SagaEventKind::Created)],
        )
        .await
        .unwrap();
    let link = wait()
        .for_element(Locator::LinkText(&saga.saga_id))
        .await
        .unwrap();
    wait()
        .for_element(Locator::Css(r#"[data-k="sagas.pending"]"#))
        .await
        .unwrap();
    let pending = client
        .find(Locator::Css(r#"[data-k="sagas.pending"]"#))
        .await
        .unwrap();
    assert_eq!(pending.text().await.unwrap(), "1");
    let failed = client
        .find(Locator::Css(r#"[data-k="sagas.compensation_failed"]"#))
        .await
        .unwrap();
    assert_eq!(failed.text().await.unwrap(), "1");
    screenshot("board-overview.png", &client.screenshot().await.unwrap());

    // Through to its timeline (found again: the live list is re-rendered on each update).
    drop(link);
    let link = client.find(Locator::LinkText(&saga.saga_id)).await.unwrap();
    link.click().await.unwrap();
    wait().for_element(Locator::Css("#timeline")).await.unwrap();
    wait()
        .for_element(Locator::Css("#live-state.on"))
        .await
        .unwrap();
    let rows = client
        .find_all(Locator::Css("#timeline tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    // The executor runs it: the first step succeeds, the second fails, the first is
    // compensated. Each event appears live.
    let mut leased = board
        .storage
        .acquire_saga_lease(&saga.saga_id, "executor-1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let fence = leased.lease.as_ref().unwrap().fence;
    leased.status = SagaStatus::Compensated;
    leased.steps[0].status = SagaStepStatus::Compensated;
    leased.steps[0].attempts = 1;
    leased.steps[0].compensation_attempts = 1;
    leased.steps[0].compensated_at = Some(time::OffsetDateTime::now_utc());
    leased.steps[1].status = SagaStepStatus::Failed;
    leased.steps[1].attempts = 1;
    leased.steps[1].error = Some("card declined".into());
    leased.error = Some("card declined".into());
    leased.lease = None;
    let history = [
        event(&id, fence, SagaStatus::Running, SagaEventKind::Resumed),
        event(
            &id,
            fence,
            SagaStatus::Running,
            SagaEventKind::StepStarted {
                step_index: 0,
                name: "reserve inventory".into(),
                attempt: 1,
            },
        ),
        event(
            &id,
            fence,
            SagaStatus::Running,
            SagaEventKind::StepSucceeded {
                step_index: 0,
                name: "reserve inventory".into(),
                output: json!({"held": 1}),
            },
        ),
        event(
            &id,
            fence,
            SagaStatus::Running,
            SagaEventKind::StepStarted {
                step_index: 1,
                name: "charge card".into(),
                attempt: 1,
            },
        ),
        event(
            &id,
            fence,
            SagaStatus::Running,
            SagaEventKind::StepFailed {
                step_index: 1,
                name: "charge card".into(),
                error: "card declined".into(),
            },
        ),
        event(
            &id,
            fence,
            SagaStatus::Compensating,
            SagaEventKind::Compensating {
                reason: "step charge card failed: card declined".into(),
            },
        ),
        event(
            &id,
            fence,
            SagaStatus::Compensating,
            SagaEventKind::CompensationStarted {
                step_index: 0,
                name: "reserve inventory".into(),
                attempt: 1,
            },
        ),
        event(
            &id,
            fence,
            SagaStatus::Compensating,
            SagaEventKind::StepCompensated {
                step_index: 0,
                name: "reserve inventory".into(),
            },
        ),
        event(&id, fence, SagaStatus::Compensated, SagaEventKind::Finished),
    ];
    board
        .storage
        .save_saga(&leased, fence, &history, None)
        .await
        .unwrap();
    wait()
        .for_element(Locator::Css(r#"#timeline tr[data-type="finished"]"#))
        .await
        .unwrap();
    let compensated = client
        .find(Locator::Css(
            r#"#timeline tr[data-type="step_compensated"]"#,
        ))
        .await
        .unwrap();
    assert!(
        compensated
            .text()
            .await
            .unwrap()
            .contains("0 reserve inventory")
    );
    let failed = client
        .find(Locator::Css(r#"#timeline tr[data-type="step_failed"]"#))
        .await
        .unwrap();
    assert!(failed.text().await.unwrap().contains("card declined"));
    let status = client.find(Locator::Css("#saga-status")).await.unwrap();
    assert_eq!(status.text().await.unwrap(), "compensated");
    assert_eq!(
        client
            .find_all(Locator::Css("#timeline tbody tr"))
            .await
            .unwrap()
            .len(),
        10
    );

    // A reload shows the same from the store (steps included).
    client.refresh().await.unwrap();
    wait()
        .for_element(Locator::Css(
            r#"#steps tr[data-step="0"] .badge.compensated"#,
        ))
        .await
        .unwrap();
    client.set_window_size(1280, 1180).await.unwrap();
    screenshot("board-saga.png", &client.screenshot().await.unwrap());
    client.close().await.unwrap();
}
