//! One client connection, served by a task on the core that accepted it.
//!
//! The loop: parse every whole request in the input buffer, run them, write the
//! replies, read more. Replies always go out in request order. Key commands of a
//! pipeline run concurrently as long as no two of them touch the same key (a command
//! on a key already in flight first waits for everything before it); any other command
//! waits for everything before it and runs alone. Without pipelining this is one
//! command at a time. One exception to "same key waits": a plain `SET k v` that follows
//! a plain `SET k` not yet started absorbs it (only the last value is written; both are
//! answered when it is acknowledged), as if the two had run back to back.
//!
//! Bounds: one request may take at most `max_input_bytes` (the parser refuses it as
//! soon as its headers show it would not fit), and the input buffer holds at most that
//! plus one read. A reply larger than `max_output_bytes` is replaced by an error, and
//! replies are written out whenever `OUTPUT_FLUSH_BYTES` have gathered, so at most
//! `max_output_bytes` plus that much waits in memory. Malformed input gets
//! `-ERR Protocol error: …` and the connection is closed.
//!
//! A command future is never dropped before it completes (the library's in-place calls
//! count themselves in flight until they finish): only reads race with shutdown.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_util::future::join_all;
use glommio::net::TcpStream;

use super::admin::{self, After};
use super::commands::{self, Cmd, Plan};
use super::frame::{Frame, err};
use super::metrics::{CoreMetrics, Kind};
use super::resp::{self, Args, Parsed};
use super::session::ConnState;
use super::shared::CoreCtx;
use super::{atomic, expiry, multi, strings};

/// Bytes asked of the socket per read, at least.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Replies gathered past this are written before more commands run.
const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;
/// Most key commands of one connection in flight together.
const RUN_MAX: usize = 128;
/// Before AUTH (when a password is set): Redis's bounds for unauthenticated clients.
const UNAUTHENTICATED_ARGS_MAX: usize = 10;
const UNAUTHENTICATED_BULK_LEN_MAX: usize = 16 * 1024;

type Pending = Pin<Box<dyn Future<Output = Frame>>>;

/// One request of a run.
enum Job {
    /// Not started yet (futures do nothing until polled).
    Pending(Pending),
    /// Answered without running.
    Answer(Frame),
    /// A plain SET overwritten by the plain SET of the same key at this index before it
    /// ran: it is answered with that one's reply.
    Absorbed(usize),
}

/// Key commands to run together, in request order, and the keys they touch.
struct Run {
    jobs: Vec<Job>,
    /// Each key and the job that touches it.
    keys: HashMap<Bytes, usize>,
    /// Jobs that are a plain `SET key value`.
    plain_sets: HashSet<usize>,
    started: Instant,
}

impl Run {
    fn new() -> Run {
        Run {
            jobs: Vec::new(),
            keys: HashMap::new(),
            plain_sets: HashSet::new(),
            started: Instant::now(),
        }
    }

    fn admits(&self, keys: &[Bytes]) -> bool {
        self.jobs.len() < RUN_MAX && keys.iter().all(|k| !self.keys.contains_key(k))
    }

    /// If the job on `key` is a plain SET not yet started, marks it absorbed by the job
    /// about to be pushed and says so.
    fn absorb_set(&mut self, key: &Bytes) -> bool {
        let Some(&earlier) = self.keys.get(key) else {
            return false;
        };
        if self.jobs.len() >= RUN_MAX || !self.plain_sets.remove(&earlier) {
            return false;
        }
        self.jobs[earlier] = Job::Absorbed(self.jobs.len());
        true
    }
}

/// Whether the connection goes on.
enum Flow {
    Continue,
    Close,
}

struct Conn {
    ctx: Rc<CoreCtx>,
    stream: TcpStream,
    input: BytesMut,
    /// The buffer must hold at least this many bytes before parsing is worth trying.
    input_len_min: usize,
    output: Vec<u8>,
    state: ConnState,
}

/// Serves one accepted connection until the client leaves, errs, or the server stops.
pub async fn serve(ctx: Rc<CoreCtx>, stream: TcpStream, state: ConnState) {
    let mut conn = Conn {
        ctx,
        stream,
        input: BytesMut::with_capacity(READ_CHUNK_BYTES),
        input_len_min: 1,
        output: Vec::with_capacity(READ_CHUNK_BYTES),
        state,
    };
    loop {
        let flow = conn.process_input().await;
        if conn.write_output().await.is_err() {
            return;
        }
        if matches!(flow, Flow::Close) || conn.ctx.shared.is_stopping() {
            let _ = conn.stream.close().await;
            return;
        }
        if !conn.read_more().await {
            return;
        }
    }
}

