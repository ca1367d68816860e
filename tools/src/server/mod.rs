//! `ringkv serve`: a Redis-protocol (RESP2 and RESP3) server over a ringkv database,
//! thread per core.
//!
//! Every core of the database runs, on its own glommio executor, a listener bound to
//! the same address with SO_REUSEPORT (the kernel spreads connections over them) and a
//! task per connection. A connection's commands go through the core's `ringkv::Local`
//! handle: keys this core owns are served in place, the others cross to their core on
//! the library's lock-free queues. No other executor is started; blocking database
//! calls (stats, iteration) run on two helper threads (`shared::Admin`), the Prometheus
//! endpoint on one more, and the main thread waits for SIGINT, SIGTERM or SHUTDOWN.
//!
//! Stopping: the listeners stop accepting, each connection finishes the requests it has
//! read and writes their replies, then (after at most `DRAIN_TIMEOUT`) the database is
//! closed, which flushes everything acknowledged, and the process exits 0.
//!
//! Modules: `config` (flags and TOML), `resp` (request parser, std only), `frame`
//! (replies, RESP2/RESP3), `conn` (a connection: pipelining, limits), `commands` (the
//! table), `strings` (key commands), `expiry` (EXPIRE, TTL and their kin, SET's and
//! GETEX's expiry options), `admin` (connection and server commands), `info`,
//! `scan` (SCAN's cursor), `metrics` (Prometheus), `shared` (state).

mod admin;
mod atomic;
mod commands;
mod config;
mod conn;
mod expiry;
mod float;
mod frame;
mod info;
mod keys;
mod keyspace;
mod metrics;
mod multi;
pub mod resp;
mod save;
mod scan;
mod session;
mod shared;
mod strings;
mod system;

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use nix::sys::signal::{SigSet, Signal};

use config::Config;
pub use config::ServeArgs;
use frame::Frame;
use session::ConnState;
use shared::{CoreCtx, Shared, StopReason};

