//! What the box inserts into one uTP connection toward the subscriber S, and keeps until S
//! acks it: answered blocks waiting (shared `Answers`), the packets sent with them (S's
//! numbering), their retransmission on timeout or when S's selective acks show one missing,
//! and the next time any of that needs doing.
//!
//! Inserted packets are built when sent (and again when resent) from the connection's
//! latest view of R's header fields ([`Toward`]), so a retransmission carries a fresh
//! timestamp and R's latest ack, as R's own would.

use std::collections::VecDeque;

use super::super::answers::Answers;
use super::super::counters::ServeCounters;
use super::super::{Emit, Port};
use crate::serve::seqmap::{SeqSpace, UtpSeq};
use crate::wire::peerwire::emit::{self, PIECE_HEADER_LEN};
use crate::wire::peerwire::BlockRef;
use crate::wire::udpframe::UdpTemplate;
use crate::wire::utp::{UtpRepr, UtpType, HEADER_LEN};

/// Retransmission timeouts double up to this (microseconds).
const MAX_RTO: u64 = 4_000_000;
/// Later packets S reports having (selective ack) before a missing inserted packet is
/// sent again at once, as uTP senders do (BEP 29: three duplicate acks).
const SACK_RESEND_AFTER: usize = 3;
/// Inserted packets in flight at first, and the least the window shrinks to.
const INITIAL_CWND: u32 = 16;
const MIN_CWND: u32 = 4;

/// An inserted packet in flight (S's numbering), its uTP payload only.
#[derive(Debug)]
struct Inserted {
    seq: UtpSeq,
    payload: Vec<u8>,
    sent: u64,
    rto: u64,
    tries: u32,
}

impl Inserted {
    fn due_at(&self) -> u64 {
        self.sent.saturating_add(self.rto)
    }
}

/// How packets toward S look besides their number and payload: an R→S frame's link, IP
/// and UDP headers, and R's latest header fields.
pub(super) struct Toward<'a> {
    pub template: &'a UdpTemplate,
    /// The connection id R sends with.
    pub conn_id: u16,
    /// R's clock now, as S would read it on a packet R sent now (see `Conn::r_clock`).
    pub timestamp: u32,
    pub ts_diff: u32,
    pub wnd: u32,
    /// R's latest ack of S's packets (S→R numbering is never translated).
    pub ack: u16,
}

impl Toward<'_> {
    fn packet(&self, seq: UtpSeq, payload: &[u8]) -> Vec<u8> {
        let h = UtpRepr {
            kind: UtpType::Data,
            conn_id: self.conn_id,
            timestamp: self.timestamp,
            ts_diff: self.ts_diff,
            wnd: self.wnd,
            seq: seq.0,
            ack: self.ack,
        }
        .emit();
        let mut p = Vec::with_capacity(HEADER_LEN + payload.len());
        p.extend_from_slice(&h);
        p.extend_from_slice(payload);
        self.template.build(&p)
    }
}

/// The box's own congestion window for inserted packets, in packets. uTP's receive window
/// (`wnd_size`) is the client's buffer, not its UDP socket's: a burst of a whole window at
/// line rate overflows the socket and is lost (seen in the lab: 1 MiB at once, most of it
/// dropped). So inserted packets go out as a TCP sender's would: slow start from
/// `INITIAL_CWND`, one packet more per round trip after the first loss, halved on a loss
/// S's selective acks show, back to `MIN_CWND` on a timeout; never more than the
/// configured cap.
#[derive(Debug)]
struct Cwnd {
    cwnd: u32,
    ssthresh: u32,
    /// Packets acked since the window last grew in congestion avoidance.
    acked: u32,
    max: u32,
}

impl Cwnd {
    fn new(max: u32) -> Cwnd {
        Cwnd {
            cwnd: INITIAL_CWND.min(max.max(1)),
            ssthresh: u32::MAX,
            acked: 0,
            max: max.max(1),
        }
    }

