//! The expiry commands: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (with NX, XX, GT, LT),
//! TTL, PTTL, EXPIRETIME, PEXPIRETIME, PERSIST, SETEX, PSETEX, GETEX and GETDEL; and
//! the parsing of the expiry options SET and GETEX share (EX, PX, EXAT, PXAT, KEEPTTL,
//! PERSIST), which `strings` uses for SET.
//!
//! Replies and errors are Redis 7's, byte for byte (its `expire.c` and `t_string.c`).
//! Times are the database's clock (`Db::now_unix_ms`). Every change of a key that
//! reads it first (GETEX, GETDEL, SET with a condition) is one `Local::update`, atomic
//! on the key's core; the others are one library call.

use std::rc::Rc;

use bytes::Bytes;
use ringkv::{ExpireIf, PutOptions, Update};

use super::commands::Cmd;
use super::frame::{Frame, db_error, err, not_an_integer};
use super::keys::Keys;
use super::resp::parse_i64;
use super::shared::CoreCtx;

/// Whether `cmd` is one of this module's commands.
pub fn handles(cmd: Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Expire
            | Cmd::PExpire
            | Cmd::ExpireAt
            | Cmd::PExpireAt
            | Cmd::Ttl
            | Cmd::PTtl
            | Cmd::ExpireTime
            | Cmd::PExpireTime
            | Cmd::Persist
            | Cmd::SetEx
            | Cmd::PSetEx
            | Cmd::GetEx
            | Cmd::GetDel
    )
}

/// Runs expiry command `cmd` (arity and authentication already checked).
pub async fn execute(ctx: Rc<CoreCtx>, cmd: Cmd, args: Vec<Bytes>) -> Frame {
    execute_on(&ctx, &ctx.local, cmd, args).await
}

/// [`execute`] through `kv`: the core's handle, or an EXEC's transaction.
pub async fn execute_on(ctx: &CoreCtx, kv: &impl Keys, cmd: Cmd, args: Vec<Bytes>) -> Frame {
    let key = &args[1];
    match cmd {
        Cmd::Expire => expire(ctx, kv, &args, "expire", Unit::Seconds, true).await,
        Cmd::PExpire => expire(ctx, kv, &args, "pexpire", Unit::Millis, true).await,
        Cmd::ExpireAt => expire(ctx, kv, &args, "expireat", Unit::Seconds, false).await,
        Cmd::PExpireAt => expire(ctx, kv, &args, "pexpireat", Unit::Millis, false).await,
        Cmd::Ttl => ttl(ctx, kv, key, Unit::Seconds, false).await,
        Cmd::PTtl => ttl(ctx, kv, key, Unit::Millis, false).await,
        Cmd::ExpireTime => ttl(ctx, kv, key, Unit::Seconds, true).await,
        Cmd::PExpireTime => ttl(ctx, kv, key, Unit::Millis, true).await,
        Cmd::Persist => match kv.persist(key).await {
            Ok(changed) => Frame::Integer(i64::from(changed)),
            Err(e) => db_error(e),
        },
        Cmd::SetEx => set_ex(ctx, kv, &args, "setex", Unit::Seconds).await,
        Cmd::PSetEx => set_ex(ctx, kv, &args, "psetex", Unit::Millis).await,
        Cmd::GetEx => get_ex(ctx, kv, &args).await,
        Cmd::GetDel => get_del(ctx, kv, key).await,
        other => unreachable!("{other:?} is not an expiry command"),
    }
}

/// The unit of a time argument or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
}

impl Unit {
    fn ms_per(self) -> i64 {
        match self {
            Unit::Seconds => 1000,
            Unit::Millis => 1,
        }
    }
}

fn invalid_expire_time(command: &str) -> Frame {
    err(format!("invalid expire time in '{command}' command"))
}

