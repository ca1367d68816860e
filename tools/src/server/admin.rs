//! The commands that run alone on their connection: PING, ECHO, QUIT, HELLO, AUTH,
//! SELECT, CLIENT, COMMAND, CONFIG, INFO, DBSIZE, SCAN, FLUSHDB, SHUTDOWN, and those of
//! `keyspace` (KEYS, RANDOMKEY, TIME).
//!
//! Those that need the whole database (DBSIZE, INFO, SCAN's snapshot, FLUSHDB) call
//! its blocking methods on the admin helper threads and await the answer, so the core
//! keeps serving meanwhile.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};

use super::commands::{COMMANDS, Cmd, Spec, command_docs, command_info, lookup, sanitize};
use super::frame::{Frame, Protocol, db_error, err};
use super::resp::parse_i64;
use super::scan::{Cursor, Snapshot, glob_match};
use super::session::{ConnState, REDIS_COMPAT_VERSION};
use super::shared::{CoreCtx, StopReason};
use super::{info, keyspace};

/// SCAN's default COUNT, as Redis.
const SCAN_COUNT_DEFAULT: usize = 10;
/// Most SCAN COUNT honoured per call.
const SCAN_COUNT_MAX: usize = 100_000;
/// FLUSHDB deletes this many keys at a time, concurrently.
const FLUSH_CHUNK_KEYS: usize = 4096;
const FLUSH_CONCURRENCY: usize = 256;

/// What the connection does after the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    Close,
}

/// Runs a command that needs the connection to itself. `None`: no reply (SHUTDOWN).
pub async fn execute(
    ctx: &Rc<CoreCtx>,
    state: &mut ConnState,
    spec: &'static Spec,
    args: Vec<Bytes>,
) -> (Option<Frame>, After) {
    let frame = match spec.cmd {
        Cmd::Ping => match args.len() {
            1 => Frame::Simple("PONG"),
            2 => Frame::Bulk(args[1].clone()),
            _ => super::commands::wrong_arity("ping"),
        },
        Cmd::Echo => Frame::Bulk(args[1].clone()),
        Cmd::Quit => return (Some(Frame::ok()), After::Close),
        Cmd::Hello => hello(ctx, state, &args),
        Cmd::Auth => auth(ctx, state, &args),
        Cmd::Select => match parse_i64(&args[1]) {
            Some(0) => Frame::ok(),
            Some(_) => err("DB index is out of range"),
            None => err("value is not an integer or out of range"),
        },
        Cmd::Client => client(state, &args),
        Cmd::Command => command(&args),
        Cmd::Config => config(ctx, &args),
        Cmd::Info => info::info(ctx, &args).await,
        Cmd::DbSize => dbsize(ctx).await,
        Cmd::Scan => scan(ctx, &args).await,
        Cmd::Keys => keyspace::keys(ctx, args[1].clone()).await,
        Cmd::RandomKey => keyspace::random_key(ctx).await,
        Cmd::Time => keyspace::time(),
        Cmd::FlushDb => flushdb(ctx, &args).await,
        Cmd::Shutdown => return shutdown(ctx, &args),
        Cmd::Save => super::save::save(ctx).await,
        Cmd::BgSave => super::save::bgsave(ctx, &args),
        Cmd::LastSave => super::save::lastsave(ctx),
        other => unreachable!("{other:?} is a key command"),
    };
    (Some(frame), After::Continue)
}

/// Whether `guess` is `secret`, in time that depends neither on where nor whether they
/// differ, nor on their lengths being equal (a plain comparison returns at the first
/// difference, or at once for another length). Both are hashed with SipHash under a
/// key drawn once per process, as Redis compares SHA-256 digests; only equal digests
/// (the right password, but for a 2^-64 chance) are compared byte by byte.
fn same_secret(guess: &[u8], secret: &[u8]) -> bool {
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(std::hash::RandomState::new);
    use std::hash::BuildHasher as _;
    key.hash_one(guess) == key.hash_one(secret) && guess == secret
}

