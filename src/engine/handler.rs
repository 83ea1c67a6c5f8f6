//! What each peer-wire event does: counters per swarm, blocks held until complete and
//! handed to piece assembly, metadata pieces, and subscriber REQUESTs reported to the sink
//! and scored as would-be hits.

use std::net::SocketAddr;

use super::conn::{BlockBuf, Held};
use super::App;
use crate::fetch::Candidate;
use crate::flow::Dir;
use crate::peerwire::conn::{Class, ConnState};
use crate::peerwire::Event;
use crate::report::{Stats, SwarmStats};
use crate::runtime::SeenRequest;
use crate::swarm::pieces::Late;
use crate::swarm::FlowContext;
use crate::swarm::Source;
use crate::wire::infohash::InfoHash;
use crate::wire::peerwire::{self, Handshake, Message};
use twox_hash::XxHash3_64;

/// The counters of swarm `ih`: of the unattributed traffic when the info-hash is unknown or
/// past `max` swarms (counted).
pub(super) fn swarm(stats: &mut Stats, ih: Option<InfoHash>, max: usize) -> &mut SwarmStats {
    let Some(ih) = ih else {
        return &mut stats.unattributed;
    };
    if !stats.swarms.contains_key(&ih) && stats.swarms.len() >= max {
        stats.swarms_overflow += 1;
        return &mut stats.unattributed;
    }
    stats.swarms.entry(ih).or_default()
}

/// Turns parser events into protocol state and counters.
pub(super) struct Handler<'a> {
    pub(super) utp: bool,
    pub(super) sender: SocketAddr,
    pub(super) receiver: SocketAddr,
    pub(super) vlan: Option<u16>,
    pub(super) block: &'a mut Option<BlockBuf>,
    pub(super) state: &'a mut ConnState,
    pub(super) ctx: &'a mut App,
    pub(super) dir: Dir,
    pub(super) sub_sender: &'a [bool; 2],
    pub(super) counted_bt: &'a mut bool,
    pub(super) counted_plain_after_enc: &'a mut bool,
}

