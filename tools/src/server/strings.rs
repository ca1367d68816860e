//! The key commands: GET, SET, SETNX, GETSET, MGET, MSET, DEL, UNLINK, EXISTS, INCR,
//! DECR, INCRBY, DECRBY, INCRBYFLOAT, APPEND, STRLEN, GETRANGE, SETRANGE, TYPE. SET's
//! expiry options are parsed in `expiry`; a new value from SET, SETNX or GETSET drops
//! the key's expiry (unless KEEPTTL), one from INCR, DECR, INCRBYFLOAT, APPEND or
//! SETRANGE keeps it, as in Redis.
//!
//! Each runs through the core's `Local` handle: in place for keys this core owns,
//! across the library's queues for the others. Every read-modify-write (SET with NX,
//! XX or GET, SETNX, GETSET, the counters, APPEND, SETRANGE, and DEL's count) is one
//! `Local::update`, atomic on the key's core. The decision closure cannot return a
//! reply, so the reply is computed again here from the value the update saw, with the
//! same pure function: both always agree.
//!
//! Commands over several keys (MGET, MSET, DEL, EXISTS) run their keys concurrently,
//! at most `Keys::fanout` at a time; each key is atomic, the command as a whole is not.

use std::rc::Rc;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use ringkv::{PutOptions, Update};

use super::commands::{Cmd, wrong_arity};
use super::expiry::{Condition, ExpiryAction, OptionsOf, parse_options, resolve};
use super::float::{self, FloatError};
use super::frame::{Frame, db_error, err, not_an_integer};
use super::keys::Keys;
use super::resp::parse_i64;
use super::shared::CoreCtx;

/// Runs `calls` with at most `fanout` in flight; their outputs in order.
async fn bounded<F: Future>(fanout: usize, calls: impl Iterator<Item = F>) -> Vec<F::Output> {
    stream::iter(calls).buffered(fanout).collect().await
}

/// Runs key command `cmd` (arity and authentication already checked).
pub async fn execute(ctx: Rc<CoreCtx>, cmd: Cmd, args: Vec<Bytes>) -> Frame {
    execute_on(&ctx, &ctx.local, cmd, args).await
}

