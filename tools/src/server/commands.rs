//! The command table: every command the server knows, with its arity, key positions,
//! flags and documentation (what COMMAND and COMMAND DOCS answer), and the first look
//! at a request (`plan`): unknown command, wrong arity, authentication, and whether it
//! touches keys only (and may run beside other such commands of a pipeline) or needs
//! the connection to itself.

use bytes::Bytes;

use super::frame::{Frame, err};
use super::metrics::Kind;
use super::session::ConnState;

/// What runs a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    // Key commands (strings.rs).
    Get,
    Set,
    SetNx,
    GetSet,
    MGet,
    MSet,
    Del,
    Unlink,
    Exists,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    Append,
    StrLen,
    GetRange,
    SetRange,
    Type,
    IncrByFloat,
    // Expiry commands (expiry.rs).
    Expire,
    PExpire,
    ExpireAt,
    PExpireAt,
    Ttl,
    PTtl,
    ExpireTime,
    PExpireTime,
    Persist,
    SetEx,
    PSetEx,
    GetEx,
    GetDel,
    // Atomic commands over several keys (atomic.rs).
    MSetNx,
    Rename,
    RenameNx,
    // Transactions (multi.rs).
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    // Connection and server commands (admin.rs).
    Ping,
    Echo,
    Quit,
    Hello,
    Auth,
    Select,
    Client,
    Command,
    Config,
    Info,
    DbSize,
    Scan,
    Keys,
    RandomKey,
    Time,
    FlushDb,
    Shutdown,
    Save,
    BgSave,
    LastSave,
}

/// One command's description.
#[derive(Debug)]
pub struct Spec {
    /// Lower case, as COMMAND shows it.
    pub name: &'static str,
    pub cmd: Cmd,
    /// Redis's convention: `n` exactly n arguments (the name included), `-n` at least n.
    pub arity: i64,
    pub flags: &'static [&'static str],
    /// First key, last key (-1: the last argument), step; 0, 0, 0 without keys.
    pub keys: (i64, i64, i64),
    pub kind: Kind,
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
}

impl Spec {
    pub fn is_keyed(&self) -> bool {
        self.keys.0 > 0
    }

    /// Allowed before AUTH.
    pub fn no_auth(&self) -> bool {
        matches!(self.cmd, Cmd::Auth | Cmd::Hello | Cmd::Quit)
    }

    fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// The keys of a request for this command (its arity already checked).
    pub fn key_args<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + use<'a> {
        let (first, last, step) = self.keys;
        let len = args.len() as i64;
        let last = if last < 0 {
            len + last
        } else {
            last.min(len - 1)
        };
        let step = step.max(1) as usize;
        let (start, end) = if first > 0 && first <= last {
            (first as usize, last as usize)
        } else {
            (1, 0)
        };
        let range = start..=end;
        range.step_by(step).map(move |i| &args[i])
    }
}

const R: Kind = Kind::Read;
const W: Kind = Kind::Write;
const O: Kind = Kind::Other;

macro_rules! spec {
    ($name:literal, $cmd:ident, $arity:expr, [$($flag:literal),*], $keys:expr, $kind:expr, $group:literal, $since:literal, $summary:literal) => {
        Spec {
            name: $name,
            cmd: Cmd::$cmd,
            arity: $arity,
            flags: &[$($flag),*],
            keys: $keys,
            kind: $kind,
            group: $group,
            since: $since,
            summary: $summary,
        }
    };
}