impl Conn {
    fn limits(&self) -> resp::Limits {
        let config = &self.ctx.shared.config;
        if self.state.authenticated {
            resp::Limits {
                bulk_len_max: ringkv::VALUE_LEN_MAX,
                args_max: config.max_args,
                request_len_max: config.max_input_bytes,
            }
        } else {
            resp::Limits {
                bulk_len_max: UNAUTHENTICATED_BULK_LEN_MAX,
                args_max: UNAUTHENTICATED_ARGS_MAX,
                request_len_max: config.max_input_bytes,
            }
        }
    }

    /// Runs every whole request in the input buffer and queues the replies.
    async fn process_input(&mut self) -> Flow {
        let mut run = Run::new();
        while self.input.len() >= self.input_len_min {
            let parsed = resp::parse(&self.input, &self.limits());
            match parsed {
                Ok(Parsed::Command { args, len }) => {
                    let request = self.input.split_to(len).freeze();
                    let args: Vec<Bytes> = match args {
                        Args::Ranges(ranges) => {
                            ranges.into_iter().map(|r| request.slice(r)).collect()
                        }
                        Args::Owned(owned) => owned.into_iter().map(Bytes::from).collect(),
                    };
                    self.input_len_min = 1;
                    if let Flow::Close = self.dispatch(&mut run, args).await {
                        self.drain(&mut run).await;
                        return Flow::Close;
                    }
                    if self.output.len() >= OUTPUT_FLUSH_BYTES {
                        self.drain(&mut run).await;
                        if self.write_output().await.is_err() {
                            return Flow::Close;
                        }
                    }
                }
                Ok(Parsed::Skip { len }) => self.input.advance(len),
                Ok(Parsed::Incomplete { len_min }) => self.input_len_min = len_min,
                Err(e) => {
                    self.drain(&mut run).await;
                    CoreMetrics::add(&self.ctx.shared.protocol_errors, 1);
                    self.emit(err(e.to_string()));
                    return Flow::Close;
                }
            }
        }
        self.drain(&mut run).await;
        Flow::Continue
    }

    async fn dispatch(&mut self, run: &mut Run, args: Vec<Bytes>) -> Flow {
        let plan = commands::plan(&args, &self.state);
        if multi::takes(&self.state, &plan) {
            self.drain(run).await;
            let started = Instant::now();
            let frame = multi::step(&self.ctx, &mut self.state, plan, args).await;
            self.ctx.metrics.record(Kind::Other, started.elapsed());
            self.emit(frame);
            return Flow::Continue;
        }
        match plan {
            Plan::Answer(frame) => {
                self.ctx
                    .metrics
                    .record(Kind::Other, std::time::Duration::ZERO);
                run.jobs.push(Job::Answer(frame));
                Flow::Continue
            }
            Plan::Keyed(spec) => {
                let keys: Vec<Bytes> = spec.key_args(&args).cloned().collect();
                // SET k a; SET k b with nothing on k between: only b is written, and
                // both are answered when it is (write absorption). Without it, a hot
                // key's pipelined Sync writes would wait for one commit each.
                let plain_set = spec.cmd == Cmd::Set && args.len() == 3;
                let absorbed = plain_set && run.absorb_set(&keys[0]);
                if !absorbed && !run.admits(&keys) {
                    self.drain(run).await;
                }
                let index = run.jobs.len();
                if plain_set {
                    run.plain_sets.insert(index);
                }
                run.keys.extend(keys.into_iter().map(|k| (k, index)));
                let ctx = self.ctx.clone();
                run.jobs.push(Job::Pending(Box::pin(async move {
                    let started = Instant::now();
                    let metrics = ctx.metrics.clone();
                    let frame = if expiry::handles(spec.cmd) {
                        expiry::execute(ctx, spec.cmd, args).await
                    } else if atomic::handles(spec.cmd) {
                        atomic::execute(&ctx, spec.cmd, args).await
                    } else {
                        strings::execute(ctx, spec.cmd, args).await
                    };
                    metrics.record(spec.kind, started.elapsed());
                    frame
                })));
                Flow::Continue
            }
            Plan::Alone(spec) => {
                self.drain(run).await;
                let started = Instant::now();
                let (frame, after) = admin::execute(&self.ctx, &mut self.state, spec, args).await;
                self.ctx.metrics.record(spec.kind, started.elapsed());
                if let Some(frame) = frame {
                    self.emit(frame);
                }
                match after {
                    After::Continue => Flow::Continue,
                    After::Close => Flow::Close,
                }
            }
        }
    }