/// [`execute`] through `kv`: the core's handle, or an EXEC's transaction.
pub async fn execute_on(ctx: &CoreCtx, kv: &impl Keys, cmd: Cmd, args: Vec<Bytes>) -> Frame {
    let key = &args[1];
    match cmd {
        Cmd::Get => ctx.answer_read(kv.get(key).await),
        Cmd::Set => set(ctx, kv, &args).await,
        Cmd::SetNx => match set_with(kv, key, &args[2], Condition::Nx, ExpiryAction::Clear).await {
            Ok(seen) => Frame::Integer(i64::from(seen.is_none())),
            Err(frame) => frame,
        },
        Cmd::GetSet => {
            match set_with(kv, key, &args[2], Condition::Always, ExpiryAction::Clear).await {
                Ok(seen) => Frame::optional(seen),
                Err(frame) => frame,
            }
        }
        Cmd::MGet => mget(ctx, kv, &args[1..]).await,
        Cmd::MSet => mset(kv, &args).await,
        Cmd::Del | Cmd::Unlink => del(kv, &args[1..]).await,
        Cmd::Exists => exists(kv, &args[1..]).await,
        Cmd::Incr => incr_by(kv, key, 1).await,
        Cmd::Decr => incr_by(kv, key, -1).await,
        Cmd::IncrBy => match parse_i64(&args[2]) {
            Some(delta) => incr_by(kv, key, delta).await,
            None => not_an_integer(),
        },
        Cmd::DecrBy => match parse_i64(&args[2]).map(i64::checked_neg) {
            Some(Some(delta)) => incr_by(kv, key, delta).await,
            Some(None) => err("decrement would overflow"),
            None => not_an_integer(),
        },
        Cmd::Append => append(kv, key, args[2].clone()).await,
        Cmd::StrLen => match kv.get(key).await {
            Ok(value) => Frame::Integer(value.map_or(0, |v| v.len() as i64)),
            Err(e) => db_error(e),
        },
        Cmd::GetRange => match (parse_i64(&args[2]), parse_i64(&args[3])) {
            (Some(start), Some(end)) => match kv.get(key).await {
                Ok(value) => {
                    let value = value.unwrap_or_default();
                    Frame::Bulk(value.slice(byte_range(value.len(), start, end)))
                }
                Err(e) => db_error(e),
            },
            _ => not_an_integer(),
        },
        Cmd::SetRange => set_range(kv, key, &args[2], args[3].clone()).await,
        Cmd::IncrByFloat => incr_by_float(kv, key, args[2].clone()).await,
        // Every key here holds a string.
        Cmd::Type => match kv.exists(key).await {
            Ok(true) => Frame::Simple("string"),
            Ok(false) => Frame::Simple("none"),
            Err(e) => db_error(e),
        },
        other => unreachable!("{other:?} is not a key command"),
    }
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT ts | PXAT ts | KEEPTTL].
async fn set(ctx: &CoreCtx, kv: &impl Keys, args: &[Bytes]) -> Frame {
    let (key, value) = (&args[1], &args[2]);
    let options = match parse_options(&args[3..], OptionsOf::Set) {
        Ok(options) => options,
        Err(frame) => return frame,
    };
    let now = i64::try_from(ctx.db().now_unix_ms()).unwrap_or(i64::MAX);
    let action = match resolve(&options.expiry, OptionsOf::Set, now, "set") {
        Ok(action) => action,
        Err(frame) => return frame,
    };
    let (condition, get) = (options.condition, options.get);
    if condition == Condition::Always
        && !get
        && let Some(put) = action.put_options()
    {
        let stored = match put == PutOptions::new() {
            true => kv.put(key, value).await,
            false => kv.put_with(key, value, &put).await,
        };
        return match stored {
            Ok(()) => Frame::ok(),
            Err(e) => db_error(e),
        };
    }
    match set_with(kv, key, value, condition, action).await {
        Ok(seen) if get => Frame::optional(seen),
        Ok(seen) if condition.allows(seen.as_deref()) => Frame::ok(),
        Ok(_) => Frame::Null,
        Err(frame) => frame,
    }
}

/// Stores `value` with `expiry` if `condition` allows it, atomically; returns the
/// value seen.
async fn set_with(
    kv: &impl Keys,
    key: &Bytes,
    value: &Bytes,
    condition: Condition,
    expiry: ExpiryAction,
) -> Result<Option<Bytes>, Frame> {
    let value = value.clone();
    kv.update(key, move |seen| {
        if condition.allows(seen) {
            expiry.store(value.to_vec())
        } else {
            Update::Keep
        }
    })
    .await
    .map_err(db_error)
}

/// The new value of a counter that holds `seen`, or the error to answer.
fn incremented(seen: Option<&[u8]>, delta: i64) -> Result<i64, Frame> {
    let current = match seen {
        None => 0,
        Some(v) => parse_i64(v).ok_or_else(not_an_integer)?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| err("increment or decrement would overflow"))
}

async fn incr_by(kv: &impl Keys, key: &Bytes, delta: i64) -> Frame {
    let result = kv
        .update(key, move |seen| match incremented(seen, delta) {
            Ok(n) => Update::Put(n.to_string().into_bytes()),
            Err(_) => Update::Keep,
        })
        .await;
    match result {
        Ok(seen) => match incremented(seen.as_deref(), delta) {
            Ok(n) => Frame::Integer(n),
            Err(frame) => frame,
        },
        Err(e) => db_error(e),
    }
}

/// INCRBYFLOAT key increment: Redis's `long double` sum (see `float`), stored as the
/// text Redis stores and answered as a bulk string.
async fn incr_by_float(kv: &impl Keys, key: &Bytes, incr: Bytes) -> Frame {
    let decide = incr.clone();
    let result = kv
        .update(key, move |seen| match float::incr_by_float(seen, &decide) {
            Ok(sum) => Update::Put(sum),
            Err(_) => Update::Keep,
        })
        .await;
    match result.map(|seen| float::incr_by_float(seen.as_deref(), &incr)) {
        Ok(Ok(sum)) => Frame::bulk(sum),
        Ok(Err(FloatError::NotAFloat)) => err("value is not a valid float"),
        Ok(Err(FloatError::NanOrInfinity)) => err("increment would produce NaN or Infinity"),
        Err(e) => db_error(e),
    }
}