/// Checks a user and password; `Err` is the reply.
fn check_password(ctx: &CoreCtx, user: &[u8], password: &[u8]) -> Result<(), Frame> {
    let Some(expected) = &ctx.shared.config.requirepass else {
        return Err(err(
            "AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ));
    };
    if user == b"default" && same_secret(password, expected.as_bytes()) {
        Ok(())
    } else {
        Err(Frame::Error(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        ))
    }
}

fn auth(ctx: &CoreCtx, state: &mut ConnState, args: &[Bytes]) -> Frame {
    let (user, password) = match args.len() {
        2 => (&b"default"[..], &args[1]),
        3 => (&args[1][..], &args[2]),
        _ => return err("syntax error"),
    };
    match check_password(ctx, user, password) {
        Ok(()) => {
            state.authenticated = true;
            Frame::ok()
        }
        Err(frame) => frame,
    }
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
fn hello(ctx: &CoreCtx, state: &mut ConnState, args: &[Bytes]) -> Frame {
    let mut protocol = state.protocol;
    if let Some(version) = args.get(1) {
        protocol = match parse_i64(version) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Frame::Error("NOPROTO unsupported protocol version".into()),
            None => return err("Protocol version is not an integer or out of range"),
        };
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let option = args[i].to_ascii_uppercase();
        match (option.as_slice(), args.len() - i - 1) {
            (b"AUTH", rest) if rest >= 2 => {
                if let Err(frame) = check_password(ctx, &args[i + 1], &args[i + 2]) {
                    return frame;
                }
                state.authenticated = true;
                i += 3;
            }
            (b"SETNAME", rest) if rest >= 1 => {
                if let Err(frame) = valid_name(&args[i + 1]) {
                    return frame;
                }
                name = Some(args[i + 1].clone());
                i += 2;
            }
            _ => {
                return err(format!(
                    "Syntax error in HELLO option '{}'",
                    sanitize(&args[i], 128)
                ));
            }
        }
    }
    if !state.authenticated {
        return Frame::Error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .into(),
        );
    }
    state.protocol = protocol;
    if let Some(name) = name {
        state.name = (!name.is_empty()).then_some(name);
    }
    let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
    Frame::Map(vec![
        (Frame::text("server"), Frame::text("ringkv")),
        (Frame::text("version"), Frame::text(REDIS_COMPAT_VERSION)),
        (
            Frame::text("ringkv_version"),
            Frame::text(env!("CARGO_PKG_VERSION")),
        ),
        (Frame::text("proto"), Frame::Integer(proto)),
        (Frame::text("id"), Frame::Integer(state.id as i64)),
        (Frame::text("mode"), Frame::text("standalone")),
        (Frame::text("role"), Frame::text("master")),
        (Frame::text("modules"), Frame::Array(Vec::new())),
    ])
}

fn valid_name(name: &[u8]) -> Result<(), Frame> {
    if name.iter().all(|b| (b'!'..=b'~').contains(b)) {
        Ok(())
    } else {
        Err(err(
            "Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

fn client(state: &mut ConnState, args: &[Bytes]) -> Frame {
    let sub = args[1].to_ascii_uppercase();
    match (sub.as_slice(), args.len()) {
        (b"SETNAME", 3) => match valid_name(&args[2]) {
            Ok(()) => {
                state.name = (!args[2].is_empty()).then(|| args[2].clone());
                Frame::ok()
            }
            Err(frame) => frame,
        },
        (b"GETNAME", 2) => Frame::optional(state.name.clone()),
        (b"ID", 2) => Frame::Integer(state.id as i64),
        (b"INFO", 2) => Frame::text(client_line(state)),
        (b"SETINFO", 4) => {
            let attribute = args[2].to_ascii_uppercase();
            match attribute.as_slice() {
                b"LIB-NAME" => state.lib_name = Some(args[3].clone()),
                b"LIB-VER" => state.lib_version = Some(args[3].clone()),
                _ => {
                    return err(format!("Unrecognized option '{}'", sanitize(&args[2], 128)));
                }
            }
            Frame::ok()
        }
        (b"SETNAME" | b"GETNAME" | b"ID" | b"INFO" | b"SETINFO", _) => err(format!(
            "wrong number of arguments for 'client|{}' command",
            sanitize(&args[1], 128).to_ascii_lowercase()
        )),
        _ => err(format!(
            "unknown subcommand '{}'. Try CLIENT HELP.",
            sanitize(&args[1], 128)
        )),
    }
}

fn client_line(state: &ConnState) -> String {
    let text = |b: &Option<Bytes>| b.as_deref().map(|b| sanitize(b, 128)).unwrap_or_default();
    format!(
        "id={} addr={} name={} age={} db=0 resp={} lib-name={} lib-ver={}\n",
        state.id,
        state.addr,
        text(&state.name),
        state.created.elapsed().as_secs(),
        if state.protocol == Protocol::Resp3 {
            3
        } else {
            2
        },
        text(&state.lib_name),
        text(&state.lib_version),
    )
}

fn command(args: &[Bytes]) -> Frame {
    let Some(sub) = args.get(1) else {
        return Frame::Array(COMMANDS.iter().map(command_info).collect());
    };
    let named = || args[2..].iter().map(|name| lookup(name));
    match sub.to_ascii_uppercase().as_slice() {
        b"COUNT" => Frame::Integer(COMMANDS.len() as i64),
        b"LIST" => Frame::Array(COMMANDS.iter().map(|s| Frame::text(s.name)).collect()),
        b"INFO" if args.len() == 2 => Frame::Array(COMMANDS.iter().map(command_info).collect()),
        b"INFO" => Frame::Array(
            named()
                .map(|s| s.map_or(Frame::NullArray, command_info))
                .collect(),
        ),
        b"DOCS" => {
            let specs: Vec<&Spec> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                named().flatten().collect()
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|s| (Frame::text(s.name), command_docs(s)))
                    .collect(),
            )
        }
        _ => err(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            sanitize(sub, 128)
        )),
    }
}

/// The parameters CONFIG GET knows, with their values.
fn config_values(ctx: &CoreCtx) -> Vec<(&'static str, String)> {
    let c = &ctx.shared.config;
    let sync = c.durability_name() == "sync";
    vec![
        ("bind", c.bind.clone()),
        ("port", ctx.shared.port.to_string()),
        ("dir", c.dir.display().to_string()),
        ("databases", "1".into()),
        ("maxclients", c.maxclients.to_string()),
        ("requirepass", c.requirepass.clone().unwrap_or_default()),
        ("proto-max-bulk-len", ringkv::VALUE_LEN_MAX.to_string()),
        ("client-query-buffer-limit", c.max_input_bytes.to_string()),
        ("max-args", c.max_args.to_string()),
        ("max-output-bytes", c.max_output_bytes.to_string()),
        // What redis-benchmark and similar tools ask; the nearest Redis meanings.
        ("save", String::new()),
        ("appendonly", "yes".into()),
        (
            "appendfsync",
            if sync { "always" } else { "everysec" }.into(),
        ),
        ("timeout", c.timeout.to_string()),
        (
            "protected-mode",
            if c.protected_mode { "yes" } else { "no" }.into(),
        ),
        ("maxmemory", "0".into()),
        ("durability", c.durability_name().into()),
        ("cores", c.cores.to_string()),
        ("cache-bytes", c.cache_bytes.to_string()),
    ]
}

fn config(ctx: &CoreCtx, args: &[Bytes]) -> Frame {
    let sub = args[1].to_ascii_uppercase();
    match sub.as_slice() {
        b"GET" if args.len() >= 3 => {
            let values = config_values(ctx);
            let pairs = values
                .into_iter()
                .filter(|(name, _)| {
                    args[2..]
                        .iter()
                        .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes()))
                })
                .map(|(name, value)| (Frame::text(name), Frame::text(value)))
                .collect();
            Frame::Map(pairs)
        }
        b"GET" => super::commands::wrong_arity("config|get"),
        b"SET" | b"RESETSTAT" | b"REWRITE" => err(format!(
            "CONFIG {} is not supported by ringkv: restart with other flags or --config",
            sanitize(&args[1], 16).to_ascii_uppercase()
        )),
        _ => err(format!(
            "unknown subcommand '{}'. Try CONFIG HELP.",
            sanitize(&args[1], 128)
        )),
    }
}

