//! One connection as the engine sees it: a parser per direction, the protocol state, the
//! block being received, and the bookkeeping that makes each count happen once.

use sha1::{Digest, Sha1};

use super::handler::Handler;
use super::App;
use crate::config::Config;
use crate::flow::tcp::Chunk;
use crate::flow::{Dir, FlowKey};
use crate::peerwire::conn::{Class, ConnState};
use crate::peerwire::StreamParser;
use crate::report::StreamRecord;
use crate::wire::infohash::hex;

/// A PIECE message's block being received, until complete.
pub(super) struct BlockBuf {
    pub(super) index: u32,
    pub(super) begin: u32,
    pub(super) length: u32,
    pub(super) held: Held,
}

/// How a block's bytes are kept while it arrives.
pub(super) enum Held {
    /// Its bytes, for piece assembly.
    Bytes(Vec<u8>),
    /// A copy of a block of a piece verified in this run: only its digest tells whether its
    /// sender lied, so its bytes are hashed as they pass, never copied; `got` so far.
    Digest {
        hasher: Box<twox_hash::XxHash3_64>,
        got: u32,
    },
}

/// Engine-side view of a connection: the parsers, the protocol state, and bookkeeping.
pub(super) struct Conn {
    key: FlowKey,
    parsers: [Option<StreamParser>; 2],
    blocks: [Option<BlockBuf>; 2],
    pub(super) state: ConnState,
    /// Whether the sender of each direction is a subscriber.
    sub_sender: [bool; 2],
    counted_bt: bool,
    counted_enc: bool,
    counted_plain_after_enc: bool,
    /// Carried over uTP (counted as such) rather than TCP.
    pub(super) utp: bool,
    hashers: Option<Box<[(Sha1, u64); 2]>>,
}

impl Conn {
    /// The connection ends: release its buffers, decide on a pending first flight, record
    /// its streams.
    pub(super) fn close(&mut self, ctx: &mut App) {
        let conn = self;
        let key = conn.key;
        for b in conn.blocks.iter_mut().filter_map(Option::take) {
            ctx.block_bytes = ctx.block_bytes.saturating_sub(b.length as usize);
        }
        if let Some(v) = conn.state.end_flight() {
            conn.verdict(v, ctx);
        }
        if !conn.counted_bt && !conn.counted_enc && !conn.utp {
            ctx.stats.flows.ignored += 1;
        }
        if let Some(h) = conn.hashers.take() {
            let c2s = conn.state.initiator.unwrap_or(Dir::LoToHi);
            let [a, b] = *h;
            let (cs, sc) = if c2s == Dir::LoToHi { (a, b) } else { (b, a) };
            ctx.stats.streams.push(StreamRecord {
                client: key.src(c2s).to_string(),
                server: key.src(c2s.rev()).to_string(),
                c2s_bytes: cs.1,
                c2s_sha1: hex(&cs.0.finalize()),
                s2c_bytes: sc.1,
                s2c_sha1: hex(&sc.0.finalize()),
            });
        }
    }
}

impl Conn {
    pub(super) fn new(key: FlowKey, initiator: Option<Dir>, cfg: &Config) -> Conn {
        Conn::with(
            key,
            initiator,
            Conn::subscribers(key, cfg),
            cfg.record_streams,
        )
    }

    /// Whether the sender of each direction is a subscriber.
    pub(super) fn subscribers(key: FlowKey, cfg: &Config) -> [bool; 2] {
        [
            cfg.is_subscriber(key.lo.ip()),
            cfg.is_subscriber(key.hi.ip()),
        ]
    }

    /// A connection whose configuration-derived facts were taken earlier (a TCP flow that
    /// waited in its compact pre-data form), so they are what they were at its start.
    pub(super) fn with(
        key: FlowKey,
        initiator: Option<Dir>,
        sub_sender: [bool; 2],
        record_streams: bool,
    ) -> Conn {
        Conn {
            key,
            parsers: [None, None],
            blocks: [None, None],
            state: ConnState::new(initiator),
            sub_sender,
            counted_bt: false,
            counted_enc: false,
            counted_plain_after_enc: false,
            utp: false,
            hashers: record_streams.then(|| Box::new([(Sha1::new(), 0), (Sha1::new(), 0)])),
        }
    }

    /// Nothing more to learn: every parser gave up and the first flight said "not MSE".
    pub(super) fn ignorable(&self) -> bool {
        if self.hashers.is_some() {
            return false; // Tests want whole streams.
        }
        let mut created = self.parsers.iter().flatten().peekable();
        created.peek().is_some()
            && created.all(|p| p.is_dead())
            && self.state.flight_decided()
            && self.state.class != Class::BitTorrent
    }

    fn verdict(&mut self, class: Class, ctx: &mut App) {
        if class == Class::Encrypted && self.state.class == Class::Unknown {
            self.state.class = Class::Encrypted;
            if !self.counted_enc {
                self.counted_enc = true;
                let b = &mut ctx.stats.bittorrent;
                b.encrypted_connections += 1;
                if self.utp {
                    b.encrypted_utp_connections += 1;
                } else {
                    b.encrypted_tcp_connections += 1;
                }
            }
            // MSE may have negotiated plaintext (crypto_provide 0x01): look for framing in
            // what follows, within the probe budget.
            for p in &mut self.parsers {
                p.get_or_insert_with(StreamParser::midstream).hunt(true);
            }
        }
    }

    pub(super) fn on_chunk(&mut self, dir: Dir, at_start: bool, chunk: Chunk<'_>, ctx: &mut App) {
        if let Chunk::Data(data) = chunk {
            if let Some(h) = &mut self.hashers {
                h[dir.idx()].0.update(data);
                h[dir.idx()].1 += data.len() as u64;
            }
            if let Some(v) = self.state.observe(dir, data) {
                self.verdict(v, ctx);
            }
        }
        let Conn {
            key,
            utp,
            parsers,
            blocks,
            state,
            sub_sender,
            counted_bt,
            counted_plain_after_enc,
            ..
        } = self;
        let parser = parsers[dir.idx()].get_or_insert_with(|| {
            if at_start {
                StreamParser::at_start()
            } else {
                StreamParser::midstream()
            }
        });
        let plim = ctx.plim;
        let mut h = Handler {
            utp: *utp,
            sender: key.src(dir),
            receiver: key.src(dir.rev()),
            vlan: key.vlan,
            block: &mut blocks[dir.idx()],
            state,
            ctx,
            dir,
            sub_sender,
            counted_bt,
            counted_plain_after_enc,
        };
        match chunk {
            Chunk::Data(data) => parser.feed(data, &plim, &mut |ev| h.event(ev)),
            Chunk::Gap(n) => parser.gap(n, &mut |ev| h.event(ev)),
            Chunk::Lost => parser.lost(&mut |ev| h.event(ev)),
        }
    }
}