async fn append(kv: &impl Keys, key: &Bytes, suffix: Bytes) -> Frame {
    let suffix_len = suffix.len();
    let result = kv
        .update(key, move |seen| {
            let mut value = Vec::with_capacity(seen.map_or(0, <[u8]>::len) + suffix.len());
            value.extend_from_slice(seen.unwrap_or_default());
            value.extend_from_slice(&suffix);
            Update::Put(value)
        })
        .await;
    match result {
        Ok(seen) => Frame::Integer((seen.map_or(0, |v| v.len()) + suffix_len) as i64),
        Err(e) => db_error(e),
    }
}

/// The bytes GETRANGE answers of a value of `len` bytes, as Redis 7.0 computes them:
/// negative offsets count from the end, then both are clamped into the value; an empty
/// range when the start falls after the end.
fn byte_range(len: usize, start: i64, end: i64) -> std::ops::Range<usize> {
    let len = len as i128;
    let (mut start, mut end) = (i128::from(start), i128::from(end));
    if start < 0 && end < 0 && start > end {
        return 0..0;
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0).min(len - 1);
    if start > end || len == 0 {
        return 0..0;
    }
    start as usize..end as usize + 1
}

/// Where SETRANGE's patch of `patch_len` bytes at `offset` ends (None for an empty
/// patch, which changes nothing), or Redis's error when that is past the largest value.
fn patch_end(offset: usize, patch_len: usize) -> Result<Option<usize>, Frame> {
    if patch_len == 0 {
        return Ok(None);
    }
    offset
        .checked_add(patch_len)
        .filter(|&end| end <= ringkv::VALUE_LEN_MAX)
        .map(Some)
        .ok_or_else(|| err("string exceeds maximum allowed size (proto-max-bulk-len)"))
}

/// The length SETRANGE answers for a value of `old_len` bytes and a patch ending at
/// `end` (computed without building the value).
fn patched_len(old_len: usize, end: Option<usize>) -> usize {
    end.map_or(old_len, |end| old_len.max(end))
}

/// What SETRANGE makes of `seen` (None: leave the key as it is) and the length it
/// answers, or the error to answer.
fn overwritten(
    seen: Option<&[u8]>,
    offset: usize,
    patch: &[u8],
) -> Result<(Option<Vec<u8>>, usize), Frame> {
    let old_len = seen.map_or(0, <[u8]>::len);
    let Some(end) = patch_end(offset, patch.len())? else {
        return Ok((None, old_len));
    };
    let mut value = seen.unwrap_or_default().to_vec();
    if value.len() < end {
        value.resize(end, 0);
    }
    value[offset..end].copy_from_slice(patch);
    Ok((Some(value), patched_len(old_len, Some(end))))
}

/// SETRANGE key offset value: overwrites part of the value (zero-padded), keeping its
/// expiry; answers the new length.
async fn set_range(kv: &impl Keys, key: &Bytes, offset: &Bytes, patch: Bytes) -> Frame {
    let offset = match parse_i64(offset) {
        Some(offset) if offset < 0 => return err("offset is out of range"),
        Some(offset) => usize::try_from(offset).unwrap_or(usize::MAX),
        None => return not_an_integer(),
    };
    // The size check comes first, as in Redis: it does not depend on the value.
    let end = match patch_end(offset, patch.len()) {
        Ok(end) => end,
        Err(frame) => return frame,
    };
    let result = kv
        .update(key, move |seen| match overwritten(seen, offset, &patch) {
            Ok((Some(value), _)) => Update::Put(value),
            _ => Update::Keep,
        })
        .await;
    match result {
        Ok(seen) => Frame::Integer(patched_len(seen.map_or(0, |v| v.len()), end) as i64),
        Err(e) => db_error(e),
    }
}

