//! One session: the peer-wire script cut into MSS segments over TCP (3-way handshake, a
//! pure ACK after each data segment, FIN/ACK close) or over uTP (BEP 29: SYN/STATE, an
//! ST_STATE after each ST_DATA, FIN/STATE each way), capture impairments — plus the ground
//! truth of what a capture of it delivers, accounted while it is built.
//!
//! Frames are produced one application write at a time, so a session holds at most one
//! write (one PIECE message: 16 KiB + 13 bytes) and its frame descriptors.
//!
//! Beside it: `survey` (the dry run that sizes a session before it is built) and `tally`
//! (the run-wide ground truth the sessions add to).

use std::collections::VecDeque;

use sha1::{Digest, Sha1};

use super::impair::{Counts, Kind, Plan};
use super::packet::{self, Endpoints, Link, Segment, UtpPacket, ST_DATA, ST_FIN, ST_STATE, ST_SYN};
use super::poison::Poison;
use super::script::{Mse, Msg, Order, Script, Write};
use super::survey::{survey, wrap_back};
use super::tally::Tally;
use super::torrent::{hex, Torrent};
use super::{StreamTruth, SynthError};

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
    /// Some: every session is directed by the poisoning scenario's run.
    pub poison: Option<Poison>,
    pub flows: u32,
    pub counts: Counts,
    /// Sessions run over uTP on UDP instead of TCP.
    pub utp: bool,
    /// Flows below this open with an MSE/PE exchange that selects plaintext.
    pub mse_plaintext: u32,
}

/// What `--hostile` seeders XOR every block byte with.
pub const HOSTILE_XOR: u8 = 0x5a;

/// Salt of the generator the MSE/PE layout of a session is drawn from: a stream of its own,
/// so every other number of the session is the one a run without MSE draws.
const MSE_SALT: u64 = 0x4d53_452f_5045_0001;

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

/// Transport header of a frame.
#[derive(Clone, Copy, Debug)]
pub enum Hdr {
    Tcp(Segment),
    Utp(UtpPacket),
}

/// A frame waiting to be emitted.
#[derive(Clone, Copy, Debug)]
pub struct Queued {
    pub hdr: Hdr,
    pub payload: Payload,
}

/// Where a write's data frames get their numbers: TCP numbers bytes (sequence = base + byte
/// offset), uTP numbers packets (seq_nr = base + packet index). `other_next` is the next
/// number the other side will send.
#[derive(Clone, Copy, Debug)]
enum Cursor {
    Tcp { base: u32, other_next: u32 },
    Utp { base: u16, other_next: u16 },
}

/// uTP connection state (BEP 29).
#[derive(Clone, Copy, Debug)]
struct UtpConn {
    /// The leecher's receive id: connection_id of its SYN and of everything the seeder
    /// sends; the leecher sends everything after the SYN with `recv_id + 1`.
    recv_id: u16,
    /// Next seq_nr each side sends (what its STATE packets carry, as in libutp).
    c2s_next: u16,
    s2c_next: u16,
    /// Offsets of each host's microsecond clock from the frame clock.
    clock_leecher: u32,
    clock_seeder: u32,
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
    /// The bytes this session's seeder XORs every block with: 0 for an honest one.
    lie: u8,
    /// Some: the session runs over uTP (the TCP sequence fields are then unused).
    utp: Option<UtpConn>,
}

impl Session {
    /// Flow `flow`: its leecher and its seeder (lying with `--hostile`).
    pub fn new(flow: u32, sh: &Shared, rng_seed: u64) -> Result<Self, SynthError> {
        let ep = Endpoints::for_flow(flow, sh.ipv6)?;
        let lie = if flow + sh.hostile >= sh.flows {
            HOSTILE_XOR
        } else {
            0
        };
        Self::with(flow, ep, lie, sh, rng_seed)
    }

