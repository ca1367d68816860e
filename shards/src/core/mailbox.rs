//! A core's mailbox: how requests from other threads reach the core, and how their
//! answers get back.
//!
//! - **Queue.** One bounded lock-free queue (crossbeam `ArrayQueue`) per core; the core
//!   drains it in its serve loop.
//! - **Waking the core.** When the core finds the queue empty it registers its task's
//!   waker, sets `waiting`, looks at the queue once more and waits. A caller that
//!   queues a request wakes the core only if it takes `waiting` (a swap), and the wake
//!   goes through glommio's foreign-wake path: that costs a system call (an eventfd
//!   write) only when the executor really sleeps; while it runs, or spins before
//!   parking, it sees the wake without one. No socket, no byte per request.
//! - **Answers.** Each op carries a [`ReplyTo`] typed by its own answer (a get's
//!   `Option<Bytes>`, an exists' `bool`): a oneshot channel for async callers, or, for
//!   blocking callers, the calling thread's own reusable [`ReplySlot`] for that answer
//!   type, which the caller spins on briefly (when the machine has a CPU to spare) and
//!   then parks on.
//!
//! Invariants: every queued request is answered or its `ReplyTo` is dropped, which tells
//! its caller it was cancelled; the one exception is a request whose task glommio loses
//! with a dying executor, which callers learn of from [`CoreShared::died`]. A slot
//! answers only the call it was armed for (a generation number), so a late answer can
//! never reach a later call.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use event_listener::Event;
use futures_util::task::AtomicWaker;

use bytes::Bytes;

use super::Op;
use crate::error::{Error, Result};

/// What a core's queue carries: a call for a key's core, or the order to shut down.
#[derive(Debug)]
pub(crate) enum Request {
    /// The key's hash (0 for a call on the core as a whole) and what to do; the answer
    /// goes where the op's own [`ReplyTo`] says.
    Call {
        hash: u64,
        op: Op,
    },
    Shutdown(ReplyTo<()>),
}

/// Where a request's answer, of type `T`, goes. Dropping it unanswered tells the
/// caller the request was cancelled.
#[derive(Debug)]
pub(crate) struct ReplyTo<T: Send + 'static>(Option<Target<T>>);

#[derive(Debug)]
enum Target<T: Send + 'static> {
    Task(futures_channel::oneshot::Sender<Result<T>>),
    Thread { slot: Arc<ReplySlot<T>>, call: u64 },
}

impl<T: Send + 'static> ReplyTo<T> {
    /// An answer an async caller awaits.
    pub(crate) fn task() -> (Self, futures_channel::oneshot::Receiver<Result<T>>) {
        let (tx, rx) = futures_channel::oneshot::channel();
        (Self(Some(Target::Task(tx))), rx)
    }

    pub(crate) fn send(mut self, result: Result<T>) {
        match self.0.take() {
            Some(Target::Task(tx)) => drop(tx.send(result)),
            Some(Target::Thread { slot, call }) => slot.fill(call, Some(result)),
            None => {}
        }
    }
}

impl<T: Send + 'static> Drop for ReplyTo<T> {
    fn drop(&mut self) {
        // A task's receiver sees its sender dropped by itself.
        if let Some(Target::Thread { slot, call }) = self.0.take() {
            slot.fill(call, None);
        }
    }
}

/// An answer a blocking caller can wait for in its thread's own slot: each such type
/// has one slot per thread.
pub(crate) trait Answer: Send + Sized + 'static {
    fn thread_slot() -> Arc<ReplySlot<Self>>;
}

macro_rules! thread_slots {
    ($($slot:ident: $answer:ty),* $(,)?) => {$(
        thread_local! {
            static $slot: Arc<ReplySlot<$answer>> = Arc::new(ReplySlot::new());
        }
        impl Answer for $answer {
            fn thread_slot() -> Arc<ReplySlot<Self>> {
                $slot.with(Arc::clone)
            }
        }
    )*};
}

thread_slots! {
    DONE_SLOT: (),
    BOOL_SLOT: bool,
    VALUE_SLOT: Option<Bytes>,
    HEAD_SLOT: Option<super::Head>,
}

const EMPTY: u8 = 0;
const FILLED: u8 = 1;

