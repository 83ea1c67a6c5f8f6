//! The fetcher: a thread of its own with a current-thread tokio runtime, so no socket and no
//! peer can hold up capture. It takes offers (a swarm and peers seen in it) from the
//! engines and from magnet links through [`Wants`], and for each swarm whose metainfo is
//! still unknown tries one peer at a time, within every bound of [`FetchConfig`]: open
//! connections, new connections per second, attempts per swarm, backoff between them.
//!
//! Peer order in a swarm: not known bad, fewest attempts first, remote before
//! subscriber-side, then as offered. A peer whose metadata does not hash to the info-hash
//! is bad for that swarm and never asked again. Verified metainfo goes to the registry
//! (`Source::Fetched`) and to the cache (`PieceSink::learn`, which persists it), exactly as
//! metadata seen on the wire does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{our_peer_id, Candidate, FetchConfig, FetchCounters, FetchLimits, FetchSession};
use super::{Outcome, Reason};
use crate::swarm::{PieceSink, Registry, Source};
use crate::wire::infohash::InfoHash;

/// One offer: peers seen in a swarm (the engine, past its trigger) or given with a magnet
/// link.
struct Offer {
    info_hash: InfoHash,
    peers: Vec<Candidate>,
}

/// The handle the engines and the HTTP intake hold: offers in, counters out. Cheap to
/// call on the packet path: a bounded queue, never a wait.
pub struct Wants {
    tx: mpsc::Sender<Offer>,
    counters: Arc<Mutex<FetchCounters>>,
    trigger: super::trigger::TriggerLimits,
}

impl Wants {
    /// Offer peers of a swarm. When the queue is full the offer is dropped and counted:
    /// the engine hands out each peer once, so it is lost, and a later peer may do.
    pub fn offer(&self, info_hash: InfoHash, peers: Vec<Candidate>) {
        if peers.is_empty() {
            return;
        }
        if self.tx.try_send(Offer { info_hash, peers }).is_err() {
            count(&self.counters, |c| c.dropped += 1);
        }
    }

    /// Offers the engine could not keep (its watch list's caps).
    pub fn add_dropped(&self, n: u64) {
        if n > 0 {
            count(&self.counters, |c| c.dropped += n);
        }
    }

    pub fn counters(&self) -> FetchCounters {
        self.counters.lock().map(|c| *c).unwrap_or_default()
    }

    /// The engine's trigger thresholds and caps.
    pub fn trigger_limits(&self) -> super::trigger::TriggerLimits {
        self.trigger.clone()
    }
}

/// Change the shared counters (a poisoned lock loses the count, never the fetch).
fn count(counters: &Mutex<FetchCounters>, f: impl FnOnce(&mut FetchCounters)) {
    if let Ok(mut c) = counters.lock() {
        f(&mut c);
    }
}