/// Every command, in the order COMMAND lists them.
pub static COMMANDS: &[Spec] = &[
    spec!(
        "get",
        Get,
        2,
        ["readonly", "fast"],
        (1, 1, 1),
        R,
        "string",
        "1.0.0",
        "Returns the string value of a key."
    ),
    spec!(
        "set",
        Set,
        -3,
        ["write", "denyoom"],
        (1, 1, 1),
        W,
        "string",
        "1.0.0",
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."
    ),
    spec!(
        "setnx",
        SetNx,
        3,
        ["write", "denyoom", "fast"],
        (1, 1, 1),
        W,
        "string",
        "1.0.0",
        "Sets the value of a key only when the key doesn't exist."
    ),
    spec!(
        "getset",
        GetSet,
        3,
        ["write", "denyoom", "fast"],
        (1, 1, 1),
        W,
        "string",
        "1.0.0",
        "Returns the previous string value of a key after setting it to a new value."
    ),
    spec!(
        "mget",
        MGet,
        -2,
        ["readonly", "fast"],
        (1, -1, 1),
        R,
        "string",
        "1.0.0",
        "Atomically returns the string values of one or more keys (here: each key read on its own)."
    ),
    spec!(
        "mset",
        MSet,
        -3,
        ["write", "denyoom"],
        (1, -1, 2),
        W,
        "string",
        "1.0.1",
        "Sets the string values of one or more keys (here: not atomic as a whole; each key is)."
    ),
    spec!(
        "del",
        Del,
        -2,
        ["write"],
        (1, -1, 1),
        W,
        "generic",
        "1.0.0",
        "Deletes one or more keys."
    ),
    spec!(
        "unlink",
        Unlink,
        -2,
        ["write", "fast"],
        (1, -1, 1),
        W,
        "generic",
        "4.0.0",
        "Deletes one or more keys (the same as DEL here)."
    ),
    spec!(
        "exists",
        Exists,
        -2,
        ["readonly", "fast"],
        (1, -1, 1),
        R,
        "generic",
        "1.0.0",
        "Determines whether one or more keys exist."
    ),
    spec!(
        "incr",
        Incr,
        2,
        ["write", "denyoom", "fast"],
        (1, 1, 1),
        W,
        "string",
        "1.0.0",
        "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "decr",
        Decr,
        2,
        ["write", "denyoom", "fast"],
        (1, 1, 1),
        W,
        "string",
        "1.0.0",
        "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "incrby",
        IncrBy,
        3,
        ["write", "denyoom", "fast"],
        (1, 1, 1),
        W,
        "string",
        "1.0.0",
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "decrby",
        DecrBy,
        3,
        ["write", "denyoom", "fast"],
        (1, 1, 1),
        W,
        "string",
        "1.0.0",
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "append",
        Append,
        3,
        ["write", "denyoom", "fast"],
        (1, 1, 1),
        W,
        "string",
        "2.0.0",
        "Appends a string to the value of a key. Creates the key if it doesn't exist."
    ),
    spec!(
        "strlen",
        StrLen,
        2,
        ["readonly", "fast"],
        (1, 1, 1),
        R,
        "string",
        "2.2.0",
        "Returns the length of a string value."
    ),
    spec!(
        "getrange",
        GetRange,
        4,
        ["readonly"],
        (1, 1, 1),
        R,
        "string",
        "2.4.0",
        "Get a substring of the string stored at a key"
    ),
    spec!(
        "setrange",
        SetRange,
        4,
        ["write", "denyoom"],
        (1, 1, 1),
        W,
        "string",
        "2.2.0",
        "Overwrite part of a string at key starting at the specified offset"
    ),
    spec!(
        "incrbyfloat",
        IncrByFloat,
        3,
        ["write", "denyoom", "fast"],
        (1, 1, 1),
        W,
        "string",
        "2.6.0",
        "Increment the float value of a key by the given amount"
    ),
    spec!(
        "type",
        Type,
        2,
        ["readonly", "fast"],
        (1, 1, 1),
        R,
        "generic",
        "1.0.0",
        "Determine the type stored at key"
    ),
    spec!(
        "expire",
        Expire,
        -3,
        ["write", "fast"],
        (1, 1, 1),
        W,
        "generic",
        "1.0.0",
        "Sets the expiration time of a key in seconds."
    ),
    spec!(
        "pexpire",
        PExpire,
        -3,
        ["write", "fast"],
        (1, 1, 1),
        W,
        "generic",
        "2.6.0",
        "Sets the expiration time of a key in milliseconds."
    ),
    spec!(
        "expireat",
        ExpireAt,
        -3,
        ["write", "fast"],
        (1, 1, 1),
        W,
        "generic",
        "1.2.0",
        "Sets the expiration time of a key to a Unix timestamp."
    ),
    spec!(
        "pexpireat",
        PExpireAt,
        -3,
        ["write", "fast"],
        (1, 1, 1),
        W,
        "generic",
        "2.6.0",
        "Sets the expiration time of a key to a Unix milliseconds timestamp."
    ),
    spec!(
        "ttl",
        Ttl,
        2,
        ["readonly", "fast"],
        (1, 1, 1),
        R,
        "generic",
        "1.0.0",
        "Returns the expiration time in seconds of a key."
    ),
    spec!(
        "pttl",
        PTtl,
        2,
        ["readonly", "fast"],
        (1, 1, 1),
        R,
        "generic",
        "2.6.0",
        "Returns the expiration time in milliseconds of a key."
    ),
    spec!(
        "expiretime",
        ExpireTime,
        2,
        ["readonly", "fast"],
        (1, 1, 1),
        R,
        "generic",
        "7.0.0",
        "Returns the expiration time of a key as a Unix timestamp."
    ),
    spec!(
        "pexpiretime",
        PExpireTime,
        2,
        ["readonly", "fast"],
        (1, 1, 1),
        R,
        "generic",
        "7.0.0",
        "Returns the expiration time of a key as a Unix milliseconds timestamp."
    ),
    spec!(
        "persist",
        Persist,
        2,
        ["write", "fast"],
        (1, 1, 1),
        W,
        "generic",
        "2.2.0",
        "Removes the expiration time of a key."
    ),
    spec!(
        "setex",
        SetEx,
        4,
        ["write", "denyoom"],
        (1, 1, 1),
        W,
        "string",
        "2.0.0",
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."
    ),
    spec!(
        "psetex",
        PSetEx,
        4,
        ["write", "denyoom"],
        (1, 1, 1),
        W,
        "string",
        "2.6.0",
        "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."
    ),
    spec!(
        "getex",
        GetEx,
        -2,
        ["write", "fast"],
        (1, 1, 1),
        W,
        "string",
        "6.2.0",
        "Returns the string value of a key after setting its expiration time."
    ),
    spec!(
        "getdel",
        GetDel,
        2,
        ["write", "fast"],
        (1, 1, 1),
        W,
        "string",
        "6.2.0",
        "Returns the string value of a key after deleting the key."
    ),
    spec!(
        "msetnx",
        MSetNx,
        -3,
        ["write", "denyoom"],
        (1, -1, 2),
        W,
        "string",
        "1.0.1",
        "Sets the string values of one or more keys only when all keys don't exist (atomically, across cores)."
    ),
    spec!(
        "rename",
        Rename,
        3,
        ["write"],
        (1, 2, 1),
        W,
        "generic",
        "1.0.0",
        "Renames a key and overwrites the destination (atomically, across cores)."
    ),
    spec!(
        "renamenx",
        RenameNx,
        3,
        ["write", "fast"],
        (1, 2, 1),
        W,
        "generic",
        "1.0.0",
        "Renames a key only when the target key name doesn't exist (atomically, across cores)."
    ),
    spec!(
        "multi",
        Multi,
        1,
        ["noscript", "loading", "stale", "fast", "allow_busy"],
        (0, 0, 0),
        O,
        "transactions",
        "1.2.0",
        "Starts a transaction."
    ),
    spec!(
        "exec",
        Exec,
        1,
        ["noscript", "loading", "stale", "skip_slowlog"],
        (0, 0, 0),
        O,
        "transactions",
        "1.2.0",
        "Executes all commands in a transaction."
    ),
    spec!(
        "discard",
        Discard,
        1,
        ["noscript", "loading", "stale", "fast", "allow_busy"],
        (0, 0, 0),
        O,
        "transactions",
        "2.0.0",
        "Discards a transaction."
    ),
    spec!(
        "watch",
        Watch,
        -2,
        ["noscript", "loading", "stale", "fast", "allow_busy"],
        (1, -1, 1),
        O,
        "transactions",
        "2.2.0",
        "Monitors changes to keys to determine the execution of a transaction."
    ),
    spec!(
        "unwatch",
        Unwatch,
        1,
        ["noscript", "loading", "stale", "fast", "allow_busy"],
        (0, 0, 0),
        O,
        "transactions",
        "2.2.0",
        "Forgets about watched keys of a transaction."
    ),
    spec!(
        "ping",
        Ping,
        -1,
        ["fast"],
        (0, 0, 0),
        O,
        "connection",
        "1.0.0",
        "Returns the server's liveliness response."
    ),
    spec!(
        "echo",
        Echo,
        2,
        ["fast"],
        (0, 0, 0),
        O,
        "connection",
        "1.0.0",
        "Returns the given string."
    ),
    spec!(
        "quit",
        Quit,
        -1,
        ["noauth", "fast"],
        (0, 0, 0),
        O,
        "connection",
        "1.0.0",
        "Closes the connection."
    ),
    spec!(
        "hello",
        Hello,
        -1,
        ["noauth", "fast"],
        (0, 0, 0),
        O,
        "connection",
        "6.0.0",
        "Handshakes with the server: protocol 2 or 3, AUTH, SETNAME."
    ),
    spec!(
        "auth",
        Auth,
        -2,
        ["noauth", "fast"],
        (0, 0, 0),
        O,
        "connection",
        "1.0.0",
        "Authenticates the connection (user `default` only)."
    ),
    spec!(
        "select",
        Select,
        2,
        ["fast"],
        (0, 0, 0),
        O,
        "connection",
        "1.0.0",
        "Changes the selected database: only database 0 exists."
    ),
    spec!(
        "client",
        Client,
        -2,
        ["fast"],
        (0, 0, 0),
        O,
        "connection",
        "2.4.0",
        "CLIENT SETNAME, GETNAME, ID, INFO, SETINFO."
    ),
    spec!(
        "command",
        Command,
        -1,
        ["loading", "stale"],
        (0, 0, 0),
        O,
        "server",
        "2.8.13",
        "Returns detailed information about all commands; COMMAND COUNT, DOCS, INFO, LIST."
    ),
    spec!(
        "config",
        Config,
        -2,
        ["admin", "loading", "stale"],
        (0, 0, 0),
        O,
        "server",
        "2.0.0",
        "CONFIG GET: the effective value of configuration parameters (read-only here)."
    ),
    spec!(
        "info",
        Info,
        -1,
        ["loading", "stale"],
        (0, 0, 0),
        O,
        "server",
        "1.0.0",
        "Returns information and statistics about the server, the keyspace and each core."
    ),
    spec!(
        "dbsize",
        DbSize,
        1,
        ["readonly", "fast"],
        (0, 0, 0),
        R,
        "server",
        "1.0.0",
        "Returns the number of keys in the database."
    ),
    spec!(
        "keys",
        Keys,
        2,
        ["readonly"],
        (0, 0, 0),
        R,
        "generic",
        "1.0.0",
        "Find all keys matching the given pattern"
    ),
    spec!(
        "randomkey",
        RandomKey,
        1,
        ["readonly"],
        (0, 0, 0),
        R,
        "generic",
        "1.0.0",
        "Return a random key from the keyspace"
    ),
    spec!(
        "time",
        Time,
        1,
        ["loading", "stale", "fast"],
        (0, 0, 0),
        O,
        "server",
        "2.6.0",
        "Return the current server time"
    ),
    spec!(
        "scan",
        Scan,
        -2,
        ["readonly"],
        (0, 0, 0),
        R,
        "generic",
        "2.8.0",
        "Iterates over the key names in the database (cursor, MATCH, COUNT, TYPE)."
    ),
    spec!(
        "flushdb",
        FlushDb,
        -1,
        ["write"],
        (0, 0, 0),
        W,
        "server",
        "1.0.0",
        "Removes all keys (one delete per key; not atomic against concurrent writers)."
    ),
    spec!(
        "shutdown",
        Shutdown,
        -1,
        ["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        O,
        "server",
        "1.0.0",
        "Stops accepting, flushes the data and stops the server."
    ),
    spec!(
        "save",
        Save,
        1,
        ["admin", "noscript", "no_async_loading", "no_multi"],
        (0, 0, 0),
        O,
        "server",
        "1.0.0",
        "Writes a checkpoint of the database to the save directory; answers once it is complete."
    ),
    spec!(
        "bgsave",
        BgSave,
        -1,
        ["admin", "noscript", "no_async_loading"],
        (0, 0, 0),
        O,
        "server",
        "1.0.0",
        "Writes a checkpoint of the database to the save directory in the background."
    ),
    spec!(
        "lastsave",
        LastSave,
        1,
        ["loading", "stale", "fast"],
        (0, 0, 0),
        O,
        "server",
        "1.0.0",
        "Returns the Unix time of the last successful save."
    ),
];

/// The command named `name` (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// How a request is to be run.
#[derive(Debug)]
pub enum Plan {
    /// Answered without running (unknown, wrong arity, not authenticated).
    Answer(Frame),
    /// A key command: may run beside other key commands on other keys.
    Keyed(&'static Spec),
    /// Needs the connection to itself: everything before it is answered first.
    Alone(&'static Spec),
}

/// The first look at a request (`args` is never empty).
pub fn plan(args: &[Bytes], state: &ConnState) -> Plan {
    let Some(spec) = lookup(&args[0]) else {
        return Plan::Answer(unknown_command(args));
    };
    if !spec.arity_ok(args.len()) {
        return Plan::Answer(wrong_arity(spec.name));
    }
    if !state.authenticated && !spec.no_auth() {
        return Plan::Answer(Frame::Error("NOAUTH Authentication required.".into()));
    }
    if spec.is_keyed() {
        Plan::Keyed(spec)
    } else {
        Plan::Alone(spec)
    }
}

pub fn wrong_arity(name: &str) -> Frame {
    err(format!("wrong number of arguments for '{name}' command"))
}

/// Longest part of a client's text quoted back in an error, as Redis.
const QUOTE_LEN_MAX: usize = 128;

/// `ERR unknown command 'x', with args beginning with: 'a' 'b' `, as Redis words it.
pub fn unknown_command(args: &[Bytes]) -> Frame {
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= QUOTE_LEN_MAX {
            break;
        }
        let room = QUOTE_LEN_MAX - quoted.len();
        quoted.push_str(&format!("'{}' ", sanitize(arg, room)));
    }
    err(format!(
        "unknown command '{}', with args beginning with: {quoted}",
        sanitize(&args[0], QUOTE_LEN_MAX)
    ))
}

/// Client text made safe for an error line: at most `len` bytes, control bytes as `?`.
pub fn sanitize(bytes: &[u8], len: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(len)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// COMMAND's description of one command.
pub fn command_info(spec: &Spec) -> Frame {
    Frame::Array(vec![
        Frame::text(spec.name),
        Frame::Integer(spec.arity),
        Frame::Array(spec.flags.iter().map(|f| Frame::Simple(f)).collect()),
        Frame::Integer(spec.keys.0),
        Frame::Integer(spec.keys.1),
        Frame::Integer(spec.keys.2),
        Frame::Array(vec![Frame::text(format!("@{}", spec.group))]),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

/// COMMAND DOCS's description of one command.
pub fn command_docs(spec: &Spec) -> Frame {
    Frame::Map(vec![
        (Frame::text("summary"), Frame::text(spec.summary)),
        (Frame::text("since"), Frame::text(spec.since)),
        (Frame::text("group"), Frame::text(spec.group)),
        (Frame::text("complexity"), Frame::text("O(1) per key")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn key_positions() {
        let mset = lookup(b"MSET").unwrap();
        let a = args(&["mset", "a", "1", "b", "2"]);
        let keys: Vec<_> = mset.key_args(&a).collect();
        assert_eq!(keys, vec![&a[1], &a[3]]);
        let get = lookup(b"get").unwrap();
        let a = args(&["get", "k"]);
        assert_eq!(get.key_args(&a).count(), 1);
        assert_eq!(lookup(b"ping").unwrap().key_args(&a).count(), 0);
    }

    #[test]
    fn unknown_command_is_worded_as_redis() {
        let Frame::Error(text) = unknown_command(&args(&["foo", "a", "b"])) else {
            panic!()
        };
        assert_eq!(
            text,
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        let Frame::Error(text) = unknown_command(&args(&["nope"])) else {
            panic!()
        };
        assert_eq!(
            text,
            "ERR unknown command 'nope', with args beginning with: "
        );
    }

    #[test]
    fn every_command_has_a_unique_lower_case_name() {
        let mut names: Vec<_> = COMMANDS.iter().map(|s| s.name).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase()))
        );
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len());
    }
}