async fn dbsize(ctx: &CoreCtx) -> Frame {
    let db = ctx.db().clone();
    match ctx.shared.admin.run(move || db.stats()).await {
        Some(Ok(stats)) => Frame::Integer(stats.keys as i64),
        Some(Err(e)) => db_error(e),
        None => err("the server is shutting down"),
    }
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]; see `scan.rs`.
async fn scan(ctx: &CoreCtx, args: &[Bytes]) -> Frame {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return err("invalid cursor");
    };
    let mut pattern = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut strings_only = true;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return err("syntax error");
        };
        match args[i].to_ascii_uppercase().as_slice() {
            b"MATCH" => pattern = Some(value.clone()),
            b"COUNT" => match parse_i64(value) {
                Some(n) if n >= 1 => count = (n as usize).min(SCAN_COUNT_MAX),
                Some(_) => return err("syntax error"),
                None => return err("value is not an integer or out of range"),
            },
            b"TYPE" => strings_only = value.eq_ignore_ascii_case(b"string"),
            _ => return err("syntax error"),
        }
        i += 2;
    }
    let start = Cursor::decode(cursor);
    let kept = (cursor != 0)
        .then(|| ctx.shared.scans.get(start.id))
        .flatten();
    let (snapshot, mut id) = match kept {
        Some(snapshot) => (snapshot, start.id),
        None => {
            let db = ctx.db().clone();
            match ctx.shared.admin.run(move || Snapshot::take(&db)).await {
                Some(Ok(snapshot)) => (Arc::new(snapshot), 0),
                Some(Err(e)) => return db_error(e),
                None => return err("the server is shutting down"),
            }
        }
    };
    let position = if cursor == 0 { 0 } else { start.position };
    let (mut keys, next) = snapshot.page(position, count);
    if id == 0 && next.is_some() {
        id = ctx.shared.scans.insert(snapshot);
    }
    if !strings_only {
        keys.clear();
    }
    if let Some(pattern) = &pattern {
        keys.retain(|k| glob_match(pattern, k));
    }
    let present = join_all(keys.iter().map(|k| ctx.local.exists(k))).await;
    let keys: Vec<Frame> = keys
        .into_iter()
        .zip(present)
        .filter(|(_, present)| matches!(present, Ok(true)))
        .map(|(k, _)| Frame::bulk(k))
        .collect();
    let next = next.map_or(0, |position| Cursor { position, id }.encode());
    Frame::Array(vec![Frame::text(next.to_string()), Frame::Array(keys)])
}