/// How long stopping waits for connections to finish what they have read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the server until a signal or SHUTDOWN; the process's exit code.
pub fn run(args: ServeArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringkv serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let config = Config::resolve(args)?;
    // Blocked here before any thread starts, so every thread inherits the mask and the
    // signals wait for the one thread that asks for them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let addr = free_address(&config)?;
    let db = ringkv::Db::open(&config.dir, config.db_options())
        .map_err(|e| format!("opening {}: {e}", config.dir.display()))?;
    let (stop_tx, stop_rx) = mpsc::channel();
    let shared = Arc::new(Shared::new(
        config.clone(),
        addr.port(),
        db.cores(),
        stop_tx.clone(),
    ));
    if let Err(e) = start_listeners(&db, &shared, addr) {
        let _ = db.close();
        return Err(e);
    }
    if let Some(metrics_addr) = config.metrics_addr {
        let listener = std::net::TcpListener::bind(metrics_addr)
            .map_err(|e| format!("binding the metrics address {metrics_addr}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        let (shared, db) = (shared.clone(), db.clone());
        std::thread::Builder::new()
            .name("ringkv-metrics".into())
            .spawn(move || metrics::serve(listener, shared, db))
            .map_err(|e| format!("starting the metrics thread: {e}"))?;
        println!("ringkv serve: metrics on http://{bound}/metrics");
    }
    std::thread::Builder::new()
        .name("ringkv-signals".into())
        .spawn(move || {
            if let Ok(signal) = signals.wait() {
                let _ = stop_tx.send(StopReason::Signal(signal.as_str()));
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    println!(
        "ringkv serve: listening on {addr} ({} cores, durability {}, data in {})",
        db.cores(),
        config.durability_name(),
        config.dir.display()
    );
    let _ = std::io::stdout().flush();

    let reason = stop_rx.recv().unwrap_or(StopReason::Shutdown);
    let why = match reason {
        StopReason::Signal(name) => name,
        StopReason::Shutdown => "SHUTDOWN",
    };
    eprintln!("ringkv serve: stopping ({why}): no new connections");
    shared.begin_stop();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while shared.clients.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    db.close()
        .map_err(|e| format!("closing the database: {e}"))?;
    eprintln!("ringkv serve: stopped; every acknowledged write is on disk");
    Ok(())
}

/// The address to listen on, checked free: SO_REUSEPORT would otherwise let this
/// server share a port with another one of the same user. Port 0 becomes a free port.
fn free_address(config: &Config) -> Result<SocketAddr, String> {
    let wanted = (config.bind.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|e| format!("address {}:{}: {e}", config.bind, config.port))?
        .next()
        .ok_or_else(|| format!("address {} resolves to nothing", config.bind))?;
    let probe = std::net::TcpListener::bind(wanted)
        .map_err(|e| format!("cannot listen on {wanted}: {e}"))?;
    probe.local_addr().map_err(|e| e.to_string())
}

/// Binds a listener on every core and starts its accept loop.
fn start_listeners(db: &ringkv::Db, shared: &Arc<Shared>, addr: SocketAddr) -> Result<(), String> {
    for core in 0..db.cores() {
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = shared.clone();
        db.spawn_on_core(core, move |local| async move {
            match listen(addr) {
                Ok(listener) => {
                    let _ = ready_tx.send(Ok(()));
                    accept_loop(Rc::new(CoreCtx::new(local, shared)), listener).await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            }
        })
        .map_err(|e| format!("starting core {core}: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("core {core} cannot listen on {addr}: {e}")),
            Err(_) => return Err(format!("core {core} stopped before listening")),
        }
    }
    Ok(())
}

/// A listening socket on `addr` for this core's executor, with SO_REUSEPORT (every core
/// listens on the same port; the kernel spreads connections) and SO_REUSEADDR (a
/// restart can bind while the last run's connections are still closing, as Redis
/// can). glommio's own `TcpListener::bind` sets only the first.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, setsockopt, socket,
        sockopt,
    };
    use std::os::fd::{AsRawFd as _, FromRawFd as _, IntoRawFd as _};
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    nix::sys::socket::listen(
        &fd,
        Backlog::new(LISTEN_BACKLOG).map_err(std::io::Error::from)?,
    )?;
    // SAFETY: `fd` is a bound, listening TCP socket that nothing else refers to;
    // `into_raw_fd` gives up our ownership, and the listener closes it when dropped.
    Ok(unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) })
}

/// Pending connections per listener, as Redis's default `tcp-backlog`.
const LISTEN_BACKLOG: i32 = 511;

/// Accepts connections on one core until the server stops.
async fn accept_loop(ctx: Rc<CoreCtx>, listener: TcpListener) {
    let shared = ctx.shared.clone();
    loop {
        let accept = async { Some(listener.accept().await) };
        let stop = async {
            shared.stopped().await;
            None
        };
        let stream = match futures_lite::future::or(accept, stop).await {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                // Out of descriptors, typically: wait a little rather than spin.
                eprintln!("ringkv serve: accept on core {}: {e}", ctx.local.core());
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.connections_received.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        if shared.clients.fetch_add(1, Ordering::SeqCst) >= shared.config.maxclients {
            shared.clients.fetch_sub(1, Ordering::SeqCst);
            shared.connections_rejected.fetch_add(1, Ordering::Relaxed);
            glommio::spawn_local(reject(stream, conn::too_many_clients())).detach();
            continue;
        }
        if protected_from(&shared.config, stream.peer_addr().ok()) {
            shared.clients.fetch_sub(1, Ordering::SeqCst);
            shared.connections_rejected.fetch_add(1, Ordering::Relaxed);
            glommio::spawn_local(reject(stream, Frame::Error(DENIED.into()))).detach();
            continue;
        }
        ctx.metrics.connections.fetch_add(1, Ordering::Relaxed);
        ctx.metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let state = ConnState::new(id, peer, shared.config.requirepass.is_none());
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            conn::serve(ctx.clone(), stream, state).await;
            ctx.metrics.connections.fetch_sub(1, Ordering::Relaxed);
            ctx.shared.clients.fetch_sub(1, Ordering::SeqCst);
        })
        .detach();
    }
}

/// Redis's answer to a client from another machine in protected mode, word for word.
const DENIED: &str = "DENIED Redis is running in protected mode because protected mode is \
    enabled and no password is set for the default user. In this mode connections are only \
    accepted from the loopback interface. If you want to connect from external computers to \
    Redis you may adopt one of the following solutions: 1) Just disable protected mode \
    sending the command 'CONFIG SET protected-mode no' from the loopback interface by \
    connecting to Redis from the same host the server is running, however MAKE SURE Redis \
    is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this \
    change permanent. 2) Alternatively you can just disable the protected mode by editing \
    the Redis configuration file, and setting the protected mode option to 'no', and then \
    restarting the server. 3) If you started the server manually just for testing, restart \
    it with the '--protected-mode no' option. 4) Set up an authentication password for the \
    default user. NOTE: You only need to do one of the above things in order for the server \
    to start accepting connections from the outside.";

/// Whether protected mode turns away a client at `peer`: no password is set and the
/// client is not on this machine's loopback (an unknown address counts as remote).
fn protected_from(config: &Config, peer: Option<SocketAddr>) -> bool {
    let loopback = peer.is_some_and(|p| match p.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    });
    config.protected_mode && config.requirepass.is_none() && !loopback
}

/// Tells a client it is turned away, and why, and closes.
async fn reject(mut stream: glommio::net::TcpStream, why: Frame) {
    use futures_lite::AsyncWriteExt;
    let mut reply = Vec::new();
    why.encode(frame::Protocol::Resp2, &mut reply);
    let _ = stream.write_all(&reply).await;
    let _ = stream.close().await;
}
