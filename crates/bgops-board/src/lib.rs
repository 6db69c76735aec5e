//! # bgops-board
//!
//! A web board for the people who run bgops: an axum [`Router`] that a service nests
//! under a path of its choice.
//!
//! ```no_run
//! # async fn demo(storage: std::sync::Arc<dyn bgops_storage::Storage>) {
//! let app = axum::Router::new()
//!     // ... the service's own routes ...
//!     .nest("/bgops", bgops_board::router(storage));
//! # let _: axum::Router = app;
//! # }
//! ```
//!
//! | page | what it shows |
//! |---|---|
//! | `/` | counts of records, sagas and tasks by status, store health and latency, the latest sagas; live over SSE |
//! | `/sagas` | sagas filtered by status, type and tenant |
//! | `/sagas/{id}` | a saga's steps and its timeline of events (steps, retries, compensations, errors); new events appear live |
//! | `/tasks` | tasks by queue and status; `/tasks/{id}` a task and its attempts |
//! | `/keys` | an idempotency record looked up by tenant and key |
//! | `/live/overview`, `/live/sagas/{id}` | the SSE streams the pages use (the store is polled once a second per stream) |
//!
//! Everything is server-rendered HTML (maud, which escapes every value) with one small
//! script and one stylesheet served by the router itself: no CDN, works offline, and a
//! strict `Content-Security-Policy` (`'self'` only).
//!
//! ## Read-only unless asked
//!
//! [`router`] is read-only: no route changes anything. [`Board::write_mode`] adds the
//! retry and delete buttons of tasks (`POST /tasks/{id}/retry`, `POST /tasks/{id}/delete`),
//! each protected against cross-site requests by a per-board CSRF token in the form plus a
//! same-origin check (`Sec-Fetch-Site` / `Origin`). The board has no login of its own:
//! mount it behind the service's authentication.

mod assets;
mod csrf;
mod error;
mod live;
mod pages;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use bgops_storage::Storage;

pub use error::BoardError;

/// The board's configuration; [`Board::into_router`] builds the [`Router`].
#[derive(Clone)]
pub struct Board {
    storage: Arc<dyn Storage>,
    write: bool,
    poll: Duration,
    page_size: usize,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("backend", &self.storage.backend_name())
            .field("write", &self.write)
            .field("poll", &self.poll)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// The read-only board over `storage`, to `.nest("/bgops", …)` in a service.
pub fn router(storage: Arc<dyn Storage>) -> Router {
    Board::new(storage).into_router()
}

impl Board {
    /// A read-only board polling the store once a second for its live streams.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            write: false,
            poll: Duration::from_secs(1),
            page_size: 50,
        }
    }

    /// Turns on the write actions (retry and delete a task), behind CSRF protection.
    pub fn write_mode(mut self, on: bool) -> Self {
        self.write = on;
        self
    }

    /// How often the live streams poll the store (default 1 s, at least 50 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(50));
        self
    }

    /// Rows per list page (default 50, 1 to 500).
    pub fn page_size(mut self, rows: usize) -> Self {
        self.page_size = rows.clamp(1, 500);
        self
    }

    /// The router.
    pub fn into_router(self) -> Router {
        let write = self.write;
        let state = AppState {
            storage: self.storage,
            csrf: write.then(csrf::Csrf::new),
            poll: self.poll,
            page_size: self.page_size,
        };
        let mut router = Router::new()
            .route("/", get(pages::overview::page))
            .route("/sagas", get(pages::sagas::list))
            .route("/sagas/{id}", get(pages::sagas::show))
            .route("/tasks", get(pages::tasks::list))
            .route("/tasks/{id}", get(pages::tasks::show))
            .route("/keys", get(pages::keys::page))
            .route("/live/overview", get(live::overview))
            .route("/live/sagas/{id}", get(live::saga))
            .route("/assets/board.js", get(assets::script))
            .route("/assets/board.css", get(assets::style));
        if write {
            router = router
                .route("/tasks/{id}/retry", post(pages::tasks::retry))
                .route("/tasks/{id}/delete", post(pages::tasks::delete));
        }
        router
            .layer(axum::middleware::map_response(view::security_headers))
            .with_state(state)
    }
}

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) storage: Arc<dyn Storage>,
    /// Present in write mode only.
    pub(crate) csrf: Option<csrf::Csrf>,
    pub(crate) poll: Duration,
    pub(crate) page_size: usize,
}
