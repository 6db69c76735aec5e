//! The response future of [`IdempotencyService`](crate::IdempotencyService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use futures::future::BoxFuture;
use http::Response;

/// The future returned by [`IdempotencyService`](crate::IdempotencyService). Boxed because
/// the work it does (store round trips, buffering, lease renewal) is an `async` block.
pub struct ResponseFuture<E> {
    inner: BoxFuture<'static, Result<Response<Body>, E>>,
}

impl<E> ResponseFuture<E> {
    pub(crate) fn new(inner: BoxFuture<'static, Result<Response<Body>, E>>) -> Self {
        Self { inner }
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}