    /// Runs the run's commands concurrently and queues their replies, in order.
    async fn drain(&mut self, run: &mut Run) {
        let jobs = std::mem::take(&mut run.jobs);
        run.keys.clear();
        run.plain_sets.clear();
        let mut frames: Vec<Option<Frame>> = Vec::with_capacity(jobs.len());
        let mut pending = Vec::new();
        let mut absorbed = Vec::new();
        for (i, job) in jobs.into_iter().enumerate() {
            match job {
                Job::Answer(frame) => frames.push(Some(frame)),
                Job::Pending(future) => {
                    frames.push(None);
                    pending.push((i, future));
                }
                Job::Absorbed(by) => {
                    frames.push(None);
                    absorbed.push((i, by));
                }
            }
        }
        let (indexes, futures): (Vec<usize>, Vec<Pending>) = pending.into_iter().unzip();
        for (i, frame) in indexes.into_iter().zip(join_all(futures).await) {
            frames[i] = Some(frame);
        }
        // An absorbing SET comes later than the one it absorbs: resolve from the end.
        for &(i, by) in absorbed.iter().rev() {
            frames[i] = frames[by].clone();
            self.ctx.metrics.record(Kind::Write, run.started.elapsed());
        }
        run.started = Instant::now();
        for frame in frames {
            self.emit(frame.expect("every job of a run is answered"));
        }
    }

    /// Queues one reply (an error instead when it is larger than the output limit).
    fn emit(&mut self, frame: Frame) {
        let limit = self.ctx.shared.config.max_output_bytes;
        let size = frame.encoded_len_max();
        if size > limit {
            let refused = err(format!(
                "the reply would take about {size} bytes, more than the output limit of {limit} bytes"
            ));
            refused.encode(self.state.protocol, &mut self.output);
        } else {
            frame.encode(self.state.protocol, &mut self.output);
        }
    }

    async fn write_output(&mut self) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.output).await;
        CoreMetrics::add(&self.ctx.metrics.net_output_bytes, self.output.len() as u64);
        self.output.clear();
        if self.output.capacity() > OUTPUT_FLUSH_BYTES * 4 {
            self.output.shrink_to(OUTPUT_FLUSH_BYTES);
        }
        result
    }

    /// Reads what the socket has; false at end of stream, on error, or when the server
    /// is stopping.
    /// Reads what the client sent next; false when the connection is to close (the
    /// client went, the server stops, or the client was silent for `timeout`).
    async fn read_more(&mut self) -> bool {
        let old_len = self.input.len();
        let want = read_size(old_len, self.input_len_min);
        self.input.resize(old_len + want, 0);
        let Conn {
            ctx, stream, input, ..
        } = self;
        let read = async { Some(stream.read(&mut input[old_len..]).await) };
        let stop = async {
            ctx.shared.stopped().await;
            None
        };
        let idle = async {
            match ctx.shared.config.timeout {
                0 => std::future::pending().await,
                secs => glommio::timer::sleep(std::time::Duration::from_secs(secs)).await,
            }
            None
        };
        let result = futures_lite::future::or(read, futures_lite::future::or(stop, idle)).await;
        match result {
            Some(Ok(n)) if n > 0 => {
                self.input.truncate(old_len + n);
                CoreMetrics::add(&self.ctx.metrics.net_input_bytes, n as u64);
                true
            }
            _ => false,
        }
    }
}

/// How many bytes to ask of the socket with `have` buffered and a request that needs
/// `need` in all: at least a chunk, and towards `need` at most as many bytes again as
/// have arrived, so a header that announces a large value cannot make the buffer grow
/// before its bytes come (it doubles with what arrives instead).
fn read_size(have: usize, need: usize) -> usize {
    need.saturating_sub(have).min(have).max(READ_CHUNK_BYTES)
}

/// The reply to a client refused because `maxclients` are connected.
pub fn too_many_clients() -> Frame {
    err("max number of clients reached")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_grows_with_what_arrives_not_with_what_a_header_announces() {
        assert_eq!(read_size(0, 500 << 20), READ_CHUNK_BYTES);
        assert_eq!(read_size(READ_CHUNK_BYTES, 500 << 20), READ_CHUNK_BYTES);
        assert_eq!(read_size(1 << 20, 500 << 20), 1 << 20);
        assert_eq!(read_size(1 << 20, (1 << 20) + 10), READ_CHUNK_BYTES);
        assert_eq!(read_size(100, 0), READ_CHUNK_BYTES);
    }
}
