//! The commands over several keys that are atomic as a whole: MSETNX, RENAME and
//! RENAMENX. Each is written once against [`Keys`] and runs in a library transaction
//! (`ringkv::Transaction`): on its own, in a transaction of its own, committed and
//! retried on a conflict; inside MULTI, in the EXEC's transaction.

use bytes::Bytes;
use ringkv::{PutOptions, Update};

use super::commands::{Cmd, wrong_arity};
use super::frame::{Frame, db_error, err};
use super::keys::{Keys, TxKeys};
use super::shared::CoreCtx;

/// Whether `cmd` is one of this module's commands.
pub fn handles(cmd: Cmd) -> bool {
    matches!(cmd, Cmd::MSetNx | Cmd::Rename | Cmd::RenameNx)
}

/// Runs `cmd` in a transaction of its own, again while it conflicts with other writes.
pub async fn execute(ctx: &CoreCtx, cmd: Cmd, args: Vec<Bytes>) -> Frame {
    loop {
        let kv = TxKeys::new(ctx.db().transaction());
        let frame = execute_on(&kv, cmd, &args).await;
        match kv.into_inner().commit_async().await {
            Ok(()) => return frame,
            Err(ringkv::Error::Conflict) => continue,
            Err(e) => return db_error(e),
        }
    }
}

/// Runs `cmd` through `kv` (a transaction's keys).
pub async fn execute_on(kv: &impl Keys, cmd: Cmd, args: &[Bytes]) -> Frame {
    let result = match cmd {
        Cmd::MSetNx => msetnx(kv, args).await,
        Cmd::Rename => rename(kv, &args[1], &args[2], false).await,
        Cmd::RenameNx => rename(kv, &args[1], &args[2], true).await,
        other => unreachable!("{other:?} is not an atomic command"),
    };
    result.unwrap_or_else(db_error)
}

/// MSETNX key value [key value …]: all set if none exists, else none.
async fn msetnx(kv: &impl Keys, args: &[Bytes]) -> ringkv::Result<Frame> {
    if args.len() % 2 == 0 {
        return Ok(wrong_arity("msetnx"));
    }
    let pairs = args[1..].chunks_exact(2);
    for pair in pairs.clone() {
        if kv.exists(&pair[0]).await? {
            return Ok(Frame::Integer(0));
        }
    }
    for pair in pairs {
        kv.put(&pair[0], &pair[1]).await?;
    }
    Ok(Frame::Integer(1))
}

/// RENAME and RENAMENX (`nx`): the value moves with its expiry; the destination's own
/// expiry goes with its old value.
async fn rename(kv: &impl Keys, from: &Bytes, to: &Bytes, nx: bool) -> ringkv::Result<Frame> {
    let (Some(value), Some(expiry)) = (kv.get(from).await?, kv.expiry(from).await?) else {
        return Ok(err("no such key"));
    };
    let done = || match nx {
        true => Frame::Integer(1),
        false => Frame::ok(),
    };
    if from == to {
        return Ok(if nx { Frame::Integer(0) } else { done() });
    }
    if nx && kv.exists(to).await? {
        return Ok(Frame::Integer(0));
    }
    let options = match expiry {
        Some(at) => PutOptions::new().expire_at_unix_ms(at),
        None => PutOptions::new(),
    };
    kv.put_with(to, &value, &options).await?;
    kv.update(from, |_| Update::Delete).await?;
    Ok(done())
}