    fn on_acked(&mut self, n: u32) {
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(n);
        } else {
            self.acked += n;
            while self.acked >= self.cwnd {
                self.acked -= self.cwnd;
                self.cwnd += 1;
            }
        }
        self.cwnd = self.cwnd.min(self.max);
    }

    fn on_loss(&mut self) {
        self.ssthresh = (self.cwnd / 2).max(MIN_CWND);
        self.cwnd = self.ssthresh;
        self.acked = 0;
    }

    fn on_timeout(&mut self) {
        self.ssthresh = (self.cwnd / 2).max(MIN_CWND);
        self.cwnd = MIN_CWND.min(self.max);
        self.acked = 0;
    }
}

#[derive(Debug)]
pub(super) struct UtpInjector {
    pub answers: Answers,
    unacked: VecDeque<Inserted>,
    /// Payload bytes of `unacked` (S's receive buffer holds them until S acks).
    unacked_bytes: usize,
    cwnd: Cwnd,
}

impl UtpInjector {
    /// At most `max_inflight` inserted packets unacked at once.
    pub fn new(max_inflight: u32) -> UtpInjector {
        UtpInjector {
            answers: Answers::default(),
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            cwnd: Cwnd::new(max_inflight),
        }
    }

    pub fn queued(&self) -> usize {
        self.answers.queued()
    }

    pub fn has_pending(&self) -> bool {
        self.answers.has_pending()
    }

    pub fn all_acked(&self) -> bool {
        self.unacked.is_empty()
    }

    /// Inserted payload bytes S has not acked.
    pub fn unacked_bytes(&self) -> usize {
        self.unacked_bytes
    }

    pub fn release(&mut self, all: &mut usize) {
        self.answers.release(all);
    }

    pub fn cancel(&mut self, block: BlockRef, all: &mut usize) -> bool {
        self.answers.cancel(block, all)
    }

    /// Packets that may go out now besides those in flight.
    fn free_packets(&self) -> u32 {
        self.cwnd.cwnd.saturating_sub(self.unacked.len() as u32)
    }

    /// The first waiting block fits in S's window `s_wnd` (bytes) besides what is in
    /// flight already, and the congestion window has room. A block goes whole once it
    /// starts, so the congestion window may be passed by up to one block's packets; else a
    /// window smaller than a block (after timeouts) would never let one go.
    pub fn room(&self, s_wnd: u32) -> bool {
        self.answers.front().is_some_and(|b| {
            let len = PIECE_HEADER_LEN + b.data.len();
            self.unacked_bytes + len <= s_wnd as usize && self.free_packets() > 0
        })
    }

    /// The waiting blocks that fit in S's window and the congestion window, as PIECE
    /// messages, and how many blocks and block bytes they carry.
    pub fn take_fitting(
        &mut self,
        s_wnd: u32,
        max_payload: usize,
        all: &mut usize,
    ) -> (Vec<u8>, u64, u64) {
        let mut bytes: Vec<u8> = Vec::new();
        let (mut blocks, mut payload) = (0u64, 0u64);
        let free = self.free_packets();
        while let Some(b) = self.answers.front() {
            let msg_len = PIECE_HEADER_LEN + b.data.len();
            if self.unacked_bytes + bytes.len() + msg_len > s_wnd as usize
                || Self::packets_for(bytes.len(), max_payload) >= free
            {
                break;
            }
            let Some(b) = self.answers.pop() else {
                break;
            };
            emit::piece(&mut bytes, b.block.index, b.block.begin, &b.data);
            self.answers.charge(PIECE_HEADER_LEN, all);
            blocks += 1;
            payload += b.data.len() as u64;
        }
        (bytes, blocks, payload)
    }

    /// How many packets of at most `max_payload` bytes carry `len` bytes.
    pub fn packets_for(len: usize, max_payload: usize) -> u32 {
        len.div_ceil(max_payload.max(1)) as u32
    }

