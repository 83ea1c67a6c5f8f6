//! One TCP session: 3-way handshake, the peer-wire script cut into MSS segments with a pure
//! ACK after each, capture impairments, FIN/ACK close — plus the ground truth of what a
//! capture of it delivers, accounted while it is built.
//!
//! Frames are produced one application write at a time, so a session holds at most one
//! write (one PIECE message: 16 KiB + 13 bytes) and its frame descriptors.

use std::collections::VecDeque;

use sha1::{Digest, Sha1};

use super::impair::{Counts, Kind, Plan};
use super::packet::{self, Endpoints, Link, Segment};
use super::script::{Msg, Script, Write};
use super::torrent::{hex, Torrent, BLOCK_LEN};
use super::{ReassemblyTruth, StreamTruth, SynthError};

/// Run-wide settings every session reads.
pub struct Shared {
    pub torrent: Torrent,
    pub link: Link,
    pub mss: u16,
    /// Payload bytes per data segment: the MSS, or 1 with --one-byte.
    pub unit: usize,
    pub midstream: bool,
    pub ipv6: bool,
    pub magnet: bool,
    /// Flows at or past `flows - hostile` have a lying seeder.
    pub hostile: u32,
    pub flows: u32,
    pub counts: Counts,
}

/// Run-wide tallies of what the capture delivers (see `Truth`).
pub struct Tally {
    pub messages: std::collections::BTreeMap<&'static str, u64>,
    pub piece_messages: u64,
    pub piece_bytes: u64,
    pub request_messages: u64,
    pub distinct_blocks: u64,
    /// One bit per block id; 1 bit per 16 KiB of content is the only state that grows with
    /// --size (besides the info dict's 20 bytes per piece).
    seen_blocks: Vec<u64>,
    pub reassembly: ReassemblyTruth,
}

impl Tally {
    pub fn new(t: &Torrent) -> Self {
        Tally {
            messages: Default::default(),
            piece_messages: 0,
            piece_bytes: 0,
            request_messages: 0,
            distinct_blocks: 0,
            seen_blocks: vec![0; t.block_id_space().div_ceil(64) as usize],
            reassembly: ReassemblyTruth::default(),
        }
    }

