//! In-memory links for the cluster simulator, with seeded faults: delay
//! (which reorders bytes across connections, never within one), resets,
//! partitions that hold bytes back until they heal, and crashed nodes
//! whose connections break and whose address refuses connects.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use stratum_node::clock::Clock;
use stratum_node::net::stream::{Accepted, BoxStream, Closer, Listener, Network, Stream};

use super::sim_fs::Rng;
use super::virtual_clock::{Installed, VirtualClock};

/// Odds of the network's faults.
#[derive(Debug, Clone, Copy)]
pub struct NetChaos {
    /// Longest one-way delay of a write (each draws 0..this).
    pub max_delay: Duration,
    /// A write resets its connection.
    pub reset: f64,
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Default)]
pub struct NetInjected {
    pub resets: u64,
    pub refused: u64,
    pub partitions: u64,
    pub held_connects: u64,
}

/// One direction of a connection.
struct Pipe {
    from: u32,
    to: u32,
    chunks: RefCell<VecDeque<(Duration, Vec<u8>)>>,
    reader: RefCell<Option<Waker>>,
    /// The writer closed: end of stream once the chunks are read.
    closed: Cell<bool>,
    /// The reader's side was shut down: its reads end.
    shut: Cell<bool>,
    /// Reset (or a crash): reads and writes fail.
    broken: Cell<bool>,
}

impl Pipe {
    fn new(from: u32, to: u32) -> Rc<Self> {
        Rc::new(Self {
            from,
            to,
            chunks: RefCell::new(VecDeque::new()),
            reader: RefCell::new(None),
            closed: Cell::new(false),
            shut: Cell::new(false),
            broken: Cell::new(false),
        })
    }