async fn mget(ctx: &CoreCtx, kv: &impl Keys, keys: &[Bytes]) -> Frame {
    let values = bounded(kv.fanout(), keys.iter().map(|k| kv.get(k))).await;
    let mut frames = Vec::with_capacity(values.len());
    for value in values {
        match value {
            Ok(value) => {
                ctx.count_hit(value.is_some());
                frames.push(Frame::optional(value));
            }
            Err(e) => return db_error(e),
        }
    }
    Frame::Array(frames)
}

async fn mset(kv: &impl Keys, args: &[Bytes]) -> Frame {
    if args.len() % 2 == 0 {
        return wrong_arity("mset");
    }
    let pairs = args[1..].chunks_exact(2);
    let results = bounded(kv.fanout(), pairs.map(|p| kv.put(&p[0], &p[1]))).await;
    match results.into_iter().find_map(Result::err) {
        None => Frame::ok(),
        Some(e) => db_error(e),
    }
}

async fn del(kv: &impl Keys, keys: &[Bytes]) -> Frame {
    let deleting = keys.iter().map(|k| {
        kv.update(k, |seen| {
            if seen.is_some() {
                Update::Delete
            } else {
                Update::Keep
            }
        })
    });
    let mut deleted = 0;
    for result in bounded(kv.fanout(), deleting).await {
        match result {
            Ok(seen) => deleted += i64::from(seen.is_some()),
            Err(e) => return db_error(e),
        }
    }
    Frame::Integer(deleted)
}

async fn exists(kv: &impl Keys, keys: &[Bytes]) -> Frame {
    let mut found = 0;
    for result in bounded(kv.fanout(), keys.iter().map(|k| kv.exists(k))).await {
        match result {
            Ok(present) => found += i64::from(present),
            Err(e) => return db_error(e),
        }
    }
    Frame::Integer(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_redis_7_0() {
        let hello = |s, e| {
            let r = byte_range(5, s, e);
            &b"hello"[r]
        };
        assert_eq!(hello(0, -1), b"hello");
        assert_eq!(hello(1, 3), b"ell");
        assert_eq!(hello(-3, -1), b"llo");
        assert_eq!(hello(0, -10), b"h"); // 7.0 clamps a negative end to 0
        assert_eq!(hello(-1, -5), b""); // both negative, start after end
        assert_eq!(hello(3, 1), b"");
        assert_eq!(hello(10, 20), b"");
        assert_eq!(hello(-100, 100), b"hello");
        assert_eq!(hello(i64::MIN, i64::MAX), b"hello");
        assert_eq!(byte_range(0, 0, -1), 0..0);
    }

    #[test]
    fn setrange_pads_and_keeps_what_it_does_not_cover() {
        assert_eq!(
            overwritten(Some(b"hello"), 1, b"EL"),
            Ok((Some(b"hELlo".to_vec()), 5))
        );
        assert_eq!(
            overwritten(None, 3, b"x"),
            Ok((Some(b"\0\0\0x".to_vec()), 4))
        );
        assert_eq!(
            overwritten(Some(b"ab"), 4, b"c"),
            Ok((Some(b"ab\0\0c".to_vec()), 5))
        );
        assert_eq!(overwritten(Some(b"abc"), 10, b""), Ok((None, 3)));
        assert_eq!(overwritten(None, 0, b""), Ok((None, 0)));
        assert!(overwritten(None, ringkv::VALUE_LEN_MAX, b"x").is_err());
        assert!(overwritten(None, usize::MAX, b"x").is_err());
    }

    #[test]
    fn counters_as_redis() {
        assert_eq!(incremented(None, 5), Ok(5));
        assert_eq!(incremented(Some(b"-3"), 1), Ok(-2));
        assert!(incremented(Some(b"x"), 1).is_err());
        assert!(incremented(Some(b" 1"), 1).is_err());
        assert!(incremented(Some(b"9223372036854775807"), 1).is_err());
        assert_eq!(
            incremented(Some(b"9223372036854775807"), -1),
            Ok(i64::MAX - 1)
        );
    }
}
