//! The page layout, the mount-path extractor, shared bits of markup and the security
//! headers every response carries.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, Response};
use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The path the board is mounted under (`/bgops` for `.nest("/bgops", …)`, empty when it
/// is the whole app), from the request's original URI, so links work wherever it is
/// nested.
#[derive(Debug, Clone)]
pub(crate) struct Base(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let inner = parts.uri.path();
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(inner, |o| o.0.path());
        let base = original
            .strip_suffix(inner)
            .or_else(|| (inner == "/").then(|| original.trim_end_matches('/')))
            .unwrap_or("");
        Ok(Self(base.to_owned()))
    }
}

impl Base {
    /// A link to `path` (starting with `/`) inside the board.
    pub(crate) fn to(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// The page frame: navigation, stylesheet and script; `live` is the SSE stream the
/// script follows, if any.
pub(crate) fn layout(base: &Base, title: &str, live: Option<&str>, body: &Markup) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · bgops" }
                link rel="stylesheet" href=(base.to("/assets/board.css"));
                script src=(base.to("/assets/board.js")) defer {}
            }
            body data-base=(base.0) data-live=[live] {
                header {
                    a.brand href=(base.to("/")) { "bgops" }
                    nav {
                        a href=(base.to("/")) { "Overview" }
                        a href=(base.to("/sagas")) { "Sagas" }
                        a href=(base.to("/tasks")) { "Tasks" }
                        a href=(base.to("/keys")) { "Idempotency keys" }
                    }
                    span #live-state title="live updates" {}
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(page.into_string())
}

/// A bare error page (no stylesheet: it is rendered without the request's mount path).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (status.as_u16()) " · bgops" } }
            body {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                p.error { (message) }
            }
        }
    };
    Html(page.into_string())
}

/// A status as a coloured badge (the class is the status name).
pub(crate) fn badge(status: &str) -> Markup {
    html! { span class={ "badge " (status) } data-status=(status) { (status) } }
}

/// RFC 3339, as the store wrote it.
pub(crate) fn time(at: OffsetDateTime) -> String {
    // Milliseconds are precise enough to order events by eye; nanoseconds are noise.
    let at = at
        .replace_nanosecond(u32::from(at.millisecond()) * 1_000_000)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// An optional time, `–` when absent.
pub(crate) fn opt_time(at: Option<OffsetDateTime>) -> String {
    at.map_or_else(|| "–".to_owned(), time)
}

/// Headers on every response: a strict CSP (only the board's own script, style and
/// streams), no sniffing, no framing, no referrer to other sites.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `None` for an absent or blank query parameter.
pub(crate) fn param(value: Option<&String>) -> Option<&str> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty())
}