    /// Send `bytes` as consecutive packets from S's number `seq`, each at most
    /// `max_payload` bytes, keeping each until S acks it.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: u64,
        mut seq: UtpSeq,
        bytes: &[u8],
        max_payload: usize,
        rto_ms: u64,
        to: &Toward<'_>,
        counters: &mut ServeCounters,
        out: &mut Vec<Emit>,
    ) {
        for chunk in bytes.chunks(max_payload.max(1)) {
            out.push(Emit::Frame(Port::Subscriber, to.packet(seq, chunk)));
            self.unacked.push_back(Inserted {
                seq,
                payload: chunk.to_vec(),
                sent: now,
                rto: rto_ms.saturating_mul(1000).max(1000),
                tries: 0,
            });
            self.unacked_bytes += chunk.len();
            counters.utp.injected_packets += 1;
            seq = seq.plus(1);
        }
    }

    /// S's cumulative ack (S's numbering) and the inserted packets its selective ack
    /// reports: retire them; resend at once an inserted packet S is missing while it
    /// reports several later ones.
    #[allow(clippy::too_many_arguments)]
    pub fn on_ack(
        &mut self,
        now: u64,
        ack: UtpSeq,
        sacked_inserted: &[UtpSeq],
        later_received: usize,
        to: Option<&Toward<'_>>,
        max_retransmits: u32,
        all: &mut usize,
        counters: &mut ServeCounters,
        out: &mut Vec<Emit>,
    ) {
        let (mut freed, mut n) = (0, 0);
        self.unacked.retain(|i| {
            let keep = i.seq.dist(ack) > 0 && !sacked_inserted.contains(&i.seq);
            if !keep {
                freed += i.payload.len();
                n += 1;
            }
            keep
        });
        self.unacked_bytes -= freed.min(self.unacked_bytes);
        self.answers.free(freed, all);
        self.cwnd.on_acked(n);
        if later_received >= SACK_RESEND_AFTER {
            if let Some(first) = self.unacked.front_mut() {
                // Only the packet S is waiting for, and not twice within its timeout.
                if first.seq == ack.plus(1) && first.tries == 0 {
                    first.sent = 0;
                    self.cwnd.on_loss();
                }
            }
            self.retransmit_due(now, to, max_retransmits, all, counters, out);
        }
    }

    /// Send again what S has not acked within its timeout (doubling it); give up, counted,
    /// on packets retried `max_retransmits` times.
    pub fn retransmit_due(
        &mut self,
        now: u64,
        to: Option<&Toward<'_>>,
        max_retransmits: u32,
        all: &mut usize,
        counters: &mut ServeCounters,
        out: &mut Vec<Emit>,
    ) {
        let Some(to) = to else {
            return;
        };
        let mut abandoned = 0;
        let mut timed_out = false;
        for inj in self.unacked.iter_mut() {
            if now < inj.due_at() {
                continue;
            }
            timed_out |= inj.sent != 0;
            if inj.tries >= max_retransmits {
                abandoned += 1;
                continue;
            }
            inj.tries += 1;
            inj.sent = now;
            inj.rto = (inj.rto * 2).min(MAX_RTO);
            out.push(Emit::Frame(
                Port::Subscriber,
                to.packet(inj.seq, &inj.payload),
            ));
            counters.utp.retransmitted_packets += 1;
            counters.utp.retransmitted_bytes += inj.payload.len() as u64;
        }
        if abandoned > 0 {
            let mut freed = 0;
            self.unacked.retain(|i| {
                let keep = i.tries < max_retransmits || now < i.due_at();
                if !keep {
                    freed += i.payload.len();
                }
                keep
            });
            self.unacked_bytes -= freed.min(self.unacked_bytes);
            self.answers.free(freed, all);
            counters.utp.retransmits_abandoned += abandoned;
        }
        if timed_out {
            self.cwnd.on_timeout();
        }
    }

    /// When a packet S has not acked is next due for retransmission (or abandonment).
    pub fn deadline(&self) -> Option<u64> {
        self.unacked.iter().map(Inserted::due_at).min()
    }
}