    fn count(&mut self, m: &Msg, t: &Torrent) {
        *self.messages.entry(m.kind()).or_default() += 1;
        match m {
            Msg::Piece(b) => {
                self.piece_messages += 1;
                self.piece_bytes += u64::from(b.len);
                let id = u64::from(b.index) * t.blocks_per_piece() + u64::from(b.begin / BLOCK_LEN);
                if let Some(word) = self.seen_blocks.get_mut((id / 64) as usize) {
                    let bit = 1u64 << (id % 64);
                    if *word & bit == 0 {
                        *word |= bit;
                        self.distinct_blocks += 1;
                    }
                }
            }
            Msg::Request(_) => self.request_messages += 1,
            _ => {}
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Payload {
    None,
    /// `len` bytes at `off` of the current write, inverted when `xor` (conflicting copy).
    Write {
        off: usize,
        len: usize,
        xor: bool,
    },
}

/// A frame waiting to be emitted.
#[derive(Clone, Copy, Debug)]
pub struct Queued {
    pub seg: Segment,
    pub payload: Payload,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Open,
    Talk,
    Done,
}

/// Delivered byte stream of one direction, hashed as it is built.
#[derive(Clone, Default)]
struct Delivered {
    sha1: Sha1,
    bytes: u64,
}

/// What the dry run learns about a session before any frame is made.
struct Survey {
    c2s_bytes: u64,
    s2c_bytes: u64,
    s2c_segments: u64,
    /// Eligible segments for the given bounds (second pass only).
    eligible: u64,
}

/// Walks the script without building content; `bounds` = (lo, hi) inclusive eligibility
/// range of s2c segment indices.
fn survey(script: &Script, t: &Torrent, unit: usize, bounds: Option<(u64, u64)>) -> Survey {
    let mut s = script.clone();
    let mut out = Survey {
        c2s_bytes: 0,
        s2c_bytes: 0,
        s2c_segments: 0,
        eligible: 0,
    };
    while let Some(w) = s.next_write(t) {
        let len: u64 = w.msgs.iter().map(|m| m.encoded_len(t)).sum();
        if w.from_leecher {
            out.c2s_bytes += len;
            continue;
        }
        out.s2c_bytes += len;
        let nseg = len.div_ceil(unit as u64);
        let first = out.s2c_segments;
        out.s2c_segments += nseg;
        if let Some((lo, hi)) = bounds {
            // Segments first..first+nseg-1, the last one of the write is not eligible.
            let a = first.max(lo);
            let b = (first + nseg).saturating_sub(2).min(hi);
            if nseg >= 2 && a <= b {
                out.eligible += b - a + 1;
            }
        }
    }
    out
}

/// Distance below 2^32 of the ISN of flow 0: the sequence space wraps `back - 1` bytes into
/// the stream, i.e. mid-transfer for any stream longer than 2 bytes.
fn wrap_back(total: u64, cap: u64) -> u32 {
    (total / 2).clamp(1, cap) as u32
}

pub struct Session {
    pub ep: Endpoints,
    script: Script,
    stage: Stage,
    c2s_isn: u32,
    s2c_isn: u32,
    /// Next sequence number of each direction (after everything written so far).
    c2s_next: u32,
    s2c_next: u32,
    ident_leecher: u16,
    ident_seeder: u16,
    plan: Plan,
    /// Eligibility bounds (inclusive) on s2c data segment indices; None when too few.
    bounds: Option<(u64, u64)>,
    /// s2c data segment index where the midstream capture starts.
    cut: Option<u64>,
    cut_passed: bool,
    s2c_seg: u64,
    eligible_seen: u64,
    queue: VecDeque<Queued>,
    buf: Vec<u8>,
    c2s: Delivered,
    s2c: Delivered,
    /// This flow's seeder sends wrong block bytes.
    hostile: bool,
}

impl Session {
    pub fn new(flow: u32, sh: &Shared, rng_seed: u64) -> Result<Self, SynthError> {
        let t = &sh.torrent;
        let mut rng = fastrand::Rng::with_seed(rng_seed);
        let ep = Endpoints::for_flow(flow, sh.ipv6)?;
        let mut leecher_id = *b"-PC0001-000000000000";
        let mut seeder_id = *b"-SY0001-000000000000";
        for b in leecher_id[8..].iter_mut().chain(seeder_id[8..].iter_mut()) {
            *b = rng.alphanumeric() as u8;
        }
        // Alternate so every multi-flow run has both announcements; flow 0 (the only flow of
        // a default run) uses the general BITFIELD.
        let have_all = flow % 2 == 1;
        let start_piece =
            (u64::from(flow) * u64::from(t.num_pieces) / u64::from(sh.flows.max(1))) as u32;
        let script = Script::new(sh.magnet, have_all, leecher_id, seeder_id, start_piece);

        let first = survey(&script, t, sh.unit, None);
        let n = first.s2c_segments;
        let cut = sh.midstream.then_some(n / 3);
        let lo = cut.map_or(3, |c| c + 3);
        let bounds = n.checked_sub(5).filter(|&hi| lo <= hi).map(|hi| (lo, hi));
        let eligible = if bounds.is_some() {
            survey(&script, t, sh.unit, bounds).eligible
        } else {
            0
        };
        // Drawn before the plan so a clean and an impaired run of one seed share every TCP
        // number and differ only by the impairments.
        let mut c2s_isn = rng.u32(..);
        let mut s2c_isn = rng.u32(..);
        if flow == 0 {
            // Sequence-number wrap must be exercised on every run, in both directions.
            c2s_isn = 0u32.wrapping_sub(wrap_back(first.c2s_bytes, 100));
            s2c_isn = 0u32.wrapping_sub(wrap_back(first.s2c_bytes, 5000));
        }
        let ident_leecher = rng.u16(..);
        let ident_seeder = rng.u16(..);
        let plan = Plan::choose(&mut rng, &sh.counts, eligible, n)?;
        Ok(Session {
            ep,
            script,
            stage: Stage::Open,
            c2s_isn,
            s2c_isn,
            c2s_next: c2s_isn.wrapping_add(1),
            s2c_next: s2c_isn.wrapping_add(1),
            ident_leecher,
            ident_seeder,
            plan,
            bounds,
            cut,
            cut_passed: cut.is_none(),
            s2c_seg: 0,
            eligible_seen: 0,
            queue: VecDeque::new(),
            buf: Vec::new(),
            c2s: Delivered::default(),
            s2c: Delivered::default(),
            hostile: flow + sh.hostile >= sh.flows,
        })
    }

    /// The next frame of this session, or None when it is closed.
    pub fn next(&mut self, sh: &Shared, tally: &mut Tally) -> Result<Option<Queued>, SynthError> {
        loop {
            if let Some(q) = self.queue.pop_front() {
                return Ok(Some(q));
            }
            match self.stage {
                Stage::Open => {
                    self.open(sh);
                    self.stage = Stage::Talk;
                }
                Stage::Talk => match self.script.next_write(&sh.torrent) {
                    Some(w) => self.load(w, sh, tally),
                    None => {
                        self.close();
                        self.stage = Stage::Done;
                    }
                },
                Stage::Done => return Ok(None),
            }
        }
    }

    /// Builds the frame of `q` (just returned by `next`) into `out`.
    pub fn build(
        &self,
        sh: &Shared,
        q: &Queued,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), SynthError> {
        let payload: &[u8] = match q.payload {
            Payload::None => &[],
            Payload::Write { off, len, xor } => {
                let bytes = self
                    .buf
                    .get(off..off + len)
                    .ok_or_else(|| SynthError::Build("segment outside its write".into()))?;
                if xor {
                    scratch.clear();
                    scratch.extend(bytes.iter().map(|b| b ^ 0xff));
                    scratch
                } else {
                    bytes
                }
            }
        };
        packet::build(&sh.link, &self.ep, &q.seg, payload, out)
    }

    pub fn stream_truth(&self) -> StreamTruth {
        StreamTruth {
            client: self.ep.leecher.to_string(),
            server: self.ep.seeder.to_string(),
            c2s_bytes: self.c2s.bytes,
            c2s_sha1: hex(&self.c2s.sha1.clone().finalize()),
            s2c_bytes: self.s2c.bytes,
            s2c_sha1: hex(&self.s2c.sha1.clone().finalize()),
        }
    }

    fn ident(&mut self, from_leecher: bool) -> u16 {
        let id = if from_leecher {
            &mut self.ident_leecher
        } else {
            &mut self.ident_seeder
        };
        *id = id.wrapping_add(1);
        *id
    }

    fn segment(&mut self, from_leecher: bool, seq: u32, ack: Option<u32>) -> Segment {
        Segment {
            from_leecher,
            seq,
            ack,
            syn: false,
            fin: false,
            psh: false,
            ident: self.ident(from_leecher),
            mss: 0,
        }
    }

    /// Queues a frame unless the midstream capture has not started yet.
    fn push(&mut self, seg: Segment, payload: Payload) {
        if self.cut_passed {
            self.queue.push_back(Queued { seg, payload });
        }
    }

    fn open(&mut self, sh: &Shared) {
        let mut syn = self.segment(true, self.c2s_isn, None);
        syn.syn = true;
        syn.mss = sh.mss;
        self.push(syn, Payload::None);
        let mut synack = self.segment(false, self.s2c_isn, Some(self.c2s_next));
        synack.syn = true;
        synack.mss = sh.mss;
        self.push(synack, Payload::None);
        let ack = self.segment(true, self.c2s_next, Some(self.s2c_next));
        self.push(ack, Payload::None);
    }

    fn close(&mut self) {
        // Leecher closes first, the seeder's FIN acks it, the leecher acks that.
        let mut fin1 = self.segment(true, self.c2s_next, Some(self.s2c_next));
        fin1.fin = true;
        self.push(fin1, Payload::None);
        let mut fin2 = self.segment(false, self.s2c_next, Some(self.c2s_next.wrapping_add(1)));
        fin2.fin = true;
        self.push(fin2, Payload::None);
        let last = self.segment(
            true,
            self.c2s_next.wrapping_add(1),
            Some(self.s2c_next.wrapping_add(1)),
        );
        self.push(last, Payload::None);
    }

    /// Decides the fate of the next data segment of a direction (in original send order):
    /// marks the midstream cut and returns the impairment, if any.
    fn classify(
        &mut self,
        from_leecher: bool,
        last_in_write: bool,
        off: usize,
        first_delivered: &mut usize,
    ) -> Option<Kind> {
        if from_leecher {
            return None;
        }
        let k = self.s2c_seg;
        self.s2c_seg += 1;
        if self.cut == Some(k) {
            self.cut_passed = true;
            *first_delivered = off;
        }
        match self.bounds {
            Some((lo, hi)) if k >= lo && k <= hi && !last_in_write => {
                let ordinal = self.eligible_seen;
                self.eligible_seen += 1;
                self.plan.take(ordinal)
            }
            _ => None,
        }
    }

    /// Adds a segment's bytes to the delivered stream of its direction, in stream order.
    fn deliver(&mut self, from_leecher: bool, off: usize, len: usize) {
        if !self.cut_passed {
            return;
        }
        let d = if from_leecher {
            &mut self.c2s
        } else {
            &mut self.s2c
        };
        if let Some(bytes) = self.buf.get(off..off + len) {
            d.sha1.update(bytes);
            d.bytes += len as u64;
        }
    }

    /// Cuts one write into segments, applies the planned impairments, queues the frames,
    /// and tallies the messages the capture delivers.
    fn load(&mut self, w: Write, sh: &Shared, tally: &mut Tally) {
        let t = &sh.torrent;
        self.buf.clear();
        let mut spans = Vec::with_capacity(w.msgs.len());
        for m in &w.msgs {
            let start = self.buf.len();
            m.encode(t, &mut self.buf);
            if self.hostile && matches!(m, Msg::Piece(_)) {
                // Keep the 13-byte header; lie in the block.
                for b in &mut self.buf[start + 13..] {
                    *b ^= 0x5a;
                }
            }
            spans.push((start, self.buf.len() - start));
        }
        let total = self.buf.len();
        let unit = sh.unit;
        let nseg = total.div_ceil(unit);
        let dir = w.from_leecher;
        let (base, other_next) = if dir {
            (self.c2s_next, self.s2c_next)
        } else {
            (self.s2c_next, self.c2s_next)
        };
        let seq_at = |off: usize| base.wrapping_add(off as u32);
        let range = |i: usize| (i * unit, unit.min(total - i * unit));

        // Write-relative offset of the first byte the capture shows; bytes before it are
        // lost to a midstream start.
        let mut first_delivered = if self.cut_passed { 0 } else { total };
        let mut lost: Vec<(usize, usize)> = Vec::new();
        // The receiver's ACK of a lost segment, emitted after the next data segment (see
        // `Kind::Loss` below).
        let mut deferred: Option<Segment> = None;

        let mut i = 0;
        while i < nseg {
            let (off, len) = range(i);
            let kind = self.classify(dir, i + 1 == nseg, off, &mut first_delivered);
            let psh = i + 1 == nseg;
            let mut d = self.segment(dir, seq_at(off), Some(other_next));
            d.psh = psh;
            let data = Payload::Write {
                off,
                len,
                xor: false,
            };
            match kind {
                None => {
                    self.deliver(dir, off, len);
                    let a = self.segment(!dir, other_next, Some(seq_at(off + len)));
                    self.push(d, data);
                    if let Some(x) = deferred.take() {
                        self.push(x, Payload::None);
                    }
                    self.push(a, Payload::None);
                    i += 1;
                }
                Some(Kind::Duplicate) => {
                    // Retransmitted with the same bytes (a spurious retransmission), fresh
                    // IP ident so no L3 de-duplication can hide it.
                    self.deliver(dir, off, len);
                    let d2 = self.segment(dir, seq_at(off), Some(other_next));
                    let a = self.segment(!dir, other_next, Some(seq_at(off + len)));
                    self.push(d, data);
                    self.push(Segment { psh, ..d2 }, data);
                    self.push(a, Payload::None);
                    tally.reassembly.overlaps += 1;
                    i += 1;
                }
                Some(Kind::Loss) => {
                    // Never captured. Its ACK is held until the next data segment is out:
                    // then that segment is the one "beyond a hole" (out_of_order) and the
                    // hole is proven permanent by an ACK that passes it, whichever order an
                    // engine resolves ACK-before-data in.
                    lost.push((off, off + len));
                    deferred = Some(self.segment(!dir, other_next, Some(seq_at(off + len))));
                    tally.reassembly.gaps += 1;
                    tally.reassembly.gap_bytes += len as u64;
                    tally.reassembly.out_of_order += 1;
                    i += 1;
                }
                Some(Kind::Conflict) => {
                    self.deliver(dir, off, len);
                    let a = self.segment(!dir, other_next, Some(seq_at(off + len)));
                    let x = self.segment(dir, seq_at(off), Some(other_next));
                    self.push(d, data);
                    self.push(a, Payload::None);
                    self.push(
                        x,
                        Payload::Write {
                            off,
                            len,
                            xor: true,
                        },
                    );
                    tally.reassembly.overlaps += 1;
                    tally.reassembly.conflicting_overlaps += 1;
                    i += 1;
                }
                Some(Kind::Reorder) | Some(Kind::OverlapConflict) => {
                    // Eligible segments are never last in their write, so i + 1 exists here.
                    let (off2, len2) = range(i + 1);
                    let kind2 = self.classify(dir, i + 2 == nseg, off2, &mut first_delivered);
                    debug_assert!(kind2.is_none(), "impairments are spaced 4 apart");
                    let mut d2 = self.segment(dir, seq_at(off2), Some(other_next));
                    d2.psh = i + 2 == nseg;
                    let data2 = Payload::Write {
                        off: off2,
                        len: len2,
                        xor: false,
                    };
                    self.deliver(dir, off, len);
                    self.deliver(dir, off2, len2);
                    let a = self.segment(!dir, other_next, Some(seq_at(off + len)));
                    let a2 = self.segment(!dir, other_next, Some(seq_at(off2 + len2)));
                    if kind == Some(Kind::Reorder) {
                        self.push(d2, data2);
                        self.push(d, data);
                        self.push(a, Payload::None);
                        self.push(a2, Payload::None);
                        tally.reassembly.out_of_order += 1;
                    } else {
                        // Second half of the first segment + first half of the second, so
                        // the copy straddles the boundary even for 1-byte segments.
                        let xoff = off + len / 2;
                        let xend = off2 + len2.div_ceil(2);
                        let x = self.segment(dir, seq_at(xoff), Some(other_next));
                        self.push(d, data);
                        self.push(a, Payload::None);
                        self.push(d2, data2);
                        self.push(a2, Payload::None);
                        self.push(
                            x,
                            Payload::Write {
                                off: xoff,
                                len: xend - xoff,
                                xor: true,
                            },
                        );
                        tally.reassembly.overlaps += 1;
                        tally.reassembly.conflicting_overlaps += 1;
                    }
                    i += 2;
                }
            }
        }
        if let Some(x) = deferred.take() {
            self.push(x, Payload::None);
        }

        for (m, (start, len)) in w.msgs.iter().zip(spans) {
            let hdr_end = start + m.header_len(len as u64) as usize;
            let in_hole = lost.iter().any(|&(a, b)| a < hdr_end && start < b);
            if start >= first_delivered && !in_hole {
                tally.count(m, t);
            }
        }

        if dir {
            self.c2s_next = base.wrapping_add(total as u32);
        } else {
            self.s2c_next = base.wrapping_add(total as u32);
        }
    }
}
