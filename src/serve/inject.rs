//! What the box inserts into one connection toward the subscriber S, and keeps until S acks
//! it: answered blocks waiting for room in S's window, the segments sent with them, their
//! retransmission, and the next time any of that needs doing (`deadline`, so the caller
//! sleeps until then rather than ticking).
//!
//! The answered blocks and the queue accounting are `serve::answers`'s.

use std::collections::VecDeque;

use super::answers::Answers;
use super::counters::ServeCounters;
use super::{Emit, Port};
use crate::wire::peerwire::emit::{self, PIECE_HEADER_LEN};
use crate::wire::peerwire::BlockRef;
use crate::wire::seq::SeqNum;
use crate::wire::tcp::TcpFlags;
use crate::wire::tcpframe::{SegmentSpec, Template};

/// Retransmission timeouts double up to this (microseconds).
const MAX_RTO: u64 = 4_000_000;

/// Inserted bytes in flight (S's sequence space).
#[derive(Debug)]
struct Injected {
    seq: SeqNum,
    payload: Vec<u8>,
    sent: u64,
    rto: u64,
    tries: u32,
}

impl Injected {
    fn due_at(&self) -> u64 {
        self.sent.saturating_add(self.rto)
    }
}

/// How segments toward S look besides their payload: an R→S frame's link and IP headers,
/// R's latest ack and window, and timestamps (TSval echoes R's latest, TSecr S's).
pub(super) struct Toward<'a> {
    pub template: &'a Template<Vec<u8>>,
    pub ack: SeqNum,
    pub window: u16,
    pub ts: Option<(u32, u32)>,
}

impl Toward<'_> {
    fn segment(&self, seq: SeqNum, payload: &[u8]) -> Vec<u8> {
        self.template.build(&SegmentSpec {
            seq,
            ack: self.ack,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: self.window,
            ts: self.ts,
            payload,
        })
    }
}

#[derive(Debug, Default)]
pub(super) struct Injector {
    answers: Answers,
    unacked: VecDeque<Injected>,
    /// Highest ack from S (S's view of R→S space), and its window in bytes.
    s_ack: Option<SeqNum>,
    s_win: u32,
    dupacks: u32,
}

impl Injector {
    pub fn queued(&self) -> usize {
        self.answers.queued()
    }

    pub fn has_pending(&self) -> bool {
        self.answers.has_pending()
    }

    pub fn all_acked(&self) -> bool {
        self.unacked.is_empty()
    }

    pub fn s_ack(&self) -> Option<SeqNum> {
        self.s_ack
    }

    /// Release everything this connection holds from the box-wide total.
    pub fn release(&mut self, all: &mut usize) {
        self.answers.release(all);
    }

    fn free(&mut self, n: usize, all: &mut usize) {
        self.answers.free(n, all);
    }

    /// Queue an answered block; the oldest answered block is forgotten past `answered_max`.
    pub fn answer(
        &mut self,
        block: BlockRef,
        data: Vec<u8>,
        answered_max: usize,
        all: &mut usize,
        counters: &mut ServeCounters,
    ) {
        self.answers
            .answer(block, data, answered_max, all, counters);
    }

    /// A CANCEL from S: whether it cancels a block we answered (then a copy still waiting is
    /// dropped; R never saw the REQUEST).
    pub fn cancel(&mut self, block: BlockRef, all: &mut usize) -> bool {
        self.answers.cancel(block, all)
    }

    /// The first waiting block fits in S's window if inserted at S's sequence `s_start`.
    pub fn room_at(&self, s_start: SeqNum) -> bool {
        match (self.answers.front(), self.s_ack) {
            (Some(b), Some(ack)) => {
                // The same test as `take_fitting`'s: not past the window's right edge.
                (s_start + (PIECE_HEADER_LEN + b.data.len()) as u32).diff(ack + self.s_win) <= 0
            }
            _ => false,
        }
    }