impl Handler<'_> {
    fn start_block(&mut self, index: u32, begin: u32, length: u32) {
        self.drop_block();
        // Only blocks of a known, tracked swarm are held: others can never be verified, and
        // swarms past `max_swarms` must not grow per-swarm state elsewhere.
        match self.state.info_hash {
            Some(ih) if self.ctx.stats.swarms.contains_key(&ih) => {}
            _ => return,
        }
        if let Some(ih) = self.state.info_hash {
            // A copy of a piece being verified: as if the verdict had come first (as the
            // block's end would do), so that a late copy is known as one from its header.
            let sink = self.ctx.shared.sink.clone();
            self.ctx.pieces.settle_piece(&ih, index, &*sink);
            match self
                .ctx
                .pieces
                .late_block(&ih, index, begin, length, &self.sender)
            {
                Late::No => {}
                Late::Ignore => return,
                Late::Digest(seed) => {
                    *self.block = Some(BlockBuf {
                        index,
                        begin,
                        length,
                        held: Held::Digest {
                            hasher: Box::new(XxHash3_64::with_seed(seed)),
                            got: 0,
                        },
                    });
                    return;
                }
            }
        }
        let cap = self.ctx.cfg.swarms.max_block_buffer_bytes;
        if self.ctx.block_bytes + length as usize > cap {
            self.ctx.stats.blocks_unbuffered += 1;
            return;
        }
        self.ctx.block_bytes += length as usize;
        *self.block = Some(BlockBuf {
            index,
            begin,
            length,
            held: Held::Bytes(Vec::with_capacity(length as usize)),
        });
    }

    fn drop_block(&mut self) {
        if let Some(b) = self.block.take() {
            if let Held::Bytes(_) = b.held {
                self.ctx.block_bytes = self.ctx.block_bytes.saturating_sub(b.length as usize);
            }
        }
    }

    fn block_data(&mut self, index: u32, begin: u32, offset: u32, data: &[u8]) {
        let Some(b) = self.block.as_mut() else { return };
        let got = match &b.held {
            Held::Bytes(v) => v.len(),
            Held::Digest { got, .. } => *got as usize,
        };
        if (b.index, b.begin, got) != (index, begin, offset as usize) {
            self.drop_block();
            return;
        }
        match &mut b.held {
            Held::Bytes(v) => v.extend_from_slice(data),
            Held::Digest { hasher, got } => {
                std::hash::Hasher::write(&mut **hasher, data);
                *got = got.saturating_add(data.len() as u32);
            }
        }
        if got + data.len() < b.length as usize {
            return;
        }
        let Some(b) = self.block.take() else { return };
        let Some(ih) = self.state.info_hash else {
            return;
        };
        let data = match b.held {
            Held::Bytes(v) => {
                self.ctx.block_bytes = self.ctx.block_bytes.saturating_sub(b.length as usize);
                v
            }
            Held::Digest { hasher, .. } => {
                let sink = self.ctx.shared.sink.clone();
                let (index, begin, len) = (b.index, b.begin, b.length);
                let digest = std::hash::Hasher::finish(&*hasher);
                let pieces = &mut self.ctx.pieces;
                pieces.late_digest(&ih, index, begin, len, digest, self.sender, &*sink);
                return;
            }
        };
        let meta = self.ctx.shared.registry.get(&ih).map(|(m, _)| m);
        let sink = self.ctx.shared.sink.clone();
        self.ctx.pieces.block(
            ih,
            meta.as_ref(),
            b.index,
            b.begin,
            data,
            self.sender,
            &*sink,
        );
    }

    fn would_be_hit(&mut self, ih: InfoHash, index: u32, length: u32) {
        // A piece being verified is cached or not by its verdict, as if it had come first.
        let sink = self.ctx.shared.sink.clone();
        self.ctx.pieces.settle_piece(&ih, index, &*sink);
        let h = &mut self.ctx.stats.hits;
        let hit = self.ctx.shared.sink.contains(&ih, index);
        // Every REQUEST is a use for the cache policy, hit or miss: frequency-aware
        // policies (TinyLFU) count misses too, exactly as `sim run` replays a trace.
        self.ctx.shared.sink.touch(&ih, index);
        if hit {
            h.hits += 1;
            h.hit_bytes += length as u64;
        } else {
            h.misses += 1;
            h.miss_bytes += length as u64;
        }
    }

    fn metadata_piece(&mut self, ih: InfoHash, u: peerwire::UtMetadata<'_>) {
        if self.ctx.shared.registry.get(&ih).is_some() {
            return;
        }
        if let Some(m) = self.ctx.metadata.data(ih, u.piece, u.total_size, u.data) {
            let m = self.ctx.shared.registry.insert(m, Source::Wire);
            let sink = self.ctx.shared.sink.clone();
            sink.learn(&m);
            self.ctx.pieces.metainfo_arrived(&m, &*sink);
        }
    }

    fn mark_bittorrent(&mut self) {
        if self.state.class == Class::Encrypted {
            if !*self.counted_plain_after_enc {
                *self.counted_plain_after_enc = true;
                self.ctx.stats.bittorrent.encrypted_then_plain += 1;
            }
            return;
        }
        self.state.class = Class::BitTorrent;
        if !*self.counted_bt {
            *self.counted_bt = true;
            if self.utp {
                self.ctx.stats.bittorrent.utp_connections += 1;
            } else {
                self.ctx.stats.bittorrent.tcp_connections += 1;
            }
            if self.state.midstream {
                self.ctx.stats.bittorrent.midstream_connections += 1;
            }
        }
    }

    /// One parser event, dispatched to the step that handles it.
    pub(super) fn event(&mut self, ev: Event<'_>) {
        match ev {
            Event::Handshake(h) => self.handshake(&h),
            Event::Resynced { skipped } => self.resynced(skipped),
            Event::Message(m) => self.message(m),
            Event::Piece {
                index,
                begin,
                length,
            } => self.piece(index, begin, length),
            Event::BlockData {
                index,
                begin,
                offset,
                data,
            } => self.block_data(index, begin, offset, data),
            Event::BlockLost { len, .. } => {
                self.drop_block();
                let ih = self.state.info_hash;
                self.swarm(ih).piece_bytes_lost += len as u64;
            }
            Event::Skipped { .. } => self.ctx.stats.peerwire.skipped_messages += 1,
            Event::NotBitTorrent => {}
        }
    }

    /// The counters of swarm `ih` (see [`swarm`]).
    fn swarm(&mut self, ih: Option<InfoHash>) -> &mut SwarmStats {
        swarm(&mut self.ctx.stats, ih, self.ctx.cfg.swarms.max_swarms)
    }

    /// Whether the sender of this direction, and its receiver, are subscribers.
    fn subscribers(&self) -> (bool, bool) {
        (
            self.sub_sender[self.dir.idx()],
            self.sub_sender[self.dir.rev().idx()],
        )
    }

    fn handshake(&mut self, h: &Handshake<'_>) {
        self.mark_bittorrent();
        self.ctx.stats.peerwire.handshakes += 1;
        let new = self.state.on_handshake(self.dir, h);
        let ih = self.state.info_hash;
        let sw = self.swarm(ih);
        if new {
            sw.connections += 1;
        }
        *sw.messages.entry("handshake").or_default() += 1;
        self.fetch_peers();
    }

    /// The fetcher's view of this connection (when a fetcher takes offers, and the swarm's
    /// metainfo is unknown): each side's address with the port it listens on, a subscriber
    /// side also as a subscriber of the swarm. The listening port of a TCP side is the
    /// connection's port for the side that took the SYN, else the BEP 10 `p` it sent; uTP
    /// runs on the socket a peer listens on, so both sides' ports are.
    fn fetch_peers(&mut self) {
        let Some(ih) = self.state.info_hash else {
            return;
        };
        if self.ctx.trigger.is_none() || self.ctx.shared.registry.get(&ih).is_some() {
            return;
        }
        for d in [self.dir, self.dir.rev()] {
            let addr = if d == self.dir {
                self.sender
            } else {
                self.receiver
            };
            let sub = self.sub_sender[d.idx()];
            let port = if self.utp || self.state.initiator.is_some_and(|i| i != d) {
                Some(addr.port())
            } else {
                self.state.listen_port[d.idx()]
            };
            let Some(t) = self.ctx.trigger.as_mut() else {
                return;
            };
            if sub {
                t.subscriber(ih, addr.ip());
            }
            if let Some(p) = port {
                t.peer(
                    ih,
                    Candidate {
                        addr: SocketAddr::new(addr.ip(), p),
                        remote: !sub,
                    },
                );
            }
        }
        self.fetch_offer(ih);
    }

    /// Peers of `ih` due for the fetcher (its trigger passed), each once.
    fn fetch_offer(&mut self, ih: InfoHash) {
        let (Some(t), Some(w)) = (self.ctx.trigger.as_mut(), self.ctx.shared.fetch.as_ref()) else {
            return;
        };
        w.add_dropped(std::mem::take(&mut t.dropped));
        let ready = t.ready(&ih);
        w.offer(ih, ready);
    }

    /// Framing found again mid-stream: the connection is BitTorrent after all, and one of
    /// the unattributed swarm's until a handshake names its info-hash.
    fn resynced(&mut self, skipped: u64) {
        self.ctx.stats.peerwire.resyncs += 1;
        self.ctx.stats.peerwire.resync_skipped_bytes += skipped;
        if self.state.class != Class::BitTorrent {
            self.mark_bittorrent();
            if self.state.info_hash.is_none() && self.state.class == Class::BitTorrent {
                let first = !self.state.midstream_counted;
                let sw = self.swarm(None);
                if first {
                    sw.connections += 1;
                }
                self.state.midstream_counted = true;
            }
        }
    }

    fn message(&mut self, m: Message<'_>) {
        self.ctx.stats.peerwire.messages += 1;
        let kind = m.kind();
        let ih = self.state.info_hash;
        if let Message::Extended { id, payload } = m {
            self.extended(ih, id, payload);
        }
        let (sender_sub, _) = self.subscribers();
        let sw = self.swarm(ih);
        *sw.messages.entry(kind.as_str()).or_default() += 1;
        if let Message::Request(b) = m {
            sw.request_messages += 1;
            if sender_sub {
                sw.subscriber_requests += 1;
                self.log_request(ih, b.index, b.begin, b.length);
                if let Some(ih) = ih {
                    self.subscriber_request(ih, b.index, b.length);
                }
            }
        }
    }

    /// An extension message (BEP 10): counted by the name the sender gave its id.
    fn extended(&mut self, ih: Option<InfoHash>, id: u8, payload: &[u8]) {
        let name = if id == 0 {
            self.state.on_ext_handshake(self.dir, payload);
            self.fetch_peers();
            Some("handshake".to_string())
        } else {
            let ext = self.state.ext_name(self.dir, id).map(str::to_owned);
            ext.as_deref().map(|n| self.extension_name(ih, n, payload))
        };
        let pex = match name.as_deref() {
            Some("ut_pex") => peerwire::pex_added(payload),
            _ => None,
        };
        let md = self.state.metadata_size;
        let sw = self.swarm(ih);
        *sw.extended
            .entry(name.unwrap_or_else(|| "unknown_id".into()))
            .or_default() += 1;
        if let Some(n) = pex {
            *sw.extended.entry("ut_pex_added_peers".into()).or_default() += n;
        }
        if id == 0 && md.is_some() {
            sw.metadata_size = md;
        }
    }

    /// The counter key for extension `n`; a ut_metadata data message of a known swarm is
    /// also taken in as a metadata piece.
    fn extension_name(&mut self, ih: Option<InfoHash>, n: &str, payload: &[u8]) -> String {
        match n {
            "ut_metadata" => match peerwire::parse_ut_metadata(payload) {
                Some(u) => match u.msg_type {
                    1 if ih.is_some() => {
                        if let Some(ih) = ih {
                            self.metadata_piece(ih, u);
                        }
                        "ut_metadata_data".to_string()
                    }
                    0 => "ut_metadata_request".to_string(),
                    1 => "ut_metadata_data".to_string(),
                    2 => "ut_metadata_reject".to_string(),
                    _ => "ut_metadata_other".to_string(),
                },
                None => "ut_metadata_invalid".to_string(),
            },
            // Only names we know become keys: peers choose these strings.
            "ut_pex" | "lt_donthave" | "upload_only" | "ut_holepunch" | "lt_tex" | "share_mode"
            | "ut_comment" => n.to_string(),
            _ => "other".to_string(),
        }
    }

    /// A subscriber's REQUEST into the `--requests-out` trace, when one is written: at the
    /// time of the frame that completed it, with the swarm's piece and total length from
    /// the metainfo (0 when unknown). Without an info-hash it cannot be written (counted).
    fn log_request(&mut self, ih: Option<InfoHash>, piece: u32, begin: u32, length: u32) {
        let Some(log) = self.ctx.shared.requests.as_ref() else {
            return;
        };
        let Some(info_hash) = ih else {
            log.skipped_unknown_swarm();
            return;
        };
        let (piece_length, total_length) = match self.ctx.shared.registry.get(&info_hash) {
            Some((m, _)) => (u32::try_from(m.piece_length).unwrap_or(0), m.total_length),
            None => (0, 0),
        };
        log.request(&SeenRequest {
            time_us: self.ctx.now,
            info_hash,
            piece_length,
            total_length,
            client: self.sender.ip(),
            piece,
            begin,
            length,
        });
    }

    /// A subscriber's REQUEST reaches the sink (policy rules learn popularity and the flow
    /// from here) and is scored as a would-be hit.
    fn subscriber_request(&mut self, ih: InfoHash, index: u32, length: u32) {
        // Verdicts due before this REQUEST take effect first, as if hashed inline: that of
        // the piece asked for (and those before it), and all of the swarm's when the rules
        // watch REQUESTs.
        let sink = self.ctx.shared.sink.clone();
        self.ctx.pieces.settle_piece(&ih, index, &*sink);
        if sink.watches_requests() {
            self.ctx.pieces.settle_swarm(&ih, &*sink);
        }
        self.ctx.shared.sink.requested(
            &ih,
            &FlowContext {
                subscriber: self.sender,
                upstream: self.receiver,
                vlan: self.vlan,
            },
        );
        self.would_be_hit(ih, index, length);
    }

    /// A PIECE message's header: counted, its block held for assembly, and the block
    /// remembered as distinct (up to `max_distinct_blocks` over all swarms).
    fn piece(&mut self, index: u32, begin: u32, length: u32) {
        self.ctx.stats.peerwire.messages += 1;
        let (sender_sub, receiver_sub) = self.subscribers();
        let cap = self.ctx.cfg.swarms.max_distinct_blocks;
        let tracked = self.ctx.blocks_tracked;
        let ih = self.state.info_hash;
        let sw = self.swarm(ih);
        sw.piece_messages += 1;
        sw.piece_bytes += length as u64;
        *sw.messages.entry("piece").or_default() += 1;
        if receiver_sub {
            sw.subscriber_piece_bytes_in += length as u64;
        }
        if sender_sub {
            sw.subscriber_piece_bytes_out += length as u64;
        }
        if let (Some(ih), Some(t)) = (ih, self.ctx.trigger.as_mut()) {
            if self.ctx.shared.registry.get(&ih).is_none() {
                t.piece_bytes(ih, u64::from(length));
                self.fetch_offer(ih);
            }
        }
        self.start_block(index, begin, length);
        let sw = self.swarm(ih);
        let b = (index, begin, length);
        if !sw.blocks.contains(&b) {
            if tracked < cap {
                sw.blocks.insert(b);
                sw.distinct += 1;
                self.ctx.blocks_tracked += 1;
            } else {
                sw.blocks_overflow += 1;
            }
        }
    }
}