/// A blocking caller's answer slot, reused by every call its thread makes (one at a
/// time): no allocation per call.
#[derive(Debug)]
pub(crate) struct ReplySlot<T> {
    thread: Thread,
    /// The call the slot is armed for.
    call: AtomicU64,
    state: AtomicU8,
    /// `Some(None)`: the request was dropped unanswered.
    answer: Mutex<Option<Option<Result<T>>>>,
}

impl<T: Answer> ReplySlot<T> {
    fn new() -> Self {
        Self {
            thread: std::thread::current(),
            call: AtomicU64::new(0),
            state: AtomicU8::new(EMPTY),
            answer: Mutex::new(None),
        }
    }

    /// This thread's slot, armed for a new call: the `ReplyTo` to send with it.
    pub(crate) fn arm() -> (Arc<Self>, ReplyTo<T>) {
        let slot = T::thread_slot();
        let call = slot.call.fetch_add(1, Ordering::SeqCst) + 1;
        *slot.answer.lock().expect("not poisoned") = None;
        slot.state.store(EMPTY, Ordering::SeqCst);
        let reply = ReplyTo(Some(Target::Thread {
            slot: slot.clone(),
            call,
        }));
        (slot, reply)
    }
}

impl<T: Send + 'static> ReplySlot<T> {
    fn fill(&self, call: u64, answer: Option<Result<T>>) {
        {
            let mut held = self.answer.lock().expect("not poisoned");
            if self.call.load(Ordering::SeqCst) != call || held.is_some() {
                return; // a call its thread no longer waits for
            }
            *held = Some(answer);
            self.state.store(FILLED, Ordering::SeqCst);
        }
        // Cheap unless the thread is parked (std's parker wakes a futex only then).
        self.thread.unpark();
    }

    fn take(&self) -> Option<Option<Result<T>>> {
        if self.state.load(Ordering::SeqCst) != FILLED {
            return None;
        }
        self.answer.lock().expect("not poisoned").take()
    }

    /// Waits for the answer: spins for a while if `spinners` lets it, then parks,
    /// looking every so often whether `shared`'s core died (its task, and so the
    /// answer, may be lost).
    pub(crate) fn wait(&self, shared: &CoreShared, spinners: &Spinners, waits: Waits) -> Result<T> {
        spinners.spin_until(waits, || self.state.load(Ordering::SeqCst) == FILLED);
        loop {
            if let Some(answer) = self.take() {
                return shared.answered(answer);
            }
            if shared.dead.get().is_some() {
                return Err(shared.gone());
            }
            std::thread::park_timeout(DEATH_CHECK_INTERVAL);
        }
    }
}

/// Which blocking callers may spin for their answers: at most as many at a time as
/// the machine has CPUs the cores leave free, so that spinning callers never take the
/// CPUs their cores (or each other) need.
#[derive(Debug)]
pub(crate) struct Spinners {
    max: usize,
    now: AtomicUsize,
    read_spin: Duration,
    write_spin: Duration,
}

/// What a blocking caller waits for, which decides how long it spins.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Waits {
    Read,
    Write,
}

/// A caller's turn to spin, given back on drop.
struct Turn<'a>(&'a AtomicUsize);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Spinners {
    /// `max` callers spinning for up to `read_spin` for a read's answer and
    /// `write_spin` for a write's (none when `max` is 0).
    pub(crate) fn new(max: usize, read_spin: Duration, write_spin: Duration) -> Self {
        Self {
            max,
            now: AtomicUsize::new(0),
            read_spin,
            write_spin,
        }
    }

    fn enter(&self) -> Option<Turn<'_>> {
        let turn = Turn(&self.now);
        (self.now.fetch_add(1, Ordering::SeqCst) < self.max).then_some(turn)
    }

    /// Spins until `done` says so, for at most what `waits` allows, if this caller
    /// gets a turn; whether `done` said so.
    fn spin_until(&self, waits: Waits, done: impl Fn() -> bool) -> bool {
        let Some(_turn) = self.enter() else {
            return false;
        };
        let spin = match waits {
            Waits::Read => self.read_spin,
            Waits::Write => self.write_spin,
        };
        spin_for(spin, done)
    }

    /// Runs `future` to completion on this plain thread, as `futures_lite`'s `block_on`
    /// does, except that between polls the thread spins for a wake-up (when it gets a
    /// turn) before it parks: a core's answer then reaches it without a system call on
    /// either side (a blocking scan's next page, a `get_many`).
    pub(crate) fn block_on<F: Future>(&self, waits: Waits, future: F) -> F::Output {
        let wake = THREAD_WAKE.with(Arc::clone);
        let waker = Waker::from(wake.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            let woken = || wake.woken.swap(false, Ordering::SeqCst);
            if !self.spin_until(waits, woken) {
                while !woken() {
                    std::thread::park();
                }
            }
        }
    }
}