    /// The waiting blocks that fit in S's window from `s_start`, as PIECE messages, and how
    /// many blocks and block bytes they carry.
    pub fn take_fitting(&mut self, s_start: SeqNum, all: &mut usize) -> (Vec<u8>, u64, u64) {
        let Some(ack) = self.s_ack else {
            return (Vec::new(), 0, 0);
        };
        let right = ack + self.s_win;
        let mut bytes: Vec<u8> = Vec::new();
        let (mut blocks, mut payload) = (0u64, 0u64);
        while let Some(b) = self.answers.front() {
            let msg_len = PIECE_HEADER_LEN + b.data.len();
            if (s_start + (bytes.len() + msg_len) as u32) > right {
                break;
            }
            let Some(b) = self.answers.pop() else {
                break;
            };
            emit::piece(&mut bytes, b.block.index, b.block.begin, &b.data);
            // The queue charge moves from the block to its header-carrying segments.
            self.answers.charge(PIECE_HEADER_LEN, all);
            blocks += 1;
            payload += b.data.len() as u64;
        }
        (bytes, blocks, payload)
    }

    /// Send `bytes` from S's sequence `seq` in segments of at most `mss` (less options),
    /// keeping each until S acks it.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: u64,
        mut seq: SeqNum,
        bytes: &[u8],
        mss: u16,
        rto_ms: u64,
        to: &Toward<'_>,
        counters: &mut ServeCounters,
        out: &mut Vec<Emit>,
    ) {
        let opt = if to.ts.is_some() { 12 } else { 0 };
        let seg = usize::from(mss).saturating_sub(opt).max(64);
        for chunk in bytes.chunks(seg) {
            out.push(Emit::Frame(Port::Subscriber, to.segment(seq, chunk)));
            self.unacked.push_back(Injected {
                seq,
                payload: chunk.to_vec(),
                sent: now,
                rto: rto_ms.saturating_mul(1000).max(1000),
                tries: 0,
            });
            counters.injected_segments += 1;
            seq = seq + chunk.len() as u32;
        }
    }

    /// S acked up to `ack` with `win` bytes of window: retire inserted bytes, fast
    /// retransmit on three duplicate acks, remember the window.
    #[allow(clippy::too_many_arguments)]
    pub fn on_ack(
        &mut self,
        now: u64,
        ack: SeqNum,
        win: u32,
        pure: bool,
        to: Option<&Toward<'_>>,
        max_retransmits: u32,
        all: &mut usize,
        counters: &mut ServeCounters,
        out: &mut Vec<Emit>,
    ) {
        let advanced = self.s_ack.is_none_or(|a| ack > a);
        if advanced {
            self.s_ack = Some(ack);
            self.dupacks = 0;
        } else if self.s_ack == Some(ack)
            && pure
            && self.unacked.front().is_some_and(|i| i.seq == ack)
        {
            self.dupacks += 1;
            if self.dupacks == 3 {
                if let Some(first) = self.unacked.front_mut() {
                    first.sent = 0; // due now
                }
                self.retransmit_due(now, to, max_retransmits, all, counters, out);
            }
        }
        self.s_win = win;
        while let Some(front) = self.unacked.front() {
            if front.seq + front.payload.len() as u32 <= ack {
                let n = front.payload.len();
                self.unacked.pop_front();
                self.free(n, all);
            } else {
                break;
            }
        }
    }

    /// Send again what S has not acked within its timeout (doubling it); give up, counted,
    /// on segments retried `max_retransmits` times.
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
        for inj in self.unacked.iter_mut() {
            if now < inj.due_at() {
                continue;
            }
            if inj.tries >= max_retransmits {
                abandoned += 1;
                continue;
            }
            inj.tries += 1;
            inj.sent = now;
            inj.rto = (inj.rto * 2).min(MAX_RTO);
            out.push(Emit::Frame(
                Port::Subscriber,
                to.segment(inj.seq, &inj.payload),
            ));
            counters.retransmitted_segments += 1;
            counters.retransmitted_bytes += inj.payload.len() as u64;
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
            self.free(freed, all);
            counters.retransmits_abandoned += abandoned;
        }
    }

    /// When a segment S has not acked is next due for retransmission (or abandonment).
    pub fn deadline(&self) -> Option<u64> {
        self.unacked.iter().map(Injected::due_at).min()
    }
}

#[cfg(test)]
mod tests;