/// EXPIRE's options as the library's condition, or the error Redis answers.
fn expire_condition(options: &[Bytes]) -> Result<ExpireIf, Frame> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                let text = String::from_utf8_lossy(option);
                return Err(err(format!("Unsupported option {text}")));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(err("GT and LT options at the same time are not compatible"));
    }
    Ok(match (nx, xx, gt, lt) {
        (true, ..) => ExpireIf::NoExpiry,
        (_, _, true, _) => ExpireIf::Later, // GT already fails a key without an expiry
        (_, true, _, true) => ExpireIf::HasExpiryAndEarlier,
        (_, true, _, false) => ExpireIf::HasExpiry,
        (_, false, _, true) => ExpireIf::Earlier,
        _ => ExpireIf::Always,
    })
}

/// The Unix ms of an EXPIRE-family time argument (`relative`: from `now_ms`), as
/// Redis computes it: negative allowed, overflow refused (`None`).
fn expire_at_ms(when: i64, unit: Unit, relative: bool, now_ms: i64) -> Option<i64> {
    let when = when.checked_mul(unit.ms_per())?;
    if relative {
        when.checked_add(now_ms)
    } else {
        Some(when)
    }
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time [NX | XX | GT | LT].
async fn expire(
    ctx: &CoreCtx,
    kv: &impl Keys,
    args: &[Bytes],
    name: &str,
    unit: Unit,
    relative: bool,
) -> Frame {
    let only_if = match expire_condition(&args[3..]) {
        Ok(c) => c,
        Err(frame) => return frame,
    };
    let Some(when) = parse_i64(&args[2]) else {
        return not_an_integer();
    };
    let now = now_ms(ctx);
    let Some(at) = expire_at_ms(when, unit, relative, now) else {
        return invalid_expire_time(name);
    };
    // A time before the epoch is in the past like any other: the key is deleted.
    let at = u64::try_from(at).unwrap_or(0);
    match kv.expire_if(&args[1], at, only_if).await {
        Ok(changed) => Frame::Integer(i64::from(changed)),
        Err(e) => db_error(e),
    }
}

fn now_ms(ctx: &CoreCtx) -> i64 {
    i64::try_from(ctx.db().now_unix_ms()).unwrap_or(i64::MAX)
}

/// TTL's reply: -2 for a missing key, -1 without an expiry, else the time left
/// (`absolute`: the expiry itself), never below zero, seconds rounded to nearest.
fn ttl_reply(expiry: Option<Option<u64>>, now_ms: u64, unit: Unit, absolute: bool) -> i64 {
    let at = match expiry {
        None => return -2,
        Some(None) => return -1,
        Some(Some(at)) => at,
    };
    let ms = if absolute {
        at
    } else {
        at.saturating_sub(now_ms)
    };
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    match unit {
        Unit::Millis => ms,
        Unit::Seconds => ms.saturating_add(500) / 1000,
    }
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME key.
async fn ttl(ctx: &CoreCtx, kv: &impl Keys, key: &Bytes, unit: Unit, absolute: bool) -> Frame {
    match kv.expiry(key).await {
        Ok(expiry) => Frame::Integer(ttl_reply(expiry, ctx.db().now_unix_ms(), unit, absolute)),
        Err(e) => db_error(e),
    }
}

/// Which command's options [`parse_options`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionsOf {
    Set,
    GetEx,
}

/// A SET's condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    #[default]
    Always,
    /// Only if the key does not exist.
    Nx,
    /// Only if the key exists.
    Xx,
}

impl Condition {
    pub fn allows(self, seen: Option<&[u8]>) -> bool {
        match self {
            Condition::Always => true,
            Condition::Nx => seen.is_none(),
            Condition::Xx => seen.is_some(),
        }
    }
}

/// The expiry a SET or GETEX asks for, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExpiryArg {
    /// None given: SET drops the key's expiry, GETEX leaves it.
    #[default]
    Unset,
    /// KEEPTTL (SET).
    Keep,
    /// PERSIST (GETEX).
    Persist,
    /// EX or PX (`relative`), EXAT or PXAT: the time argument and its unit.
    Time {
        value: Bytes,
        unit: Unit,
        relative: bool,
    },
}

/// SET's or GETEX's options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub condition: Condition,
    pub get: bool,
    pub expiry: ExpiryArg,
}

