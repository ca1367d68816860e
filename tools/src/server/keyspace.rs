//! The commands that look at the whole keyspace at once: KEYS and RANDOMKEY, plus
//! TIME. The library iterates only as a whole (`Db::for_each`, values included), so
//! each call is one full pass on an admin helper thread while the core keeps serving:
//! fine for the debugging and tooling they are for, as in Redis, not for a hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::frame::{Frame, db_error, err};
use super::scan::glob_match;
use super::shared::CoreCtx;

/// KEYS pattern: every key that matches, in no particular order.
pub async fn keys(ctx: &CoreCtx, pattern: Bytes) -> Frame {
    let db = ctx.db().clone();
    let found = ctx.shared.admin.run(move || {
        let mut keys = Vec::new();
        db.for_each(|key, _| {
            if glob_match(&pattern, key) {
                keys.push(Frame::bulk(key.to_vec()));
            }
        })
        .map(|()| keys)
    });
    match found.await {
        Some(Ok(keys)) => Frame::Array(keys),
        Some(Err(e)) => db_error(e),
        None => err("the server is shutting down"),
    }
}

/// RANDOMKEY: one key drawn uniformly (a reservoir of one over a full pass), or nil.
pub async fn random_key(ctx: &CoreCtx) -> Frame {
    let db = ctx.db().clone();
    let mut next = rng();
    let drawn = ctx.shared.admin.run(move || {
        let (mut chosen, mut seen) = (None, 0u64);
        db.for_each(|key, _| {
            seen += 1;
            if next() % seen == 0 {
                chosen = Some(key.to_vec());
            }
        })
        .map(|()| chosen)
    });
    match drawn.await {
        Some(Ok(key)) => key.map_or(Frame::Null, Frame::bulk),
        Some(Err(e)) => db_error(e),
        None => err("the server is shutting down"),
    }
}

/// TIME: the server's clock as [seconds, microseconds].
pub fn time() -> Frame {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Frame::Array(vec![
        Frame::text(now.as_secs().to_string()),
        Frame::text(now.subsec_micros().to_string()),
    ])
}

/// A splitmix64 stream seeded from the clock and a counter (draws need no more).
fn rng() -> impl FnMut() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos ^ CALLS.fetch_add(1, Ordering::Relaxed).rotate_left(32);
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
