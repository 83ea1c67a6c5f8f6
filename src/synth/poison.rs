//! `--poison SCENARIO`: a poisoned swarm with exact truth. Every leecher (flow) talks to its
//! honest seeder and, on connections of their own, to one or two hostile peers (198.19.66.x
//! or 2001:2:0:66::x, port 6881; the leecher's side is port 39999 - k). Every connection is
//! directed: the leecher REQUESTs one block at a time from the peer the scenario names, and
//! the peer answers with its PIECE (a hostile peer's block XORed with its byte, never 0).
//!
//! The run: every connection opens (handshakes, bitfield or have_all, unchoke); then piece by
//! piece, and within a piece flow by flow, the scenario's copies in its order, each flow's
//! leecher announcing the piece (HAVE) to all its peers after its copies; then every
//! connection closes. A scenario draws which blocks, how many and in which order from the
//! seed (`fastrand`, a stream of its own), so the truth is derived from what was sent
//! ([`super::blame`]), never assumed. The honest seeder always sends every block of every
//! piece, so every piece can verify; no peer sends a block twice, except the honest seeder's
//! re-sent piece in `refetch`.

use serde::{Deserialize, Serialize};

use super::blame::Ledger;
use super::packet::Endpoints;
use super::script::{Block, Order};
use super::session::{Session, Shared, HOSTILE_XOR};
use super::tally::Tally;
use super::torrent::BLOCK_LEN;
use super::{BadCopies, HostilePeer, PoisonTruth, Pump, SynthError};

/// What the second hostile peer of `different` XORs its blocks with (the first, and both of
/// `identical`, use [`HOSTILE_XOR`]).
pub const OTHER_XOR: u8 = 0xa5;

/// Who sends, and in which order, the copies of each piece. "Some blocks" is a number of
/// distinct blocks drawn from the seed, in an order drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Poison {
    /// A hostile peer sends some blocks (1 up to all but one), then the honest seeder
    /// sends the whole piece.
    Before,
    /// The honest seeder sends the piece block by block; right after its copy of some of
    /// them (at least one), the hostile peer sends its copy of that block (of the last
    /// block: after the piece verified).
    After,
    /// Both send every block, block by block; for each block a seed draw says which one
    /// comes first.
    Interleaved,
    /// Two hostile peers send identical bad copies of the same blocks (1 up to all),
    /// interleaved, then the honest seeder sends the whole piece.
    Identical,
    /// As `identical`, but the second hostile peer's copies differ (XOR 0xA5, not 0x5A).
    Different,
    /// The honest seeder sends the whole piece, then (after it verified) the hostile peer
    /// sends some blocks (1 up to all).
    Late,
    /// A hostile peer sends some blocks (1 up to all but one), the honest seeder the other
    /// ones, so the piece fails its hash; then the honest seeder sends the whole piece again
    /// (a client's re-request after a failure, as in issue 20's capture).
    Refetch,
}

/// Who sends a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Honest,
    /// Hostile peer k (0-based).
    Hostile(u8),
}

/// One copy of a block: who sends it, and which block of the piece (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub peer: Peer,
    pub block: u32,
}

impl Poison {
    /// Hostile peers of the scenario.
    pub fn hostile_peers(self) -> u8 {
        match self {
            Poison::Identical | Poison::Different => 2,
            _ => 1,
        }
    }

    /// The byte hostile peer `k` XORs its blocks with.
    pub fn xor(self, k: u8) -> u8 {
        if self == Poison::Different && k == 1 {
            OTHER_XOR
        } else {
            HOSTILE_XOR
        }
    }

    /// The copies of a piece of `n` blocks, in the order they are sent.
    pub fn steps(self, rng: &mut fastrand::Rng, n: u32) -> Vec<Step> {
        let honest = |block| Step {
            peer: Peer::Honest,
            block,
        };
        let hostile = |k, block| Step {
            peer: Peer::Hostile(k),
            block,
        };
        // "All but one" of a one-block piece is that block.
        let but_one = n.saturating_sub(1).max(1);
        let mut out = Vec::with_capacity(3 * n as usize);
        match self {
            Poison::Before => {
                out.extend(some(rng, n, but_one).into_iter().map(|b| hostile(0, b)));
                out.extend((0..n).map(honest));
            }
            Poison::After => {
                let chosen = some(rng, n, n);
                for b in 0..n {
                    out.push(honest(b));
                    if chosen.contains(&b) {
                        out.push(hostile(0, b));
                    }
                }
            }
            Poison::Interleaved => {
                for b in 0..n {
                    if rng.bool() {
                        out.extend([hostile(0, b), honest(b)]);
                    } else {
                        out.extend([honest(b), hostile(0, b)]);
                    }
                }
            }
            Poison::Identical | Poison::Different => {
                let set = some(rng, n, n);
                let mut second = set.clone();
                rng.shuffle(&mut second);
                let (mut a, mut b) = (set.into_iter().peekable(), second.into_iter().peekable());
                // A random merge of the two peers' sends.
                loop {
                    let first = match (a.peek(), b.peek()) {
                        (None, None) => break,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (Some(_), Some(_)) => rng.bool(),
                    };
                    let next = if first {
                        a.next().map(|x| hostile(0, x))
                    } else {
                        b.next().map(|x| hostile(1, x))
                    };
                    out.extend(next);
                }
                out.extend((0..n).map(honest));
            }
            Poison::Late => {
                out.extend((0..n).map(honest));
                out.extend(some(rng, n, n).into_iter().map(|b| hostile(0, b)));
            }
            Poison::Refetch => {
                let lies = some(rng, n, but_one);
                out.extend(lies.iter().map(|&b| hostile(0, b)));
                out.extend((0..n).filter(|b| !lies.contains(b)).map(honest));
                out.extend((0..n).map(honest));
            }
        }
        out
    }
}

