//! One instant across every core, for checkpoints and snapshots (`core/hold.rs` has
//! the cores' side). Every core is held (no background step changes a file; for a
//! checkpoint, its large open extents are then sealed while writes go on), the batch
//! gate is taken whole (no batch is half applied), every core is paused (writes wait;
//! every store flushed, listed and, for a snapshot, pinned), then resumed, and the
//! gate opens: every core was paused at once, so the listings (and the cuts) are one
//! state.
//! An acknowledged write on one core cannot be in it while an earlier acknowledged
//! write on another is not: the earlier one's answer waits for the resume, which comes
//! after every core paused.

use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::Inner;
use crate::core::{Op, ReplyTo, StoreFiles};
use crate::error::Result;

/// Every core held (its background work still) until released, or dropped.
pub(super) struct Held<'a> {
    inner: &'a Inner,
    released: bool,
}

/// What [`at_one_instant`] saw.
pub(super) struct AtOneInstant<'a> {
    pub(super) held: Held<'a>,
    /// Each core's stores and their files.
    pub(super) listed: Vec<Vec<StoreFiles>>,
    /// How long writes waited.
    pub(super) paused: Duration,
}

/// Holds every core and pauses them at once; pins snapshot `pin`'s cuts if given.
/// The cores are resumed (writes go on) and still held when it returns.
pub(super) async fn at_one_instant(inner: &Inner, pin: Option<u64>) -> Result<AtOneInstant<'_>> {
    let held = Held::all(inner).await?;
    if pin.is_none() {
        // A checkpoint links the open extents this seals, instead of copying them.
        on_every_core(inner, Op::Seal).await?;
    }
    let gate = inner.batch_gate.write_arc().await;
    let paused_at = Instant::now();
    let (resumes, receivers): (Vec<_>, Vec<_>) =
        (0..inner.cores.len()).map(|_| oneshot::channel()).unzip();
    let calls = (receivers.into_iter().enumerate())
        .map(|(core, resume)| inner.call_core(core, 0, move |reply| Op::Pause(pin, resume, reply)));
    let listed: Result<Vec<_>> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect();
    drop(resumes); // every core's writes go on
    let paused = paused_at.elapsed();
    drop(gate);
    match listed {
        Ok(listed) => Ok(AtOneInstant {
            held,
            listed,
            paused,
        }),
        Err(e) => {
            if let Some(id) = pin {
                // Pinned on some cores, maybe: unpinning lets go of every core's hold.
                let _ = on_every_core(inner, |reply| Op::Unpin(id, reply)).await;
                held.keep();
            }
            Err(e)
        }
    }
}

/// Sends each core the request `op` makes, all in flight together; their answers.
pub(super) async fn on_every_core<T: Send + 'static>(
    inner: &Inner,
    op: impl Fn(ReplyTo<T>) -> Op,
) -> Result<Vec<T>> {
    let calls = (0..inner.cores.len()).map(|core| inner.call_core(core, 0, &op));
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect()
}

impl<'a> Held<'a> {
    async fn all(inner: &'a Inner) -> Result<Held<'a>> {
        let held = Held {
            inner,
            released: false,
        };
        on_every_core(inner, Op::Hold).await?;
        Ok(held)
    }

    /// Lets every core's background work go on.
    pub(super) async fn release(mut self) -> Result<()> {
        self.released = true;
        on_every_core(self.inner, Op::Release).await.map(drop)
    }

    /// Leaves the cores held: whoever keeps them lets go later (a snapshot, when
    /// dropped).
    pub(super) fn keep(mut self) {
        self.released = true;
    }
}

impl Drop for Held<'_> {
    /// Anything that failed half way lets every core go on (a core also lets go when
    /// it shuts down).
    fn drop(&mut self) {
        if !self.released {
            let release = on_every_core(self.inner, Op::Release);
            let _ = futures_lite::future::block_on(release);
        }
    }
}