    /// A session of flow `flow`'s leecher with the peer of `ep`, whose PIECE blocks are
    /// XORed with `lie` (0: honest). With `--poison` it is directed (see [`Session::order`]).
    pub fn with(
        flow: u32,
        ep: Endpoints,
        lie: u8,
        sh: &Shared,
        rng_seed: u64,
    ) -> Result<Self, SynthError> {
        let t = &sh.torrent;
        let mut rng = fastrand::Rng::with_seed(rng_seed);
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
        let mse = (flow < sh.mse_plaintext).then(|| {
            let mut r = fastrand::Rng::with_seed(rng_seed ^ MSE_SALT);
            Mse {
                pads: [0; 4].map(|_: u16| r.u16(..=512)),
                seed: r.u64(..),
            }
        });
        let mut script =
            Script::new(sh.magnet, have_all, leecher_id, seeder_id, start_piece).with_mse(mse);
        if sh.poison.is_some() {
            script = script.directed();
        }

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
        // Drawn only with --utp, so TCP captures stay byte-identical to earlier versions.
        let utp = sh.utp.then(|| {
            let recv_id = rng.u16(..);
            let mut c2s_first = rng.u16(..);
            let mut s2c_first = rng.u16(..);
            if flow == 0 {
                // seq_nr wrap must be exercised on every run, in both directions: the
                // first DATA of each side sits a few packets (at most half of that
                // direction's DATA packets) below 2^16, e.g. 65530.
                c2s_first = 0u16.wrapping_sub(wrap_back(first.c2s_segments, 6) as u16);
                s2c_first = 0u16.wrapping_sub(wrap_back(first.s2c_segments, 6) as u16);
            }
            UtpConn {
                recv_id,
                // The SYN takes the seq_nr before the leecher's first DATA.
                c2s_next: c2s_first.wrapping_sub(1),
                // The seeder's SYN-reply STATE carries the seq_nr of its first DATA.
                s2c_next: s2c_first,
                clock_leecher: rng.u32(..),
                clock_seeder: rng.u32(..),
            }
        });
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
            lie,
            utp,
        })
    }

    /// The next frame of this session, or None when it is closed (or, directed, waiting for
    /// its next order).
    pub fn next(&mut self, sh: &Shared, tally: &mut Tally) -> Result<Option<Queued>, SynthError> {
        loop {
            if let Some(q) = self.queue.pop_front() {
                if let Hdr::Utp(u) = q.hdr {
                    tally.utp.packets += 1;
                    if u.ty == ST_DATA {
                        tally.utp.data_packets += 1;
                    }
                }
                return Ok(Some(q));
            }
            match self.stage {
                Stage::Open => {
                    self.open(sh);
                    self.stage = Stage::Talk;
                }
                Stage::Talk => match self.script.next_write(&sh.torrent) {
                    Some(w) => self.load(w, sh, tally),
                    // A directed session waiting for its next order: open, but idle.
                    None if self.script.waiting() => return Ok(None),
                    None => {
                        self.close();
                        self.stage = Stage::Done;
                    }
                },
                Stage::Done => return Ok(None),
            }
        }
    }

    /// A directed session's next order; its frames follow from `next`.
    pub fn order(&mut self, o: Order) {
        self.script.order(o);
    }

    /// A directed session closes once its orders are carried out.
    pub fn finish(&mut self) {
        self.script.finish();
    }

    /// What this session's peer XORs block bytes with (0: honest).
    pub fn lie(&self) -> u8 {
        self.lie
    }

    /// Builds the frame of `q` (just returned by `next`), emitted at `ts_micros`, into `out`.
    pub fn build(
        &self,
        sh: &Shared,
        q: &Queued,
        ts_micros: u64,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), SynthError> {
        let bytes: &[u8] = match q.payload {
            Payload::None => &[],
            Payload::Write { off, len, .. } => self
                .buf
                .get(off..off + len)
                .ok_or_else(|| SynthError::Build("segment outside its write".into()))?,
        };
        let xor = matches!(q.payload, Payload::Write { xor: true, .. });
        scratch.clear();
        match q.hdr {
            Hdr::Tcp(seg) => {
                let payload = if xor {
                    scratch.extend(bytes.iter().map(|b| b ^ 0xff));
                    &scratch[..]
                } else {
                    bytes
                };
                packet::build(&sh.link, &self.ep, &seg, payload, out)
            }
            Hdr::Utp(u) => {
                let conn = self
                    .utp
                    .as_ref()
                    .ok_or_else(|| SynthError::Build("uTP frame in a TCP session".into()))?;
                let (own, peer) = if u.from_leecher {
                    (conn.clock_leecher, conn.clock_seeder)
                } else {
                    (conn.clock_seeder, conn.clock_leecher)
                };
                // Each host stamps with its own clock (the frame clock plus a fixed offset;
                // uTP timestamps are 32-bit wrapping microseconds). The capture point has
                // zero delay, so at receipt the sender's clock minus the peer's last stamp
                // is just the difference of the offsets; a SYN has received nothing yet.
                let timestamp = (ts_micros as u32).wrapping_add(own);
                let diff = if u.ty == ST_SYN {
                    0
                } else {
                    own.wrapping_sub(peer)
                };
                scratch.extend_from_slice(&u.header(timestamp, diff));
                if xor {
                    scratch.extend(bytes.iter().map(|b| b ^ 0xff));
                } else {
                    scratch.extend_from_slice(bytes);
                }
                packet::build_udp(&sh.link, &self.ep, u.from_leecher, u.ident, scratch, out)
            }
        }
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

    /// A uTP packet with a fresh IP ident; the connection_id follows BEP 29: the seeder
    /// sends with the leecher's receive id, the leecher with receive id + 1 after its SYN.
    fn utp_packet(&mut self, from_leecher: bool, ty: u8, seq_nr: u16, ack_nr: u16) -> Hdr {
        let recv_id = self.utp.map_or(0, |c| c.recv_id);
        let conn_id = if from_leecher && ty != ST_SYN {
            recv_id.wrapping_add(1)
        } else {
            recv_id
        };
        Hdr::Utp(UtpPacket {
            from_leecher,
            ty,
            conn_id,
            seq_nr,
            ack_nr,
            ident: self.ident(from_leecher),
        })
    }

    /// Data frame `i` (at write offset `off`) of a write from `dir`.
    fn data_frame(&mut self, dir: bool, cur: Cursor, i: usize, off: usize, psh: bool) -> Hdr {
        match cur {
            Cursor::Tcp { base, other_next } => {
                let mut d = self.segment(dir, base.wrapping_add(off as u32), Some(other_next));
                d.psh = psh;
                Hdr::Tcp(d)
            }
            // ack_nr: the last seq_nr received in order from the other side.
            Cursor::Utp { base, other_next } => self.utp_packet(
                dir,
                ST_DATA,
                base.wrapping_add(i as u16),
                other_next.wrapping_sub(1),
            ),
        }
    }

    /// The receiver's acknowledgement of data frame `i` (ending at write offset `end`) of a
    /// write from `dir`: a pure ACK of everything up to `end`, or an ST_STATE acking seq_nr
    /// `base + i` and carrying the receiver's next seq_nr.
    fn ack_frame(&mut self, dir: bool, cur: Cursor, i: usize, end: usize) -> Hdr {
        match cur {
            Cursor::Tcp { base, other_next } => {
                Hdr::Tcp(self.segment(!dir, other_next, Some(base.wrapping_add(end as u32))))
            }
            Cursor::Utp { base, other_next } => {
                self.utp_packet(!dir, ST_STATE, other_next, base.wrapping_add(i as u16))
            }
        }
    }

    /// Queues a frame unless the midstream capture has not started yet.
    fn push(&mut self, hdr: Hdr, payload: Payload) {
        if self.cut_passed {
            self.queue.push_back(Queued { hdr, payload });
        }
    }

    fn open(&mut self, sh: &Shared) {
        if let Some(c) = self.utp {
            // BEP 29: SYN from the initiator, the acceptor's STATE acks its seq_nr. The SYN
            // has no ack_nr yet (0, as libutp sends it).
            let syn = self.utp_packet(true, ST_SYN, c.c2s_next, 0);
            self.push(syn, Payload::None);
            let state = self.utp_packet(false, ST_STATE, c.s2c_next, c.c2s_next);
            self.push(state, Payload::None);
            if let Some(u) = self.utp.as_mut() {
                u.c2s_next = c.c2s_next.wrapping_add(1);
            }
            return;
        }
        let mut syn = self.segment(true, self.c2s_isn, None);
        syn.syn = true;
        syn.mss = sh.mss;
        self.push(Hdr::Tcp(syn), Payload::None);
        let mut synack = self.segment(false, self.s2c_isn, Some(self.c2s_next));
        synack.syn = true;
        synack.mss = sh.mss;
        self.push(Hdr::Tcp(synack), Payload::None);
        let ack = self.segment(true, self.c2s_next, Some(self.s2c_next));
        self.push(Hdr::Tcp(ack), Payload::None);
    }

    fn close(&mut self) {
        if let Some(c) = self.utp {
            // Each side's FIN takes a seq_nr and is acked by the other's STATE; the leecher
            // closes first.
            let (l, s) = (c.c2s_next, c.s2c_next);
            let fin1 = self.utp_packet(true, ST_FIN, l, s.wrapping_sub(1));
            self.push(fin1, Payload::None);
            let st1 = self.utp_packet(false, ST_STATE, s, l);
            self.push(st1, Payload::None);
            let fin2 = self.utp_packet(false, ST_FIN, s, l);
            self.push(fin2, Payload::None);
            let st2 = self.utp_packet(true, ST_STATE, l.wrapping_add(1), s);
            self.push(st2, Payload::None);
            if let Some(u) = self.utp.as_mut() {
                u.c2s_next = l.wrapping_add(1);
                u.s2c_next = s.wrapping_add(1);
            }
            return;
        }
        // Leecher closes first, the seeder's FIN acks it, the leecher acks that.
        let mut fin1 = self.segment(true, self.c2s_next, Some(self.s2c_next));
        fin1.fin = true;
        self.push(Hdr::Tcp(fin1), Payload::None);
        let mut fin2 = self.segment(false, self.s2c_next, Some(self.c2s_next.wrapping_add(1)));
        fin2.fin = true;
        self.push(Hdr::Tcp(fin2), Payload::None);
        let last = self.segment(
            true,
            self.c2s_next.wrapping_add(1),
            Some(self.s2c_next.wrapping_add(1)),
        );
        self.push(Hdr::Tcp(last), Payload::None);
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

    /// Cuts one write into segments (TCP) or packets (uTP), applies the planned impairments,
    /// queues the frames, and tallies the messages the capture delivers.
    fn load(&mut self, w: Write, sh: &Shared, tally: &mut Tally) {
        let t = &sh.torrent;
        self.buf.clear();
        let mut spans = Vec::with_capacity(w.msgs.len());
        for m in &w.msgs {
            let start = self.buf.len();
            m.encode(t, &mut self.buf);
            if self.lie != 0 && matches!(m, Msg::Piece(_)) {
                // Keep the 13-byte header; lie in the block.
                for b in &mut self.buf[start + 13..] {
                    *b ^= self.lie;
                }
            }
            spans.push((start, self.buf.len() - start));
        }
        let total = self.buf.len();
        let unit = sh.unit;
        let nseg = total.div_ceil(unit);
        let dir = w.from_leecher;
        let utp = self.utp.is_some();
        let cur = match self.utp {
            Some(c) if dir => Cursor::Utp {
                base: c.c2s_next,
                other_next: c.s2c_next,
            },
            Some(c) => Cursor::Utp {
                base: c.s2c_next,
                other_next: c.c2s_next,
            },
            None if dir => Cursor::Tcp {
                base: self.c2s_next,
                other_next: self.s2c_next,
            },
            None => Cursor::Tcp {
                base: self.s2c_next,
                other_next: self.c2s_next,
            },
        };
        let range = |i: usize| (i * unit, unit.min(total - i * unit));

        // Write-relative offset of the first byte the capture shows; bytes before it are
        // lost to a midstream start.
        let mut first_delivered = if self.cut_passed { 0 } else { total };
        let mut lost: Vec<(usize, usize)> = Vec::new();
        // The receiver's ACK of a lost segment, emitted after the next data segment (see
        // `Kind::Loss` below).
        let mut deferred: Option<Hdr> = None;

        let mut i = 0;
        while i < nseg {
            let (off, len) = range(i);
            let kind = self.classify(dir, i + 1 == nseg, off, &mut first_delivered);
            let d = self.data_frame(dir, cur, i, off, i + 1 == nseg);
            let data = Payload::Write {
                off,
                len,
                xor: false,
            };
            if let Some(k) = kind {
                tally.impairment(utp, k, len);
            }
            match kind {
                None => {
                    self.deliver(dir, off, len);
                    let a = self.ack_frame(dir, cur, i, off + len);
                    self.push(d, data);
                    if let Some(x) = deferred.take() {
                        self.push(x, Payload::None);
                    }
                    self.push(a, Payload::None);
                    i += 1;
                }
                Some(Kind::Duplicate) => {
                    // Retransmitted with the same bytes (a spurious retransmission), fresh
                    // IP ident so no L3 de-duplication can hide it; a uTP retransmission
                    // keeps its seq_nr.
                    self.deliver(dir, off, len);
                    let d2 = self.data_frame(dir, cur, i, off, i + 1 == nseg);
                    let a = self.ack_frame(dir, cur, i, off + len);
                    self.push(d, data);
                    self.push(d2, data);
                    self.push(a, Payload::None);
                    i += 1;
                }
                Some(Kind::Loss) => {
                    // Never captured. Its ACK is held until the next data segment is out:
                    // then that segment is the one "beyond a hole" (out_of_order) and the
                    // hole is proven permanent by an ACK that passes it, whichever order an
                    // engine resolves ACK-before-data in. (uTP acks are cumulative too: the
                    // STATE acking k, then the one acking k + 1.)
                    lost.push((off, off + len));
                    deferred = Some(self.ack_frame(dir, cur, i, off + len));
                    i += 1;
                }
                Some(Kind::Conflict) => {
                    self.deliver(dir, off, len);
                    let a = self.ack_frame(dir, cur, i, off + len);
                    let x = self.data_frame(dir, cur, i, off, false);
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
                    i += 1;
                }
                Some(Kind::Reorder) | Some(Kind::OverlapConflict) => {
                    // Eligible segments are never last in their write, so i + 1 exists here.
                    let (off2, len2) = range(i + 1);
                    let kind2 = self.classify(dir, i + 2 == nseg, off2, &mut first_delivered);
                    debug_assert!(kind2.is_none(), "impairments are spaced 4 apart");
                    let d2 = self.data_frame(dir, cur, i + 1, off2, i + 2 == nseg);
                    let data2 = Payload::Write {
                        off: off2,
                        len: len2,
                        xor: false,
                    };
                    self.deliver(dir, off, len);
                    self.deliver(dir, off2, len2);
                    let a = self.ack_frame(dir, cur, i, off + len);
                    let a2 = self.ack_frame(dir, cur, i + 1, off2 + len2);
                    if kind == Some(Kind::Reorder) {
                        self.push(d2, data2);
                        self.push(d, data);
                        self.push(a, Payload::None);
                        self.push(a2, Payload::None);
                    } else {
                        // TCP only (rejected with --utp: uTP packets are not byte ranges).
                        // Second half of the first segment + first half of the second, so
                        // the copy straddles the boundary even for 1-byte segments.
                        let xoff = off + len / 2;
                        let xend = off2 + len2.div_ceil(2);
                        let x = self.data_frame(dir, cur, i, xoff, false);
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

        match (cur, self.utp.as_mut()) {
            (Cursor::Utp { base, .. }, Some(c)) => {
                // One seq_nr per packet, lost ones included.
                let next = base.wrapping_add(nseg as u16);
                if dir {
                    c.c2s_next = next;
                } else {
                    c.s2c_next = next;
                }
            }
            (Cursor::Tcp { base, .. }, _) => {
                let next = base.wrapping_add(total as u32);
                if dir {
                    self.c2s_next = next;
                } else {
                    self.s2c_next = next;
                }
            }
            (Cursor::Utp { .. }, None) => {}
        }
    }
}
