//! State the cores share (`Shared`, one per server, behind an `Arc`), the state of one
//! core (`CoreCtx`, behind an `Rc` on its own thread), and the helper threads that run
//! the database's blocking calls (`Admin`) so that no core ever blocks on itself.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use event_listener::Event;
use futures_channel::oneshot;

use super::config::Config;
use super::frame::{Frame, db_error};
use super::metrics::CoreMetrics;
use super::scan::ScanCache;

/// Why the server stops.
#[derive(Debug)]
pub enum StopReason {
    Signal(&'static str),
    Shutdown,
}

/// One per server.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub started: Instant,
    /// 40 hex digits, new at each start (INFO `run_id`).
    pub run_id: String,
    pub port: u16,
    pub clients: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub connections_received: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub metrics: Vec<Arc<CoreMetrics>>,
    pub scans: ScanCache,
    pub admin: Admin,
    pub saves: super::save::Saves,
    stopping: AtomicBool,
    stop_event: Event,
    stop_requests: Mutex<mpsc::Sender<StopReason>>,
}

impl Shared {
    pub fn new(
        config: Config,
        port: u16,
        cores: usize,
        stop_requests: mpsc::Sender<StopReason>,
    ) -> Shared {
        Shared {
            config,
            started: Instant::now(),
            run_id: run_id(),
            port,
            clients: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
            connections_received: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            metrics: (0..cores).map(|_| Arc::new(CoreMetrics::new())).collect(),
            scans: ScanCache::default(),
            admin: Admin::start(ADMIN_THREADS),
            saves: super::save::Saves::new(),
            stopping: AtomicBool::new(false),
            stop_event: Event::new(),
            stop_requests: Mutex::new(stop_requests),
        }
    }

    /// Asks the main thread to stop the server (the SHUTDOWN command).
    pub fn request_stop(&self, reason: StopReason) {
        let _ = self
            .stop_requests
            .lock()
            .expect("not poisoned")
            .send(reason);
    }

    /// Tells every listener and connection to stop (called by the main thread).
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_event.notify(usize::MAX);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Completes once the server is stopping.
    pub async fn stopped(&self) {
        loop {
            if self.is_stopping() {
                return;
            }
            let listener = self.stop_event.listen();
            if self.is_stopping() {
                return;
            }
            listener.await;
        }
    }
}

fn run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::with_capacity(40);
    while id.len() < 40 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id.truncate(40);
    id
}

/// Threads for the database calls that block (stats, iteration, compaction): a core
/// must never call them itself, since they wait for every core, its own included.
const ADMIN_THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
pub struct Admin {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Admin {
    fn start(threads: usize) -> Admin {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("ringkv-admin-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().expect("not poisoned").recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("starting an admin thread");
        }
        Admin {
            jobs: Mutex::new(tx),
        }
    }

    /// Runs `f` on a helper thread; `None` if the helpers are gone.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.lock().expect("not poisoned").send(job).ok()?;
        rx.await.ok()
    }
}

/// One core's serving state, shared by its listener and connections.
#[derive(Debug)]
pub struct CoreCtx {
    pub local: ringkv::Local,
    pub shared: Arc<Shared>,
    pub metrics: Arc<CoreMetrics>,
}

impl CoreCtx {
    pub fn new(local: ringkv::Local, shared: Arc<Shared>) -> CoreCtx {
        let metrics = shared.metrics[local.core()].clone();
        CoreCtx {
            local,
            shared,
            metrics,
        }
    }

    pub fn db(&self) -> &ringkv::Db {
        self.local.db()
    }

    /// The reply to a read of one key's value, counted as a hit or a miss.
    pub fn answer_read(&self, read: ringkv::Result<Option<bytes::Bytes>>) -> Frame {
        match read {
            Ok(value) => {
                self.count_hit(value.is_some());
                Frame::optional(value)
            }
            Err(e) => db_error(e),
        }
    }

    /// Counts a read of a key as a hit (it was there) or a miss, for INFO.
    pub fn count_hit(&self, hit: bool) {
        let m = &self.metrics;
        CoreMetrics::add(
            if hit {
                &m.keyspace_hits
            } else {
                &m.keyspace_misses
            },
            1,
        );
    }
}