/// 1 up to `max` (at most `n`) distinct blocks of `0..n`, in a random order.
fn some(rng: &mut fastrand::Rng, n: u32, max: u32) -> Vec<u32> {
    let mut all: Vec<u32> = (0..n).collect();
    rng.shuffle(&mut all);
    let count = rng.u32(1..=max.clamp(1, n.max(1)));
    all.truncate(count as usize);
    all
}

/// Runs a poisoned capture: adds the hostile connections to `sessions` (after the flows' own,
/// flow by flow) and sends every frame into `pump` in the scenario's order (see the module
/// docs). Returns the truth the copies sent imply.
pub(super) fn run(
    p: Poison,
    sh: &Shared,
    master: &mut fastrand::Rng,
    sessions: &mut Vec<Session>,
    tally: &mut Tally,
    pump: &mut Pump<'_>,
) -> Result<PoisonTruth, SynthError> {
    let flows = sessions.len();
    let h = p.hostile_peers();
    for f in 0..sh.flows {
        for k in 0..h {
            let ep = Endpoints::hostile(f, k, sh.ipv6)?;
            sessions.push(Session::with(f, ep, p.xor(k), sh, master.u64(..))?);
        }
    }
    let at = |f: usize, peer: Peer| match peer {
        Peer::Honest => f,
        Peer::Hostile(k) => flows + f * usize::from(h) + usize::from(k),
    };
    // Every connection opens before the first block.
    for s in sessions.iter_mut() {
        pump.drain(s, sh, tally)?;
    }
    let mut rng = fastrand::Rng::with_seed(master.u64(..));
    let mut ledger = Ledger::default();
    let t = &sh.torrent;
    for index in 0..t.num_pieces {
        let plen = t.piece_len(index);
        let n = plen.div_ceil(BLOCK_LEN);
        ledger.piece(n);
        for f in 0..flows {
            for step in p.steps(&mut rng, n) {
                let begin = step.block * BLOCK_LEN;
                let b = Block {
                    index,
                    begin,
                    len: (plen - begin).min(BLOCK_LEN),
                };
                let s = sessions
                    .get_mut(at(f, step.peer))
                    .ok_or_else(|| SynthError::Build("a step names no connection".into()))?;
                s.order(Order::Piece(b));
                pump.drain(s, sh, tally)?;
                ledger.copy(step.block, b.len, s.lie(), s.ep.seeder);
            }
            // The leecher tells every peer it has the piece now.
            for peer in std::iter::once(Peer::Honest).chain((0..h).map(Peer::Hostile)) {
                if let Some(s) = sessions.get_mut(at(f, peer)) {
                    s.order(Order::Have(index));
                    pump.drain(s, sh, tally)?;
                }
            }
        }
    }
    for s in sessions.iter_mut() {
        s.finish();
        pump.drain(s, sh, tally)?;
    }

    let mut honest: Vec<String> = sessions
        .iter()
        .take(flows)
        .map(|s| s.ep.seeder.to_string())
        .collect();
    honest.sort();
    honest.dedup();
    let hostile = (0..h)
        .map(|k| {
            Ok(HostilePeer {
                address: Endpoints::hostile(0, k, sh.ipv6)?.seeder.to_string(),
                xor: p.xor(k),
            })
        })
        .collect::<Result<_, SynthError>>()?;
    let l = ledger;
    Ok(PoisonTruth {
        scenario: p,
        honest,
        hostile,
        pieces_verified: l.pieces_verified,
        pieces_failed: l.pieces_failed,
        pieces_recovered: l.pieces_recovered,
        failed_by_peer: l
            .failed_by_peer
            .iter()
            .map(|(a, n)| (a.to_string(), *n))
            .collect(),
        proven_bad_peers: l
            .proven_bad
            .iter()
            .map(|(a, &(blocks, bytes))| (a.to_string(), BadCopies { blocks, bytes }))
            .collect(),
    })
}
