//! What a connection knows about its client (its id, address, protocol, whether it
//! authenticated, the names CLIENT SETNAME and SETINFO gave it), and the Redis version
//! this server speaks for. Its own module so that the connection loop, the command
//! table and the commands that read or change it all depend on it, not on each other.

use std::time::Instant;

use bytes::Bytes;

use super::commands::Spec;
use super::frame::Protocol;

/// The Redis version whose commands and replies this server follows.
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";

/// What a connection knows about its client.
#[derive(Debug)]
pub struct ConnState {
    pub id: u64,
    pub addr: String,
    pub protocol: Protocol,
    pub authenticated: bool,
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_version: Option<Bytes>,
    pub created: Instant,
    /// Commands queued since MULTI (`None`: no MULTI open).
    pub multi: Option<Multi>,
    /// The keys WATCH read, with the versions EXEC checks.
    pub watch: Option<ringkv::Transaction>,
}

/// What a connection holds between MULTI and EXEC.
#[derive(Debug, Default)]
pub struct Multi {
    pub queued: Vec<(&'static Spec, Vec<Bytes>)>,
    /// A queued command was refused: EXEC answers EXECABORT.
    pub failed: bool,
}

impl ConnState {
    pub fn new(id: u64, addr: String, authenticated: bool) -> ConnState {
        ConnState {
            id,
            addr,
            protocol: Protocol::Resp2,
            authenticated,
            name: None,
            lib_name: None,
            lib_version: None,
            created: Instant::now(),
            multi: None,
            watch: None,
        }
    }
}
