//! The execution stream: the same [`SagaEvent`]s the journal stores, ready to be sent as
//! server-sent events ([`SagaEvent::to_sse`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bgops_core::SagaEvent;
use futures::Stream;
use futures::channel::mpsc;

/// The events of one execution, ending with
/// [`SagaEventKind::Finished`](bgops_core::SagaEventKind::Finished) or
/// [`SagaEventKind::Aborted`](bgops_core::SagaEventKind::Aborted). The saga runs in its own task: dropping the stream does not
/// stop it.
#[derive(Debug)]
pub struct SagaEventStream {
    pub(crate) rx: mpsc::UnboundedReceiver<SagaEvent>,
}

impl SagaEventStream {
    /// The next event, or `None` after the last one (without importing `StreamExt`).
    pub async fn recv(&mut self) -> Option<SagaEvent> {
        futures::StreamExt::next(self).await
    }
}

impl Stream for SagaEventStream {
    type Item = SagaEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SagaEvent>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}
