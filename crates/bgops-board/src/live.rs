//! The live streams (server-sent events), each polling the store once per interval:
//! `/live/overview` sends the overview's snapshot when it changes, `/live/sagas/{id}`
//! sends the saga's new history events — the one typed `SagaEvent` as `data:` JSON, with
//! its position in the history as the SSE `id`, so a reconnecting browser
//! (`Last-Event-ID`) misses nothing and sees nothing twice.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use bgops_storage::Storage;
use futures::Stream;
use futures::stream;
use tokio::time::{Interval, MissedTickBehavior};

use crate::pages::overview::{Snapshot, snapshot};
use crate::{AppState, BoardError};

fn ticker(state: &AppState) -> Interval {
    let mut ticker = tokio::time::interval(state.poll);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// An event whose data is `value` as JSON (a plain-data value always serializes; the
/// fallback is a comment, which browsers ignore).
fn json_event<T: serde::Serialize>(value: &T) -> Event {
    Event::default()
        .json_data(value)
        .unwrap_or_else(|_| Event::default().comment("unserializable"))
}

/// Asks reverse proxies (nginx) not to buffer the stream, so events arrive as they are
/// sent.
const NO_BUFFERING: [(&str, &str); 1] = [("x-accel-buffering", "no")];

pub(crate) async fn overview(
    State(state): State<AppState>,
) -> (
    [(&'static str, &'static str); 1],
    Sse<impl Stream<Item = Result<Event, Infallible>>>,
) {
    struct Poll {
        storage: Arc<dyn Storage>,
        ticker: Interval,
        last: Option<Snapshot>,
    }
    let poll = Poll {
        storage: Arc::clone(&state.storage),
        ticker: ticker(&state),
        last: None,
    };
    let events = stream::unfold(poll, |mut poll| async move {
        loop {
            poll.ticker.tick().await;
            let snap = snapshot(poll.storage.as_ref()).await;
            if poll.last.as_ref() != Some(&snap) {
                let event = json_event(&snap).event("overview");
                poll.last = Some(snap);
                return Some((Ok(event), poll));
            }
        }
    });
    (
        NO_BUFFERING,
        Sse::new(events).keep_alive(KeepAlive::default()),
    )
}

pub(crate) async fn saga(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<
    (
        [(&'static str, &'static str); 1],
        Sse<impl Stream<Item = Result<Event, Infallible>>>,
    ),
    BoardError,
> {
    struct Poll {
        storage: Arc<dyn Storage>,
        id: String,
        ticker: Interval,
        seen: usize,
        pending: VecDeque<Event>,
        gone: bool,
    }
    if state.storage.get_saga(&id).await?.is_none() {
        return Err(BoardError::NotFound { kind: "saga", id });
    }
    // Where to start: after the last event the browser saw (on reconnect), else after the
    // events the page already showed.
    let seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("from").map(String::as_str))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let poll = Poll {
        storage: Arc::clone(&state.storage),
        id,
        ticker: ticker(&state),
        seen,
        pending: VecDeque::new(),
        gone: false,
    };
    let events = stream::unfold(poll, |mut poll| async move {
        loop {
            if let Some(event) = poll.pending.pop_front() {
                return Some((Ok(event), poll));
            }
            if poll.gone {
                return None;
            }
            poll.ticker.tick().await;
            match poll.storage.get_saga_history(&poll.id).await {
                Ok(history) => {
                    for (i, event) in history.iter().enumerate().skip(poll.seen) {
                        poll.pending
                            .push_back(json_event(event).id((i + 1).to_string()));
                    }
                    poll.seen = poll.seen.max(history.len());
                    if history.is_empty()
                        && matches!(poll.storage.get_saga(&poll.id).await, Ok(None))
                    {
                        poll.pending
                            .push_back(Event::default().event("gone").data(poll.id.clone()));
                        poll.gone = true;
                    }
                }
                Err(error) => {
                    // The store is down or failing: say so, keep polling.
                    poll.pending.push_back(
                        Event::default()
                            .event("store-error")
                            .data(error.to_string()),
                    );
                }
            }
        }
    });
    Ok((
        NO_BUFFERING,
        Sse::new(events).keep_alive(KeepAlive::default()),
    ))
}
