//! MULTI, EXEC, DISCARD, WATCH and UNWATCH, as Redis 7 answers them, on the library's
//! optimistic transactions.
//!
//! - **Queueing.** Between MULTI and EXEC every command but EXEC, DISCARD, MULTI, WATCH
//!   and QUIT is checked (unknown, arity, authentication) and queued (`+QUEUED`); one
//!   that fails the check is answered with its error and makes EXEC answer EXECABORT.
//! - **WATCH** reads its keys in a transaction kept on the connection: the versions it
//!   saw are what EXEC checks.
//! - **EXEC** runs the queued commands in order through one `ringkv::Transaction` that
//!   starts with the watched reads ([`TxKeys`]): key commands read and write in it, the
//!   others (PING, INFO …) run as usual. It then commits: all the writes or none, with
//!   every key read (watched, or read by a queued command) unchanged since. A conflict
//!   on a watched key answers a null array, as Redis does; a conflict on another key
//!   runs the commands again, so that EXEC without WATCH always succeeds, isolated
//!   from other clients as Redis's is. Runtime errors of single commands (INCR of a
//!   string) are answered in the array and do not stop the others, as in Redis.

use std::rc::Rc;

use bytes::Bytes;

use super::commands::{Cmd, Plan, Spec};
use super::frame::{Frame, db_error, err};
use super::keys::TxKeys;
use super::session::{ConnState, Multi};
use super::shared::CoreCtx;
use super::{admin, atomic, expiry, strings};

/// Whether `cmd` is one of this module's commands.
pub fn handles(cmd: Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Multi | Cmd::Exec | Cmd::Discard | Cmd::Watch | Cmd::Unwatch
    )
}

/// Whether the connection routes `plan` here: a transaction command, or any command
/// but QUIT while a MULTI is open.
pub fn takes(state: &ConnState, plan: &Plan) -> bool {
    let spec = match plan {
        Plan::Answer(_) => return state.multi.is_some(),
        Plan::Keyed(spec) | Plan::Alone(spec) => spec,
    };
    handles(spec.cmd) || (state.multi.is_some() && spec.cmd != Cmd::Quit)
}

/// Answers a request [`takes`] routed here.
pub async fn step(ctx: &Rc<CoreCtx>, state: &mut ConnState, plan: Plan, args: Vec<Bytes>) -> Frame {
    let spec = match plan {
        Plan::Answer(frame) => {
            if let Some(multi) = &mut state.multi {
                multi.failed = true;
            }
            return frame;
        }
        Plan::Keyed(spec) | Plan::Alone(spec) => spec,
    };
    match (spec.cmd, state.multi.is_some()) {
        (Cmd::Multi, true) => err("MULTI calls can not be nested"),
        (Cmd::Multi, false) => {
            state.multi = Some(Multi::default());
            Frame::ok()
        }
        (Cmd::Exec, false) => err("EXEC without MULTI"),
        (Cmd::Discard, false) => err("DISCARD without MULTI"),
        (Cmd::Exec, true) => {
            let multi = state.multi.take().expect("in MULTI");
            let frame = match multi.failed {
                true => Frame::Error(
                    "EXECABORT Transaction discarded because of previous errors.".into(),
                ),
                false => exec(ctx, state, multi.queued).await,
            };
            state.watch = None;
            frame
        }
        (Cmd::Discard, true) => {
            state.multi = None;
            state.watch = None;
            Frame::ok()
        }
        (Cmd::Watch, true) => err("WATCH inside MULTI is not allowed"),
        (Cmd::Watch, false) => watch(ctx, state, &args[1..]).await,
        (Cmd::Unwatch, false) => {
            state.watch = None;
            Frame::ok()
        }
        (_, true) => {
            let multi = state.multi.as_mut().expect("in MULTI");
            multi.queued.push((spec, args));
            Frame::Simple("QUEUED")
        }
        (other, false) => unreachable!("{other:?} is routed here only inside MULTI"),
    }
}

/// WATCH key [key …]: reads each key into the connection's watch transaction.
async fn watch(ctx: &CoreCtx, state: &mut ConnState, keys: &[Bytes]) -> Frame {
    let tx = state.watch.get_or_insert_with(|| ctx.db().transaction());
    for key in keys {
        if let Err(e) = tx.get_async(key).await {
            return db_error(e);
        }
    }
    Frame::ok()
}

/// Runs the queued commands in one transaction (see the module documentation).
async fn exec(
    ctx: &Rc<CoreCtx>,
    state: &mut ConnState,
    queued: Vec<(&'static Spec, Vec<Bytes>)>,
) -> Frame {
    let watched = state.watch.take().unwrap_or_else(|| ctx.db().transaction());
    loop {
        let kv = TxKeys::new(watched.reads_only());
        let mut replies = Vec::with_capacity(queued.len());
        for (spec, args) in &queued {
            replies.push(run(ctx, state, &kv, spec, args.clone()).await);
        }
        match kv.into_inner().commit_async().await {
            Ok(()) => return Frame::Array(replies),
            Err(ringkv::Error::Conflict) => {}
            Err(e) => return db_error(e),
        }
        // Did a watched key change, or only a key a command read?
        match watched.reads_only().commit_async().await {
            Ok(()) => continue,
            Err(ringkv::Error::Conflict) => return Frame::NullArray,
            Err(e) => return db_error(e),
        }
    }
}

/// One queued command, through the EXEC's transaction when it touches keys.
async fn run(
    ctx: &Rc<CoreCtx>,
    state: &mut ConnState,
    kv: &TxKeys,
    spec: &'static Spec,
    args: Vec<Bytes>,
) -> Frame {
    if handles(spec.cmd) {
        return Frame::ok(); // UNWATCH, queued: EXEC unwatches anyway
    }
    if !spec.is_keyed() {
        let (frame, _) = admin::execute(ctx, state, spec, args).await;
        return frame.unwrap_or_else(Frame::ok);
    }
    if expiry::handles(spec.cmd) {
        expiry::execute_on(ctx, kv, spec.cmd, args).await
    } else if atomic::handles(spec.cmd) {
        atomic::execute_on(kv, spec.cmd, &args).await
    } else {
        strings::execute_on(ctx, kv, spec.cmd, args).await
    }
}