/// Parses the options after SET's value or GETEX's key, as Redis's
/// `parseExtendedStringArgumentsOrReply` does: any option out of place, a second
/// expiry of another kind, or one without its time is a syntax error.
pub fn parse_options(options: &[Bytes], of: OptionsOf) -> Result<Options, Frame> {
    let mut parsed = Options::default();
    let set = of == OptionsOf::Set;
    let mut i = 0;
    while i < options.len() {
        let option = options[i].to_ascii_uppercase();
        let next = options.get(i + 1);
        let time = |unit, relative| ExpiryArg::Time {
            value: next.cloned().unwrap_or_default(),
            unit,
            relative,
        };
        // An expiry option may repeat itself, never follow another kind.
        let expiry_free_or = |same: fn(&ExpiryArg) -> bool| {
            parsed.expiry == ExpiryArg::Unset || same(&parsed.expiry)
        };
        match option.as_slice() {
            b"NX" if set && parsed.condition != Condition::Xx => parsed.condition = Condition::Nx,
            b"XX" if set && parsed.condition != Condition::Nx => parsed.condition = Condition::Xx,
            b"GET" if set => parsed.get = true,
            b"KEEPTTL" if set && expiry_free_or(|e| *e == ExpiryArg::Keep) => {
                parsed.expiry = ExpiryArg::Keep;
            }
            b"PERSIST" if !set && expiry_free_or(|e| *e == ExpiryArg::Persist) => {
                parsed.expiry = ExpiryArg::Persist;
            }
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if next.is_some() => {
                let (unit, relative) = match option.as_slice() {
                    b"EX" => (Unit::Seconds, true),
                    b"PX" => (Unit::Millis, true),
                    b"EXAT" => (Unit::Seconds, false),
                    _ => (Unit::Millis, false),
                };
                let same_kind = match &parsed.expiry {
                    ExpiryArg::Unset => true,
                    ExpiryArg::Time {
                        unit: u,
                        relative: r,
                        ..
                    } => *u == unit && *r == relative,
                    _ => false,
                };
                if !same_kind {
                    return Err(syntax_error());
                }
                parsed.expiry = time(unit, relative);
                i += 1;
            }
            _ => return Err(syntax_error()),
        }
        i += 1;
    }
    Ok(parsed)
}

fn syntax_error() -> Frame {
    err("syntax error")
}

/// What a SET or GETEX does to the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryAction {
    /// No expiry (SET without one, GETEX PERSIST).
    Clear,
    /// Leave it (SET KEEPTTL, GETEX without one).
    Keep,
    /// Expire at this Unix ms.
    At(u64),
}

/// Turns an [`ExpiryArg`] into what to do, checking the time as Redis's
/// `getExpireMillisecondsOrReply` does (positive, no overflow) for `command`.
pub fn resolve(
    arg: &ExpiryArg,
    of: OptionsOf,
    now_ms: i64,
    command: &str,
) -> Result<ExpiryAction, Frame> {
    let (value, unit, relative) = match arg {
        ExpiryArg::Unset if of == OptionsOf::Set => return Ok(ExpiryAction::Clear),
        ExpiryArg::Unset | ExpiryArg::Keep => return Ok(ExpiryAction::Keep),
        ExpiryArg::Persist => return Ok(ExpiryAction::Clear),
        ExpiryArg::Time {
            value,
            unit,
            relative,
        } => (value, *unit, *relative),
    };
    let n = parse_i64(value).ok_or_else(not_an_integer)?;
    if n <= 0 {
        return Err(invalid_expire_time(command));
    }
    let at = expire_at_ms(n, unit, relative, now_ms).ok_or_else(|| invalid_expire_time(command))?;
    if at <= 0 {
        return Err(invalid_expire_time(command));
    }
    Ok(ExpiryAction::At(at as u64))
}

impl ExpiryAction {
    /// The update that stores `value` with this expiry.
    pub fn store(self, value: Vec<u8>) -> Update {
        match self {
            ExpiryAction::Keep => Update::Put(value),
            ExpiryAction::Clear => Update::Set {
                value,
                expiry_unix_ms: None,
            },
            ExpiryAction::At(at) => Update::Set {
                value,
                expiry_unix_ms: Some(at),
            },
        }
    }