    fn wake(&self) {
        if let Some(waker) = self.reader.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// A node's address: which node, and its acceptor while it runs.
type Listening = (u32, Option<Rc<Acceptor>>);

/// A sleep of the virtual clock.
type Timer = Pin<Box<dyn Future<Output = ()>>>;

struct Acceptor {
    queue: RefCell<VecDeque<(BoxStream, String)>>,
    waker: RefCell<Option<Waker>>,
}

/// The simulated network: every endpoint (nodes 1.., clients 0) and
/// every connection between them.
pub struct Net {
    clock: Rc<VirtualClock>,
    rng: RefCell<Rng>,
    chaos: Cell<NetChaos>,
    /// Address → (node, its acceptor while it runs).
    listeners: RefCell<BTreeMap<String, Listening>>,
    /// Nodes cut off from everyone: their bytes wait, connects hang.
    isolated: RefCell<BTreeSet<u32>>,
    pipes: RefCell<Vec<Weak<Pipe>>>,
    /// Bytes moved, connects, accepts: the simulator's sign of progress.
    activity: Cell<u64>,
    injected: RefCell<NetInjected>,
}

impl Net {
    pub fn new(clock: Rc<VirtualClock>, seed: u64, chaos: NetChaos) -> Rc<Self> {
        Rc::new(Self {
            clock,
            rng: RefCell::new(Rng(seed)),
            chaos: Cell::new(chaos),
            listeners: RefCell::new(BTreeMap::new()),
            isolated: RefCell::new(BTreeSet::new()),
            pipes: RefCell::new(Vec::new()),
            activity: Cell::new(0),
            injected: RefCell::new(NetInjected::default()),
        })
    }

    pub fn set_chaos(&self, chaos: NetChaos) {
        self.chaos.set(chaos);
    }

    pub fn activity(&self) -> u64 {
        self.activity.get()
    }

    pub fn injected(&self) -> NetInjected {
        self.injected.borrow().clone()
    }

    /// `node` answers at `address` from now on.
    pub fn listen(&self, node: u32, address: &str) -> Box<dyn Listener> {
        let acceptor = Rc::new(Acceptor {
            queue: RefCell::new(VecDeque::new()),
            waker: RefCell::new(None),
        });
        self.listeners
            .borrow_mut()
            .insert(address.to_owned(), (node, Some(Rc::clone(&acceptor))));
        Box::new(SimListener(acceptor))
    }

    /// `node`'s handle for dialing others.
    pub fn endpoint(self: &Rc<Self>, node: u32) -> Rc<dyn Network> {
        Rc::new(Endpoint {
            net: Rc::clone(self),
            me: node,
        })
    }

    /// `node` crashed: its connections break, its address refuses.
    pub fn crash(&self, node: u32) {
        for (owner, acceptor) in self.listeners.borrow_mut().values_mut() {
            if *owner == node {
                *acceptor = None;
            }
        }
        self.for_pipes(|pipe| {
            if pipe.from == node || pipe.to == node {
                pipe.broken.set(true);
                pipe.wake();
            }
        });
    }

    pub fn isolate(&self, node: u32) {
        if self.isolated.borrow_mut().insert(node) {
            self.injected.borrow_mut().partitions += 1;
        }
    }

    pub fn heal(&self) {
        self.isolated.borrow_mut().clear();
        self.for_pipes(|pipe| pipe.wake());
    }

    pub fn is_isolated(&self, node: u32) -> bool {
        self.isolated.borrow().contains(&node)
    }

    fn cut(&self, a: u32, b: u32) -> bool {
        let isolated = self.isolated.borrow();
        isolated.contains(&a) || isolated.contains(&b)
    }

    fn for_pipes(&self, mut f: impl FnMut(&Pipe)) {
        let mut pipes = self.pipes.borrow_mut();
        pipes.retain(|pipe| pipe.strong_count() > 0);
        let live: Vec<Rc<Pipe>> = pipes.iter().filter_map(Weak::upgrade).collect();
        drop(pipes);
        for pipe in live {
            f(&pipe);
        }
    }

    fn delay(&self) -> Duration {
        let max = self.chaos.get().max_delay.as_micros() as u64;
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.rng.borrow_mut().below(max + 1))
    }

    fn strikes(&self, p: f64) -> bool {
        p > 0.0 && self.rng.borrow_mut().chance(p)
    }

    fn sleep(&self, duration: Duration) -> Timer {
        Installed(Rc::clone(&self.clock)).sleep(duration)
    }

    async fn connect(self: Rc<Self>, me: u32, address: String) -> io::Result<BoxStream> {
        let target = self.listeners.borrow().get(&address).cloned();
        let Some((node, Some(acceptor))) = target else {
            self.injected.borrow_mut().refused += 1;
            return Err(io::Error::from(io::ErrorKind::ConnectionRefused));
        };
        if self.cut(me, node) {
            // SYNs go unanswered: the caller's connect timeout decides.
            self.injected.borrow_mut().held_connects += 1;
            std::future::pending::<()>().await;
        }
        let delay = self.delay();
        self.sleep(delay).await;
        let there = Pipe::new(me, node);
        let back = Pipe::new(node, me);
        self.pipes.borrow_mut().push(Rc::downgrade(&there));
        self.pipes.borrow_mut().push(Rc::downgrade(&back));
        let ours = SimStream::new(Rc::clone(&self), Rc::clone(&back), Rc::clone(&there));
        let theirs = SimStream::new(Rc::clone(&self), there, back);
        acceptor
            .queue
            .borrow_mut()
            .push_back((Box::new(theirs), format!("sim-{me}")));
        if let Some(waker) = acceptor.waker.borrow_mut().take() {
            waker.wake();
        }
        self.activity.set(self.activity.get() + 1);
        Ok(Box::new(ours))
    }
}

#[derive(Clone)]
struct Endpoint {
    net: Rc<Net>,
    me: u32,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sim endpoint {}", self.me)
    }
}

impl Network for Endpoint {
    fn connect(&self, address: &str) -> Pin<Box<dyn Future<Output = io::Result<BoxStream>>>> {
        Box::pin(Rc::clone(&self.net).connect(self.me, address.to_owned()))
    }
}

struct SimListener(Rc<Acceptor>);

impl Listener for SimListener {
    fn accept(&self) -> Pin<Box<dyn Future<Output = Accepted> + '_>> {
        Box::pin(std::future::poll_fn(move |cx| {
            if let Some(accepted) = self.0.queue.borrow_mut().pop_front() {
                return Poll::Ready(Ok(accepted));
            }
            *self.0.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }))
    }
}

/// One end of a connection; clones share it, and the last one dropped
/// closes it (as the last descriptor of a socket does).
struct End {
    net: Rc<Net>,
    rx: Rc<Pipe>,
    tx: Rc<Pipe>,
}