/// The running fetcher; stopped (open fetches abandoned) and joined when dropped.
pub struct FetchService {
    pub wants: Arc<Wants>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FetchService {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start the fetcher. It logs one line per fetched swarm and per failed attempt.
pub fn start(
    cfg: FetchConfig,
    registry: Arc<Registry>,
    sink: Arc<dyn PieceSink + Send + Sync>,
) -> std::io::Result<FetchService> {
    // Room for a burst of offers from every swarm; the engine sends each peer once.
    let (tx, rx) = mpsc::channel(cfg.max_swarms.clamp(16, 4096));
    let counters = Arc::new(Mutex::new(FetchCounters::default()));
    let (stop_tx, stop_rx) = oneshot::channel();
    let wants = Arc::new(Wants {
        tx,
        counters: counters.clone(),
        trigger: cfg.trigger(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("metainfo-fetch".into())
        .spawn(move || {
            let mut f = Fetcher {
                cfg,
                registry,
                sink,
                counters,
                swarms: HashMap::new(),
                seq: 0,
                in_flight: 0,
                next_start: Instant::now(),
                epoch: Instant::now(),
            };
            rt.block_on(f.run(rx, stop_rx));
        })?;
    Ok(FetchService {
        wants,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

struct Peer {
    c: Candidate,
    tries: u32,
    bad: bool,
    /// Offer order.
    seq: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Busy,
    /// Nothing more to do for the swarm (policy refusal, attempts spent, unusable): offers
    /// are ignored until the box restarts.
    Over,
}

struct SwarmFetch {
    peers: Vec<Peer>,
    attempts: u32,
    state: State,
    next_at: Instant,
}

/// What one attempt came to.
enum Ended {
    Outcome(Outcome),
    ConnectFailed(String),
}

struct Attempt {
    info_hash: InfoHash,
    addr: SocketAddr,
    ended: Ended,
    received: u64,
}

struct Fetcher {
    cfg: FetchConfig,
    registry: Arc<Registry>,
    sink: Arc<dyn PieceSink + Send + Sync>,
    counters: Arc<Mutex<FetchCounters>>,
    swarms: HashMap<InfoHash, SwarmFetch>,
    seq: u64,
    in_flight: usize,
    next_start: Instant,
    /// Session time is microseconds since this.
    epoch: Instant,
}

impl Fetcher {
    async fn run(&mut self, mut rx: mpsc::Receiver<Offer>, mut stop: oneshot::Receiver<()>) {
        let mut tasks: JoinSet<Attempt> = JoinSet::new();
        loop {
            let wake = self.start_due(&mut tasks);
            tokio::select! {
                _ = &mut stop => break,
                offer = rx.recv() => match offer {
                    Some(o) => self.take(o),
                    None => break,
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(a) = done {
                        self.finished(a);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        tasks.abort_all();
    }

    fn count(&self, f: impl FnOnce(&mut FetchCounters)) {
        count(&self.counters, f);
    }

    fn take(&mut self, o: Offer) {
        if self.registry.get(&o.info_hash).is_some() {
            return;
        }
        if !self.swarms.contains_key(&o.info_hash) && self.swarms.len() >= self.cfg.max_swarms {
            // Make room from swarms that are over; otherwise the offer is lost.
            self.swarms.retain(|_, s| s.state != State::Over);
            if self.swarms.len() >= self.cfg.max_swarms {
                self.count(|c| c.dropped += 1);
                return;
            }
        }
        let now = Instant::now();
        let s = self
            .swarms
            .entry(o.info_hash)
            .or_insert_with(|| SwarmFetch {
                peers: Vec::new(),
                attempts: 0,
                state: State::Waiting,
                next_at: now,
            });
        let mut dropped = 0;
        for c in o.peers {
            if s.peers.iter().any(|p| p.c.addr == c.addr) {
                continue;
            }
            if s.peers.len() >= self.cfg.max_peers_per_swarm {
                dropped += 1;
                continue;
            }
            self.seq += 1;
            s.peers.push(Peer {
                c,
                tries: 0,
                bad: false,
                seq: self.seq,
            });
        }
        if dropped > 0 {
            self.count(|c| c.dropped += dropped);
        }
    }

    /// Start every attempt that is due and allowed; returns when to look again.
    fn start_due(&mut self, tasks: &mut JoinSet<Attempt>) -> Instant {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(1);
        let due: Vec<InfoHash> = self
            .swarms
            .iter()
            .filter(|(_, s)| s.state == State::Waiting)
            .map(|(ih, _)| *ih)
            .collect();
        for ih in due {
            if self.registry.get(&ih).is_some() {
                // Learnt meanwhile (the wire, a file, a post, another fetch).
                self.swarms.remove(&ih);
                continue;
            }
            let Some(next_at) = self.swarms.get(&ih).map(|s| s.next_at) else {
                continue;
            };
            if next_at > now {
                wake = wake.min(next_at);
                continue;
            }
            if self.in_flight >= self.cfg.max_concurrent || self.cfg.max_starts_per_sec == 0 {
                break;
            }
            if self.next_start > now {
                wake = wake.min(self.next_start);
                break;
            }
            if !self.sink.may_fetch(&ih) {
                tracing::info!(
                    "metainfo fetch: swarm {ih} not fetched: the policy rules refuse it"
                );
                self.count(|c| c.refused_by_policy += 1);
                self.over(&ih);
                continue;
            }
            let Some(s) = self.swarms.get_mut(&ih) else {
                continue;
            };
            if s.attempts >= self.cfg.max_attempts_per_swarm {
                tracing::warn!(
                    "metainfo fetch: swarm {ih} given up after {} attempts",
                    s.attempts
                );
                self.count(|c| c.swarms_given_up += 1);
                self.over(&ih);
                continue;
            }
            let Some(p) = s
                .peers
                .iter_mut()
                .filter(|p| !p.bad)
                .min_by_key(|p| (p.tries, !p.c.remote, p.seq))
            else {
                continue; // no usable peer yet: wait for offers
            };
            p.tries += 1;
            let addr = p.c.addr;
            s.attempts += 1;
            s.state = State::Busy;
            self.in_flight += 1;
            self.next_start = now + Duration::from_secs(1) / self.cfg.max_starts_per_sec;
            let in_flight = self.in_flight as u64;
            self.count(|c| {
                c.attempts += 1;
                c.in_flight = in_flight;
            });
            let job = Job {
                info_hash: ih,
                addr,
                bind: self.cfg.bind,
                limits: self.cfg.limits(),
                connect_timeout: Duration::from_secs(self.cfg.connect_timeout_secs),
                epoch: self.epoch,
            };
            tasks.spawn(job.run());
        }
        wake
    }

    fn over(&mut self, ih: &InfoHash) {
        if let Some(s) = self.swarms.get_mut(ih) {
            s.state = State::Over;
        }
    }

    fn finished(&mut self, a: Attempt) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let in_flight = self.in_flight as u64;
        self.count(|c| {
            c.received_bytes += a.received;
            c.in_flight = in_flight;
        });
        let ih = a.info_hash;
        let backoff = Duration::from_secs(self.cfg.backoff_secs);
        if let Some(s) = self.swarms.get_mut(&ih) {
            s.state = State::Waiting;
            s.next_at = Instant::now() + backoff;
        }
        let why = match a.ended {
            Ended::Outcome(Outcome::Metadata(m)) => {
                let (name, bytes) = (m.name.clone(), m.info.len() as u64);
                let fresh = self.registry.get(&ih).is_none();
                let m = self.registry.insert(m, Source::Fetched);
                self.sink.learn(&m);
                self.swarms.remove(&ih);
                self.count(|c| {
                    c.successes += 1;
                    c.metadata_bytes += bytes;
                });
                if fresh {
                    tracing::info!(
                        "metainfo: fetched {name} from {} (swarm {ih}, {bytes} bytes)",
                        a.addr
                    );
                }
                return;
            }
            Ended::Outcome(Outcome::Failed(r)) => {
                match &r {
                    Reason::HashMismatch => {
                        self.count(|c| c.hash_mismatches += 1);
                        if let Some(p) = self
                            .swarms
                            .get_mut(&ih)
                            .and_then(|s| s.peers.iter_mut().find(|p| p.c.addr == a.addr))
                        {
                            p.bad = true;
                        }
                    }
                    Reason::Timeout => self.count(|c| c.timeouts += 1),
                    Reason::Unusable(_) => {
                        // No other peer can do better: the dictionary itself is the problem.
                        self.count(|c| {
                            c.unusable += 1;
                            c.swarms_given_up += 1;
                        });
                        self.over(&ih);
                    }
                    _ => self.count(|c| c.peer_errors += 1),
                }
                match r {
                    Reason::HashMismatch => format!("{r} (peer marked bad)"),
                    r => r.to_string(),
                }
            }
            Ended::ConnectFailed(e) => {
                self.count(|c| c.connect_failures += 1);
                format!("connect failed: {e}")
            }
        };
        tracing::info!("metainfo fetch: {} for swarm {ih}: {why}", a.addr);
    }
}

/// One attempt: connect from the box's address, run a session to its end.
struct Job {
    info_hash: InfoHash,
    addr: SocketAddr,
    bind: Option<IpAddr>,
    limits: FetchLimits,
    connect_timeout: Duration,
    epoch: Instant,
}

impl Job {
    async fn run(self) -> Attempt {
        let mut received = 0;
        let ended = match self.connect().await {
            Err(e) => Ended::ConnectFailed(e),
            Ok(stream) => Ended::Outcome(self.session(stream, &mut received).await),
        };
        Attempt {
            info_hash: self.info_hash,
            addr: self.addr,
            ended,
            received,
        }
    }

    async fn connect(&self) -> Result<tokio::net::TcpStream, String> {
        let sock = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| e.to_string())?;
        if let Some(ip) = self.bind {
            sock.bind(SocketAddr::new(ip, 0))
                .map_err(|e| format!("binding to {ip}: {e}"))?;
        }
        match tokio::time::timeout(self.connect_timeout, sock.connect(self.addr)).await {
            Err(_) => Err(format!("no answer in {:?}", self.connect_timeout)),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(s)) => Ok(s),
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    async fn session(&self, mut stream: tokio::net::TcpStream, received: &mut u64) -> Outcome {
        let mut s = FetchSession::new(
            self.info_hash,
            our_peer_id(std::array::from_fn(|_| fastrand::u8(..))),
            self.now_us(),
            self.limits.clone(),
        );
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while let Some(out) = s.poll_transmit() {
                if stream.write_all(&out).await.is_err() {
                    s.on_closed();
                }
            }
            if s.is_done() {
                break;
            }
            let Some(deadline) = s.poll_timeout() else {
                break;
            };
            let at = self.epoch + Duration::from_micros(deadline);
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) | Err(_) => s.on_closed(),
                    Ok(n) => {
                        *received += n as u64;
                        let now = self.now_us();
                        s.on_bytes(now, &buf[..n]);
                    }
                },
                _ = tokio::time::sleep_until(at) => {
                    let now = self.now_us();
                    s.on_timeout(now);
                }
            }
        }
        // A refusal or a reject may still be queued: a courtesy, not waited for long.
        if let Some(out) = s.poll_transmit() {
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.write_all(&out)).await;
        }
        let _ = stream.shutdown().await;
        s.into_outcome().unwrap_or(Outcome::Failed(Reason::Protocol(
            "session ended without an outcome",
        )))
    }
}