    /// The options of a plain put with this expiry (`None` for `Keep`, which needs the
    /// key's current expiry: an update).
    pub fn put_options(self) -> Option<PutOptions> {
        match self {
            ExpiryAction::Keep => None,
            ExpiryAction::Clear => Some(PutOptions::new()),
            ExpiryAction::At(at) => Some(PutOptions::new().expire_at_unix_ms(at)),
        }
    }
}

/// SETEX, PSETEX key time value.
async fn set_ex(ctx: &CoreCtx, kv: &impl Keys, args: &[Bytes], name: &str, unit: Unit) -> Frame {
    let arg = ExpiryArg::Time {
        value: args[2].clone(),
        unit,
        relative: true,
    };
    let action = match resolve(&arg, OptionsOf::Set, now_ms(ctx), name) {
        Ok(action) => action,
        Err(frame) => return frame,
    };
    let options = action.put_options().expect("a time is never Keep");
    match kv.put_with(&args[1], &args[3], &options).await {
        Ok(()) => Frame::ok(),
        Err(e) => db_error(e),
    }
}

/// GETEX key [EX s | PX ms | EXAT ts | PXAT ts | PERSIST].
async fn get_ex(ctx: &CoreCtx, kv: &impl Keys, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let options = match parse_options(&args[2..], OptionsOf::GetEx) {
        Ok(options) => options,
        Err(frame) => return frame,
    };
    let action = resolve(&options.expiry, OptionsOf::GetEx, now_ms(ctx), "getex");
    let action = match action {
        Ok(ExpiryAction::Keep) => return ctx.answer_read(kv.get(key).await),
        Ok(action) => action,
        // Redis looks the key up first: a missing key answers nil whatever the time.
        Err(frame) => {
            return match kv.exists(key).await {
                Ok(false) => Frame::Null,
                Ok(true) => frame,
                Err(e) => db_error(e),
            };
        }
    };
    let now = ctx.db().now_unix_ms();
    let result = kv
        .update(key, move |seen| match (seen, action) {
            (None, _) => Update::Keep,
            (Some(_), ExpiryAction::At(at)) if at <= now => Update::Delete,
            (Some(value), action) => action.store(value.to_vec()),
        })
        .await;
    ctx.answer_read(result)
}

