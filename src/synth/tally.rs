//! The ground truth of a whole run: what a capture of all its sessions delivers (messages,
//! blocks, the reassembly and uTP counts each impairment implies), accounted as the
//! sessions are built so it never needs a second pass over the frames.

use super::impair::Kind;
use super::script::Msg;
use super::torrent::{Torrent, BLOCK_LEN};
use super::{ReassemblyTruth, UtpTruth};

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
    pub utp: UtpTruth,
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
            utp: UtpTruth::default(),
        }
    }

    pub(super) fn count(&mut self, m: &Msg, t: &Torrent) {
        if let Msg::Mse { .. } = m {
            // Key exchange bytes, not a peer-wire message.
            return;
        }
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

    /// Accounts one impairment of a `len`-byte data segment / packet, in the transport's
    /// own terms (see the module docs of `synth`).
    pub(super) fn impairment(&mut self, utp: bool, kind: Kind, len: usize) {
        let len = len as u64;
        if utp {
            let u = &mut self.utp;
            match kind {
                Kind::Reorder => u.out_of_order += 1,
                Kind::Duplicate => u.duplicates += 1,
                Kind::Loss => {
                    u.gaps += 1;
                    u.gap_packets += 1;
                    u.gap_bytes += len;
                    u.out_of_order += 1;
                }
                Kind::Conflict => {
                    u.duplicates += 1;
                    u.conflicting += 1;
                }
                // Rejected with --utp before any session exists (`shared`); nothing to count.
                Kind::OverlapConflict => {}
            }
            return;
        }
        let r = &mut self.reassembly;
        match kind {
            Kind::Reorder => r.out_of_order += 1,
            Kind::Duplicate => r.overlaps += 1,
            Kind::Loss => {
                r.gaps += 1;
                r.gap_bytes += len;
                r.out_of_order += 1;
            }
            Kind::Conflict | Kind::OverlapConflict => {
                r.overlaps += 1;
                r.conflicting_overlaps += 1;
            }
        }
    }
}