/// FLUSHDB [ASYNC | SYNC]: deletes every key, a chunk at a time (not atomic: a key
/// written meanwhile may survive).
async fn flushdb(ctx: &CoreCtx, args: &[Bytes]) -> Frame {
    if let Some(mode) = args.get(1) {
        let mode = mode.to_ascii_uppercase();
        if args.len() > 2 || !(mode == b"ASYNC" || mode == b"SYNC") {
            return err("syntax error");
        }
    }
    let db = ctx.db().clone();
    let deleted = ctx
        .shared
        .admin
        .run(move || {
            let mut chunk = Vec::with_capacity(FLUSH_CHUNK_KEYS);
            let mut first_error = None;
            let mut delete = |chunk: &mut Vec<Vec<u8>>| {
                let keys = std::mem::take(chunk);
                let deletes = stream::iter(keys)
                    .map(|k| {
                        let db = db.clone();
                        async move { db.delete_async(k).await }
                    })
                    .buffer_unordered(FLUSH_CONCURRENCY)
                    .collect::<Vec<_>>();
                for result in futures_lite::future::block_on(deletes) {
                    if let Err(e) = result {
                        first_error.get_or_insert(e);
                    }
                }
            };
            db.for_each(|key, _| {
                chunk.push(key.to_vec());
                if chunk.len() >= FLUSH_CHUNK_KEYS {
                    delete(&mut chunk);
                }
            })?;
            delete(&mut chunk);
            first_error.map_or(Ok(()), Err)
        })
        .await;
    ctx.shared.scans.clear();
    match deleted {
        Some(Ok(())) => Frame::ok(),
        Some(Err(e)) => db_error(e),
        None => err("the server is shutting down"),
    }
}

/// SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE]: every write is already in the log, so the
/// options change nothing; ABORT is refused.
fn shutdown(ctx: &CoreCtx, args: &[Bytes]) -> (Option<Frame>, After) {
    for option in &args[1..] {
        match option.to_ascii_uppercase().as_slice() {
            b"NOSAVE" | b"SAVE" | b"NOW" | b"FORCE" => {}
            b"ABORT" => return (Some(err("No shutdown in progress.")), After::Continue),
            _ => return (Some(err("syntax error")), After::Continue),
        }
    }
    ctx.shared.request_stop(StopReason::Shutdown);
    (None, After::Close)
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_themselves() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(same_secret(b"", b""));
        for guess in [&b"s3cre"[..], b"s3cretx", b"S3cret", b"", b"s3cres"] {
            assert!(!same_secret(guess, b"s3cret"), "{guess:?}");
        }
    }
}
