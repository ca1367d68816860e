//! What a connection knows about its client (its id, address, protocol, whether it
//! authenticated, the names CLIENT SETNAME and SETINFO gave it), and the Redis version
//! this server speaks for. Its own module so that the connection loop, the command
//! table and the commands that read or change it all depend on it, not on each other.

use std::time::Instant;

use bytes::Bytes;

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
        }
    }
}