/// Wakes a thread blocked in [`Spinners::block_on`]: marks it woken, and unparks it
/// (cheap unless it is parked: std's parker wakes a futex only then).
#[derive(Debug)]
struct ThreadWake {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

thread_local! {
    /// This thread's waker for [`Spinners::block_on`] (no allocation per call; a wake
    /// left over from an earlier call only costs one more poll).
    static THREAD_WAKE: Arc<ThreadWake> = Arc::new(ThreadWake {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
}

/// Spin-loop hints between two looks at the clock or the queue.
const SPIN_CHECK_EVERY: u32 = 16;

/// Looks at `done` until it says so or `spin` has passed; whether it said so. Between
/// looks the thread yields its CPU, so that a spinner gives way to a thread with work
/// where there are more runnable threads than CPUs (a core's idle poll and a caller
/// waiting for its answer both spin this way).
fn spin_for(spin: Duration, done: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if done() {
            return true;
        }
        if started.elapsed() >= spin {
            return false;
        }
        for _ in 0..SPIN_CHECK_EVERY {
            std::hint::spin_loop();
        }
        std::thread::yield_now();
    }
}

/// How often a parked caller looks whether its core died.
const DEATH_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// The part of a core that callers on other threads touch.
#[derive(Debug)]
pub(crate) struct CoreShared {
    index: usize,
    queue: ArrayQueue<Request>,
    /// The core found the queue empty and waits for `waker`.
    waiting: AtomicBool,
    waker: AtomicWaker,
    /// Set when the core takes no more requests: shut down, failed to open, or dead.
    stopped: AtomicBool,
    /// Why the core's thread ended abnormally (a panic, or an executor that could not
    /// start). Set before `stopped`.
    dead: OnceLock<String>,
    /// Notified when `stopped` or `dead` is set.
    ended: Event,
    /// How long the core, idle, polls its queue before it waits (`None`: never).
    spin: Option<Duration>,
    /// The copy of the core's key order that callers list scan pages from.
    pub(crate) order: super::shared_order::SharedOrder,
}

impl CoreShared {
    pub(crate) fn new(index: usize, queue_depth: usize, spin: Option<Duration>) -> Self {
        Self {
            spin,
            index,
            queue: ArrayQueue::new(queue_depth),
            waiting: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            stopped: AtomicBool::new(false),
            dead: OnceLock::new(),
            ended: Event::new(),
            order: Default::default(),
        }
    }

    /// Marks the core stopped: later requests are cancelled as they are queued.
    /// Whether the core still takes requests (not shut down, failed to open, or dead).
    pub(crate) fn serving(&self) -> bool {
        !self.stopped.load(Ordering::Acquire)
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.ended.notify(usize::MAX);
        while self.queue.pop().is_some() {}
    }

    /// Marks the core dead (its thread panicked or never started): every waiting and
    /// later request to it fails with [`Error::CoreFailed`]. Called from the core's
    /// thread after the executor has unwound, or by open for a thread that never ran.
    pub(crate) fn die(&self, message: String) {
        let _ = self.dead.set(message);
        // Nobody waits for arrivals from now on.
        self.waiting.store(false, Ordering::SeqCst);
        self.stop();
    }

    /// The error for a request the core will never answer.
    pub(crate) fn gone(&self) -> Error {
        match self.dead.get() {
            Some(message) => Error::CoreFailed {
                core: self.index,
                message: message.clone(),
            },
            None => Error::Closed,
        }
    }

    /// A blocking caller's answer: the reply, or why there is none.
    fn answered<T>(&self, answer: Option<Result<T>>) -> Result<T> {
        match answer {
            Some(result) => result,
            // Dropped unanswered: at shutdown, or while a panic unwinds the core (which
            // marks it dead right after). Wait for the core's verdict.
            None => {
                futures_lite::future::block_on(self.ended());
                Err(self.gone())
            }
        }
    }

    /// Resolves once the core is dead.
    pub(crate) async fn died(&self) {
        self.until(|| self.dead.get().is_some()).await
    }

    /// Resolves once the core takes no more requests (stopped or dead).
    pub(crate) async fn ended(&self) {
        self.until(|| self.stopped.load(Ordering::SeqCst)).await
    }

    async fn until(&self, done: impl Fn() -> bool) {
        loop {
            let listener = self.ended.listen();
            if done() {
                return;
            }
            listener.await;
        }
    }

    /// Queues a request (waking the core if it waits); gives it back when the queue is
    /// full.
    pub(crate) fn push(&self, request: Request) -> std::result::Result<(), Request> {
        self.queue.push(request)?;
        if self.stopped.load(Ordering::SeqCst) {
            // The core is gone or going: cancel whatever it will not see.
            while self.queue.pop().is_some() {}
        }
        self.wake();
        Ok(())
    }

    /// Requests waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Wakes the core if it waits (or is about to) for arrivals.
    pub(crate) fn wake(&self) {
        // Pairs with the fence in `arrivals`: either the core sees the request, or this
        // sees `waiting`.
        fence(Ordering::SeqCst);
        if self.waiting.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// The next request, if any (the core's side).
    pub(super) fn pop(&self) -> Option<Request> {
        self.queue.pop()
    }

    /// Polls the queue for up to the core's spin time; whether a request came. Only for
    /// a core with nothing else to do: it holds the executor meanwhile.
    pub(super) fn spin_for_arrival(&self) -> bool {
        let Some(spin) = self.spin else {
            return false;
        };
        spin_for(spin, || !self.queue.is_empty())
    }

    /// Resolves once the queue may hold a request (the core's side).
    pub(super) async fn arrivals(&self) {
        std::future::poll_fn(|cx| {
            if !self.queue.is_empty() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            self.waiting.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.queue.is_empty() {
                return Poll::Pending;
            }
            self.waiting.store(false, Ordering::SeqCst);
            Poll::Ready(())
        })
        .await
    }
}

/// Every core's mailbox: how callers, and a core coordinating a write batch, call a
/// core and wait for its answer.
#[derive(Debug)]
pub(crate) struct Peers(Vec<Arc<CoreShared>>);

impl std::ops::Deref for Peers {
    type Target = [Arc<CoreShared>];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Peers {
    pub(crate) fn new(cores: Vec<Arc<CoreShared>>) -> Self {
        Self(cores)
    }

    /// Asks core `core` to do `op` and waits for its answer.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        core: usize,
        hash: u64,
        op: impl FnOnce(ReplyTo<T>) -> Op,
    ) -> Result<T> {
        let (reply, rx) = ReplyTo::task();
        self.push(
            core,
            Request::Call {
                hash,
                op: op(reply),
            },
        )
        .await;
        self.wait(core, rx).await
    }

    /// Queues `request` on core `core`, yielding while its queue is full.
    pub(crate) async fn push(&self, core: usize, mut request: Request) {
        while let Err(back) = self[core].push(request) {
            request = back;
            self[core].wake();
            futures_lite::future::yield_now().await;
        }
    }

    /// The reply of a request queued on `core`, or why there will be none: the core
    /// died (`Error::CoreFailed`, even when the request's task was lost with it) or
    /// stopped (`Error::Closed`).
    pub(crate) async fn wait<T>(
        &self,
        core: usize,
        reply: futures_channel::oneshot::Receiver<Result<T>>,
    ) -> Result<T> {
        let shared = &self[core];
        let replied = async { Some(reply.await) };
        let died = async {
            shared.died().await;
            None
        };
        match futures_lite::FutureExt::or(replied, died).await {
            Some(Ok(result)) => result,
            Some(Err(_cancelled)) => {
                // Dropped unanswered: at shutdown, or while a panic unwinds the core
                // (which marks it dead right after). Wait for the core's verdict.
                shared.ended().await;
                Err(shared.gone())
            }
            None => Err(shared.gone()),
        }
    }
}