impl Drop for End {
    fn drop(&mut self) {
        self.tx.closed.set(true);
        self.tx.wake();
    }
}

pub struct SimStream {
    end: Rc<End>,
    read_timeout: Option<Duration>,
    /// Armed while a read waits: fails it `TimedOut`.
    read_timer: Option<Timer>,
    /// Armed while the next chunk is still in flight.
    delivery: Option<(Duration, Timer)>,
}

impl SimStream {
    fn new(net: Rc<Net>, rx: Rc<Pipe>, tx: Rc<Pipe>) -> Self {
        Self {
            end: Rc::new(End { net, rx, tx }),
            read_timeout: None,
            read_timer: None,
            delivery: None,
        }
    }

    fn reset(&self) {
        let end = &self.end;
        end.net.injected.borrow_mut().resets += 1;
        for pipe in [&end.rx, &end.tx] {
            pipe.broken.set(true);
            pipe.wake();
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let end = Rc::clone(&this.end);
        let (net, rx) = (&end.net, &end.rx);
        if rx.broken.get() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if rx.shut.get() {
            return Poll::Ready(Ok(0));
        }
        let now = net.clock.elapsed();
        let cut = net.cut(rx.from, rx.to);
        let next_at = rx.chunks.borrow().front().map(|chunk| chunk.0);
        match next_at {
            Some(at) if at <= now && !cut => {
                let mut chunks = rx.chunks.borrow_mut();
                let chunk = chunks.front_mut().expect("peeked");
                let n = chunk.1.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk.1[..n]);
                chunk.1.drain(..n);
                if chunk.1.is_empty() {
                    chunks.pop_front();
                }
                this.read_timer = None;
                this.delivery = None;
                net.activity.set(net.activity.get() + 1);
                return Poll::Ready(Ok(n));
            }
            Some(at) if at > now && !cut => {
                if this.delivery.as_ref().is_none_or(|(due, _)| *due != at) {
                    this.delivery = Some((at, net.sleep(at - now)));
                }
                if let Some((_, sleep)) = &mut this.delivery {
                    if sleep.as_mut().poll(cx).is_ready() {
                        this.delivery = None;
                        cx.waker().wake_by_ref();
                    }
                }
            }
            None if rx.closed.get() => return Poll::Ready(Ok(0)),
            _ => {}
        }
        *rx.reader.borrow_mut() = Some(cx.waker().clone());
        if let Some(timeout) = this.read_timeout {
            let timer = this.read_timer.get_or_insert_with(|| net.sleep(timeout));
            if timer.as_mut().poll(cx).is_ready() {
                this.read_timer = None;
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
        }
        Poll::Pending
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let end = Rc::clone(&this.end);
        let (net, tx) = (&end.net, &end.tx);
        if tx.broken.get() || tx.closed.get() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if net.strikes(net.chaos.get().reset) {
            this.reset();
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let now = net.clock.elapsed();
        // In order within a connection, as TCP keeps it.
        let last = tx
            .chunks
            .borrow()
            .back()
            .map_or(Duration::ZERO, |chunk| chunk.0);
        let at = (now + net.delay()).max(last);
        tx.chunks.borrow_mut().push_back((at, buf.to_vec()));
        net.activity.set(net.activity.get() + 1);
        tx.wake();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.end.tx.closed.set(true);
        self.end.tx.wake();
        Poll::Ready(Ok(()))
    }
}

impl Stream for SimStream {
    fn try_clone(&self) -> io::Result<BoxStream> {
        Ok(Box::new(Self {
            end: Rc::clone(&self.end),
            read_timeout: None,
            read_timer: None,
            delivery: None,
        }))
    }

    fn closer(&self) -> Closer {
        let end = Rc::downgrade(&self.end);
        Closer::new(move || {
            if let Some(end) = end.upgrade() {
                end.rx.shut.set(true);
                end.rx.wake();
                end.tx.closed.set(true);
                end.tx.wake();
            }
        })
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        if self.read_timeout != Some(timeout) {
            self.read_timer = None;
        }
        self.read_timeout = Some(timeout);
        Ok(())
    }

    fn set_write_timeout(&mut self, _timeout: Duration) -> io::Result<()> {
        // Writes never block here: a peer that stops reading is noticed by
        // request timeouts and pings instead.
        Ok(())
    }
}