/// GETDEL key.
async fn get_del(ctx: &CoreCtx, kv: &impl Keys, key: &Bytes) -> Frame {
    let result = kv
        .update(key, |seen| match seen {
            Some(_) => Update::Delete,
            None => Update::Keep,
        })
        .await;
    ctx.answer_read(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Bytes> {
        s.split_whitespace()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn text(frame: Frame) -> String {
        match frame {
            Frame::Error(e) => e,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn expire_options_as_redis() {
        let cond = |s| expire_condition(&words(s)).map_err(text);
        assert_eq!(cond(""), Ok(ExpireIf::Always));
        assert_eq!(cond("nx"), Ok(ExpireIf::NoExpiry));
        assert_eq!(cond("XX"), Ok(ExpireIf::HasExpiry));
        assert_eq!(cond("gt"), Ok(ExpireIf::Later));
        assert_eq!(cond("xx gt"), Ok(ExpireIf::Later));
        assert_eq!(cond("lt"), Ok(ExpireIf::Earlier));
        assert_eq!(cond("LT xx"), Ok(ExpireIf::HasExpiryAndEarlier));
        assert_eq!(
            cond("nx xx"),
            Err("ERR NX and XX, GT or LT options at the same time are not compatible".into())
        );
        assert_eq!(
            cond("gt lt"),
            Err("ERR GT and LT options at the same time are not compatible".into())
        );
        assert_eq!(cond("gt foo"), Err("ERR Unsupported option foo".into()));
    }

    #[test]
    fn expire_times_as_redis() {
        assert_eq!(expire_at_ms(10, Unit::Seconds, true, 1_000), Some(11_000));
        assert_eq!(expire_at_ms(-10, Unit::Millis, true, 1_000), Some(990));
        assert_eq!(expire_at_ms(7, Unit::Seconds, false, 1_000), Some(7_000));
        assert_eq!(expire_at_ms(i64::MAX / 999, Unit::Seconds, false, 0), None);
        assert_eq!(expire_at_ms(i64::MAX - 5, Unit::Millis, true, 10), None);
    }

    #[test]
    fn ttl_replies_as_redis() {
        assert_eq!(ttl_reply(None, 0, Unit::Seconds, false), -2);
        assert_eq!(ttl_reply(Some(None), 0, Unit::Millis, true), -1);
        assert_eq!(ttl_reply(Some(Some(10_499)), 0, Unit::Seconds, false), 10);
        assert_eq!(ttl_reply(Some(Some(10_500)), 0, Unit::Seconds, false), 11);
        assert_eq!(ttl_reply(Some(Some(5)), 10, Unit::Millis, false), 0);
        assert_eq!(ttl_reply(Some(Some(7_400)), 99, Unit::Seconds, true), 7);
        assert_eq!(ttl_reply(Some(Some(7_400)), 99, Unit::Millis, true), 7_400);
    }

    #[test]
    fn set_and_getex_options_as_redis() {
        let set = |s| parse_options(&words(s), OptionsOf::Set).map_err(text);
        let getex = |s| parse_options(&words(s), OptionsOf::GetEx).map_err(text);
        let time = |v: &str, unit, relative| ExpiryArg::Time {
            value: Bytes::copy_from_slice(v.as_bytes()),
            unit,
            relative,
        };
        let o = set("nx get ex 10").unwrap();
        assert_eq!(
            (o.condition, o.get, o.expiry),
            (Condition::Nx, true, time("10", Unit::Seconds, true))
        );
        assert_eq!(
            set("px 5 px 7").unwrap().expiry,
            time("7", Unit::Millis, true)
        );
        assert_eq!(set("keepttl").unwrap().expiry, ExpiryArg::Keep);
        assert_eq!(
            set("pxat 9").unwrap().expiry,
            time("9", Unit::Millis, false)
        );
        let syntax = Err("ERR syntax error".to_string());
        for bad in [
            "nx xx",
            "ex 1 px 2",
            "keepttl ex 1",
            "ex",
            "persist",
            "foo",
            "ex 1 keepttl",
        ] {
            assert_eq!(
                set(bad).map(|_| ()),
                syntax.clone().map(|_: ()| ()),
                "{bad}"
            );
        }
        assert_eq!(getex("persist").unwrap().expiry, ExpiryArg::Persist);
        assert_eq!(
            getex("exat 100").unwrap().expiry,
            time("100", Unit::Seconds, false)
        );
        for bad in ["nx", "get", "keepttl", "persist ex 1"] {
            assert!(getex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_times_are_checked_as_redis() {
        let time = |v: &str, unit, relative| ExpiryArg::Time {
            value: Bytes::copy_from_slice(v.as_bytes()),
            unit,
            relative,
        };
        let resolve = |arg: &ExpiryArg| resolve(arg, OptionsOf::Set, 1_000, "set").map_err(text);
        assert_eq!(resolve(&ExpiryArg::Unset), Ok(ExpiryAction::Clear));
        assert_eq!(resolve(&ExpiryArg::Keep), Ok(ExpiryAction::Keep));
        assert_eq!(
            resolve(&time("10", Unit::Seconds, true)),
            Ok(ExpiryAction::At(11_000))
        );
        assert_eq!(
            resolve(&time("500", Unit::Millis, false)),
            Ok(ExpiryAction::At(500))
        );
        let invalid = Err("ERR invalid expire time in 'set' command".to_string());
        assert_eq!(resolve(&time("0", Unit::Seconds, true)), invalid);
        assert_eq!(resolve(&time("-3", Unit::Millis, false)), invalid);
        assert_eq!(
            resolve(&time(&i64::MAX.to_string(), Unit::Seconds, true)),
            invalid
        );
        assert_eq!(
            resolve(&time("x", Unit::Seconds, true)),
            Err("ERR value is not an integer or out of range".to_string())
        );
        let getex = resolve_getex_unset();
        assert_eq!(getex, Ok(ExpiryAction::Keep));
    }

    fn resolve_getex_unset() -> Result<ExpiryAction, String> {
        resolve(&ExpiryArg::Unset, OptionsOf::GetEx, 0, "getex").map_err(text)
    }
}
