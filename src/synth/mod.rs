//! `peercache synth`: a deterministic generator of BitTorrent-over-TCP (or, with `--utp`,
//! over uTP / BEP 29 on UDP) captures with chosen capture impairments, and the exact ground
//! truth ([`Truth`]) of what they deliver.
//!
//! Same arguments => byte-identical output: all randomness comes from
//! `fastrand::Rng::with_seed(--seed)`, timestamps from a frame counter. Generation streams:
//! each session holds one application write at a time and content is produced on demand from
//! the seed, so memory does not grow with `--size` (beyond the info dict, 20 bytes per piece,
//! and a 1-bit-per-block set for `distinct_blocks`) nor with `--flows * --size`.
//!
//! Truth conventions the engine is tested against (all counted over the whole capture):
//! - Impairments only ever hit seeder->leecher data segments. Each session direction is a
//!   sequence of application writes (one peer-wire write each: a PIECE, a batch of REQUESTs,
//!   ...), each cut into MSS (or 1-byte) segments, each data segment followed by the
//!   receiver's pure ACK of the whole stream so far.
//! - reorder k: `D[k+1], D[k], A[k], A[k+1]` => out_of_order += 1.
//! - duplicate k: `D[k], D[k]', A[k]` (the copy has a fresh IP ident) => overlaps += 1.
//! - loss k: `D[k+1], A[k], A[k+1]` (D[k] never written; its ACK follows D[k+1]) =>
//!   gaps += 1, gap_bytes += len(D[k]), out_of_order += 1.
//! - conflict k: `D[k], A[k], X[k]` with X = same range, bytes ^ 0xFF, no ACK after it =>
//!   overlaps += 1, conflicting_overlaps += 1.
//! - overlap-conflict k: `D[k], A[k], D[k+1], A[k+1], X` with X = second half of D[k] +
//!   first half (rounded up) of D[k+1], bytes ^ 0xFF => overlaps += 1, conflicting += 1.
//! - midstream: every frame (both directions) before the first frame of seeder data segment
//!   `n/3` (n = seeder data segments of the session) is not written.
//!
//! With `--utp` the same script, cut and impairment placement apply to uTP packets (one
//! ST_DATA per segment, `seq_nr` + 1 per packet, an ST_STATE acking each); counts go to
//! [`UtpTruth`] instead of [`ReassemblyTruth`] (which stays all zero):
//! - connection: `SYN(conn_id R, seq I)`, `STATE(conn_id R, seq J, ack I)`; the leecher then
//!   sends with conn_id R + 1 starting at seq I + 1, the seeder with R starting at seq J.
//!   STATE packets carry the sender's next seq_nr; DATA carries ack_nr = last seq_nr received.
//! - reorder k: `D[k+1], D[k], S[k], S[k+1]` => out_of_order += 1.
//! - duplicate k: `D[k], D[k]', S[k]` => duplicates += 1.
//! - loss k: `D[k+1], S[k], S[k+1]` => gaps += 1, gap_packets += 1, gap_bytes += len(D[k]),
//!   out_of_order += 1 (the delivered stream omits D[k]'s payload).
//! - conflict k: `D[k], S[k], X[k]` (same seq_nr, payload ^ 0xFF) => duplicates += 1,
//!   conflicting += 1; the first copy wins.
//! - overlap-conflict: rejected (packets, not byte ranges, so there is nothing to straddle).
//! - close: `FIN(leecher)`, `STATE`, `FIN(seeder)`, `STATE`; each FIN takes a seq_nr.
//!
//! With `--poison SCENARIO` the sessions are not interleaved at random: the scenario's run
//! (`poison`) adds a connection from every leecher to each of one or two hostile peers and
//! orders every block copy, piece by piece; [`PoisonTruth`] is derived from that order
//! (`blame`). Memory stays bounded: one piece's copies at a time.

mod blame;
mod impair;
mod packet;
mod pcapout;
mod poison;
mod script;
mod session;
mod survey;
mod tally;
#[cfg(test)]
mod tests;
mod torrent;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use packet::{LEECHER_BASE_PORT, MAX_FLOWS, MAX_HOSTILE_PEERS, SEEDER_PORT};
pub use poison::{Poison, OTHER_XOR};
pub use script::{LEECHER_UT_METADATA, METADATA_PIECE, SEEDER_UT_METADATA, UT_PEX};
pub use session::HOSTILE_XOR;
pub use torrent::{content_byte_range, fill_content, hex, Torrent, ANNOUNCE_URL, BLOCK_LEN};

/// First timestamp of every capture (2020-09-13T12:26:40Z): fixed, never the wall clock.
pub const START_MICROS: u64 = 1_600_000_000_000_000;
/// Timestamp step between consecutive frames of a capture.
pub const STEP_MICROS: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synth arguments: {0}")]
    InvalidArgs(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: pcap: {source}")]
    Pcap {
        path: PathBuf,
        #[source]
        source: pcap::Error,
    },
    #[error("{path}: writing truth JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("building a frame: {0}")]
    Build(String),
    /// For sinks: whatever a caller's sink needs to report.
    #[error("frame sink: {0}")]
    Sink(String),
}

pub use crate::size::ByteSize;

/// `peercache synth [options] -o OUT.pcap`
#[derive(Clone, Debug, clap::Args)]
pub struct SynthArgs {
    /// Output pcap (linktype Ethernet).
    #[arg(short, long)]
    pub output: PathBuf,
    /// PRNG seed; same seed and options give a byte-identical capture.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent sessions, interleaved in time; all share one torrent, each has its own
    /// leecher.
    #[arg(long, default_value_t = 1)]
    pub flows: u32,
    /// Content size of the torrent (256KiB, 1.5MiB, 2MB: KiB... powers of 1024, KB... of 1000).
    #[arg(long, default_value = "256KiB")]
    pub size: ByteSize,
    /// Piece length of the torrent in bytes.
    #[arg(long, default_value_t = 65536)]
    pub piece_length: u32,
    /// Payload bytes per TCP data segment (uTP: per ST_DATA packet).
    #[arg(long, default_value_t = 1448)]
    pub mss: u16,
    /// Per session: swap a seeder data segment with the next one.
    #[arg(long, default_value_t = 0)]
    pub reorder: u32,
    /// Per session: emit a seeder data segment twice in a row.
    #[arg(long, default_value_t = 0)]
    pub duplicate: u32,
    /// Per session: never write a seeder data segment (its ACK is written).
    #[arg(long, default_value_t = 0)]
    pub loss: u32,
    /// Per session: re-send a seeder data segment's range with different bytes.
    #[arg(long, default_value_t = 0)]
    pub conflict: u32,
    /// Per session: a segment straddling two sent segments, with different bytes.
    #[arg(long, default_value_t = 0)]
    pub overlap_conflict: u32,
    /// Every data segment carries 1 byte.
    #[arg(long)]
    pub one_byte: bool,
    /// The capture starts a third into each session (no handshakes seen).
    #[arg(long)]
    pub midstream: bool,
    /// 802.1Q VLAN id.
    #[arg(long)]
    pub vlan: Option<u16>,
    /// Carry every session over uTP (BEP 29) on UDP instead of TCP.
    #[arg(long)]
    pub utp: bool,
    /// Outer 802.1ad (0x88a8) tag around the --vlan tag.
    #[arg(long)]
    pub qinq: Option<u16>,
    /// IPv6 addresses instead of IPv4.
    #[arg(long)]
    pub ipv6: bool,
    /// Leecher first fetches the info dict with BEP 9 ut_metadata.
    #[arg(long)]
    pub magnet: bool,
    /// The seeders of the last N flows answer every request with wrong bytes (each block
    /// XOR 0x5A): hostile peers whose pieces must fail their hash.
    #[arg(long, default_value_t = 0)]
    pub hostile: u32,
    /// A poisoned swarm: every leecher also talks to one or two hostile peers, and piece by
    /// piece the scenario says who sends which block copy when (before, after, interleaved,
    /// identical, different, late, refetch: see docs/cli.md); the truth says which pieces
    /// verify, which hashes fail with whom, and who is proven bad for how many blocks. No
    /// capture impairment, --midstream or --hostile with it.
    #[arg(long, value_enum)]
    pub poison: Option<Poison>,
    /// The first N flows open with an MSE/PE key exchange (random DH values, pads and RC4
    /// parts of the exact lengths; the leecher's handshake encrypted in IA) that selects
    /// plaintext, as aria2 and libtorrent negotiate by default; then the plain peer wire.
    #[arg(long, default_value_t = 0)]
    pub mse_plaintext: u32,
    /// Write the .torrent here.
    #[arg(long)]
    pub torrent_out: Option<PathBuf>,
    /// Write the Truth JSON here.
    #[arg(long)]
    pub truth_out: Option<PathBuf>,
}

impl Default for SynthArgs {
    /// The CLI defaults, writing to `synth.pcap`; for tests and benches
    /// (`SynthArgs { flows: 8, ..Default::default() }`).
    fn default() -> Self {
        SynthArgs {
            output: PathBuf::from("synth.pcap"),
            seed: 1,
            flows: 1,
            size: ByteSize(256 << 10),
            piece_length: 65536,
            mss: 1448,
            reorder: 0,
            duplicate: 0,
            loss: 0,
            conflict: 0,
            overlap_conflict: 0,
            one_byte: false,
            midstream: false,
            utp: false,
            vlan: None,
            qinq: None,
            ipv6: false,
            magnet: false,
            hostile: 0,
            poison: None,
            mse_plaintext: 0,
            torrent_out: None,
            truth_out: None,
        }
    }
}

/// One full Ethernet frame of the capture.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts_micros: u64,
    pub data: &'a [u8],
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassemblyTruth {
    pub gaps: u64,
    pub gap_bytes: u64,
    pub overlaps: u64,
    pub conflicting_overlaps: u64,
    pub out_of_order: u64,
}

/// Capture-level ground truth of a `--utp` run, summed over all connections. Impairments
/// hit seeder->leecher ST_DATA packets only (see the module docs for the exact orders).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtpTruth {
    /// Every uTP packet written (SYN, STATE, DATA, FIN), both directions.
    pub packets: u64,
    /// ST_DATA packets written, both directions, copies included.
    pub data_packets: u64,
    /// DATA packets captured beyond a missing seq_nr (reorders, and the successor of a loss).
    pub out_of_order: u64,
    /// DATA packets captured again with a seq_nr already seen.
    pub duplicates: u64,
    /// Duplicates whose payload differs from the first copy (which wins).
    pub conflicting: u64,
    /// Runs of seq_nrs never captured but acknowledged by the receiver.
    pub gaps: u64,
    pub gap_packets: u64,
    /// Payload bytes of the lost packets: known to the generator only, a capture cannot show
    /// them.
    pub gap_bytes: u64,
}

/// The delivered byte streams of one TCP flow: what a correct reassembler hands upward (the
/// original stream minus lost segments minus everything before a midstream start; first
/// copies win over conflicting ones). The same record the engine reports with
/// `record_streams`, so the two compare directly.
pub type StreamTruth = crate::report::StreamRecord;

/// A hostile peer of a `--poison` run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostilePeer {
    /// "ip:port", as the report names peers.
    pub address: String,
    /// The byte it XORs every byte of its blocks with (never 0).
    pub xor: u8,
}

/// A peer's block copies proven bad, and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadCopies {
    pub blocks: u64,
    pub bytes: u64,
}

/// Ground truth of a `--poison` run: what an engine following the documented search
/// (`swarm::assembly`) reports for the swarm, derived from the order the copies were sent in
/// (the rules: `synth::blame`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonTruth {
    pub scenario: Poison,
    /// The honest seeders, "ip:port", sorted (one per flow; flows may share one).
    pub honest: Vec<String>,
    pub hostile: Vec<HostilePeer>,
    /// Pieces that verify: every piece (each flow's honest seeder sends all of them).
    pub pieces_verified: u64,
    /// Pieces whose first combination hashed held a bad copy (each fails once).
    pub pieces_failed: u64,
    /// Pieces verified after they failed.
    pub pieces_recovered: u64,
    /// Per peer: the failures it took part in (a copy of it in the failing combination;
    /// honest peers too). Peers with none are absent.
    pub failed_by_peer: BTreeMap<String, u64>,
    /// Per peer proven to have lied: its bad block copies and their bytes. No peer sends a
    /// block twice, so this is every hostile PIECE message and its block length.
    pub proven_bad_peers: BTreeMap<String, BadCopies>,
}

/// Ground truth of a generated capture, computed from the construction.
///
/// Message counts (`messages`, `piece_messages`, `piece_bytes`, `request_messages`,
/// `distinct_blocks`) include a message only if its first byte was captured and its header
/// bytes (first 13 bytes of a PIECE, the whole message otherwise) all lie in delivered bytes
/// (not in a lost segment, not before a midstream start). `piece_bytes` sums the block
/// lengths of the counted PIECE messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    pub seed: u64,
    /// Number of TCP flows (uTP connections with --utp): one per `--flows`, and with
    /// `--poison` one more per flow and hostile peer.
    pub flows: u32,
    /// v1 info-hash, 40 lowercase hex digits.
    pub info_hash: String,
    pub piece_length: u32,
    pub total_length: u64,
    pub pieces: u32,
    pub piece_messages: u64,
    pub piece_bytes: u64,
    pub request_messages: u64,
    /// Distinct (index, begin, length) among counted PIECE messages, over all flows.
    pub distinct_blocks: u64,
    /// Per message type, both directions; every type is present (0 when absent).
    pub messages: BTreeMap<String, u64>,
    /// TCP reassembly; all zero with --utp.
    pub reassembly: ReassemblyTruth,
    /// One per connection: the flows in order, then (`--poison`) each flow's connections
    /// to the hostile peers, flow by flow.
    pub streams: Vec<StreamTruth>,
    /// Some exactly with --utp; absent from the JSON of TCP runs so their Truth files are
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utp: Option<UtpTruth>,
    /// Some exactly with --poison (absent from the JSON of other runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison: Option<PoisonTruth>,
}

/// Every key of `Truth::messages`.
pub const MESSAGE_TYPES: [&str; 18] = [
    "handshake",
    "keepalive",
    "choke",
    "unchoke",
    "interested",
    "not_interested",
    "have",
    "bitfield",
    "request",
    "piece",
    "cancel",
    "port",
    "have_all",
    "have_none",
    "reject",
    "allowed_fast",
    "suggest",
    "extended",
];

/// The torrent every flow of a run shares (what `--torrent-out` writes).
pub fn torrent_for(args: &SynthArgs) -> Result<Torrent, SynthError> {
    Torrent::generate(args.seed, 0, args.size.0, args.piece_length)
}

fn shared(args: &SynthArgs, torrent: Torrent) -> Result<session::Shared, SynthError> {
    if args.flows == 0 || args.flows > MAX_FLOWS {
        return Err(SynthError::InvalidArgs(format!(
            "--flows must be 1..={MAX_FLOWS}"
        )));
    }
    if args.mss == 0 {
        return Err(SynthError::InvalidArgs("--mss must be at least 1".into()));
    }
    if args.utp && args.overlap_conflict > 0 {
        // uTP retransmits whole packets by seq_nr; a copy straddling two packets has no
        // meaning there.
        return Err(SynthError::InvalidArgs(
            "--overlap-conflict needs TCP (uTP has packets, not byte ranges)".into(),
        ));
    }
    if args.poison.is_some() {
        let c = args;
        let impaired = c.reorder + c.duplicate + c.loss + c.conflict + c.overlap_conflict > 0;
        if impaired || c.midstream || c.hostile > 0 {
            // The truth is derived from every copy being delivered in the order sent.
            return Err(SynthError::InvalidArgs(
                "--poison takes no capture impairment, --midstream or --hostile".into(),
            ));
        }
    }
    if args.mse_plaintext > args.flows {
        return Err(SynthError::InvalidArgs(
            "--mse-plaintext must be at most --flows".into(),
        ));
    }
    Ok(session::Shared {
        torrent,
        link: packet::Link::new(args.vlan, args.qinq)?,
        mss: args.mss,
        unit: if args.one_byte {
            1
        } else {
            usize::from(args.mss)
        },
        midstream: args.midstream,
        ipv6: args.ipv6,
        magnet: args.magnet,
        hostile: args.hostile,
        poison: args.poison,
        flows: args.flows,
        counts: impair::Counts {
            reorder: args.reorder,
            duplicate: args.duplicate,
            loss: args.loss,
            conflict: args.conflict,
            overlap_conflict: args.overlap_conflict,
        },
        utp: args.utp,
        mse_plaintext: args.mse_plaintext,
    })
}

/// Generates the capture frame by frame into `sink` and returns its ground truth.
pub fn generate(
    args: &SynthArgs,
    sink: &mut dyn FnMut(Frame<'_>) -> Result<(), SynthError>,
) -> Result<Truth, SynthError> {
    generate_with(args, torrent_for(args)?, sink)
}

fn generate_with(
    args: &SynthArgs,
    torrent: Torrent,
    sink: &mut dyn FnMut(Frame<'_>) -> Result<(), SynthError>,
) -> Result<Truth, SynthError> {
    let sh = shared(args, torrent)?;
    let mut tally = tally::Tally::new(&sh.torrent);
    // Per-flow generators are seeded from one master stream, in flow order, so adding a flow
    // does not change the earlier ones; the interleaving draws from its own stream.
    let mut master = fastrand::Rng::with_seed(args.seed);
    let mut sessions = Vec::with_capacity(args.flows as usize);
    for flow in 0..args.flows {
        sessions.push(session::Session::new(flow, &sh, master.u64(..))?);
    }
    let mut mux = fastrand::Rng::with_seed(master.u64(..));
    let mut pump = Pump {
        sink,
        frame: Vec::with_capacity(usize::from(args.mss) + 128),
        scratch: Vec::with_capacity(usize::from(args.mss) + 20),
        tick: 0,
    };
    let poisoned = match args.poison {
        Some(p) => Some(poison::run(
            p,
            &sh,
            &mut master,
            &mut sessions,
            &mut tally,
            &mut pump,
        )?),
        None => {
            let mut active: Vec<usize> = (0..sessions.len()).collect();
            while !active.is_empty() {
                // Uniform choice among open sessions: each frame comes from a random
                // session, so flows interleave at frame granularity.
                let slot = mux.u64(0..active.len() as u64) as usize;
                let Some(&idx) = active.get(slot) else { break };
                let Some(s) = sessions.get_mut(idx) else {
                    break;
                };
                if !pump.one(s, &sh, &mut tally)? {
                    active.swap_remove(slot);
                }
            }
            None
        }
    };

    let t = &sh.torrent;
    let mut messages: BTreeMap<String, u64> =
        MESSAGE_TYPES.iter().map(|k| (k.to_string(), 0)).collect();
    for (k, v) in &tally.messages {
        *messages.entry(k.to_string()).or_default() += v;
    }
    Ok(Truth {
        seed: args.seed,
        flows: sessions.len() as u32,
        info_hash: t.info_hash.to_string(),
        piece_length: t.piece_length,
        total_length: t.total_length,
        pieces: t.num_pieces,
        piece_messages: tally.piece_messages,
        piece_bytes: tally.piece_bytes,
        request_messages: tally.request_messages,
        distinct_blocks: tally.distinct_blocks,
        messages,
        reassembly: tally.reassembly,
        streams: sessions.iter().map(|s| s.stream_truth()).collect(),
        utp: args.utp.then_some(tally.utp),
        poison: poisoned,
    })
}

/// Frames out of sessions into the sink, stamped from a frame counter.
struct Pump<'a> {
    sink: &'a mut dyn FnMut(Frame<'_>) -> Result<(), SynthError>,
    frame: Vec<u8>,
    scratch: Vec<u8>,
    tick: u64,
}

impl Pump<'_> {
    /// The next frame of `s` into the sink; false when `s` has none (closed, or directed and
    /// waiting for its next order).
    fn one(
        &mut self,
        s: &mut session::Session,
        sh: &session::Shared,
        tally: &mut tally::Tally,
    ) -> Result<bool, SynthError> {
        let Some(q) = s.next(sh, tally)? else {
            return Ok(false);
        };
        self.frame.clear();
        let ts_micros = START_MICROS + self.tick * STEP_MICROS;
        s.build(sh, &q, ts_micros, &mut self.scratch, &mut self.frame)?;
        (self.sink)(Frame {
            ts_micros,
            data: &self.frame,
        })?;
        self.tick += 1;
        Ok(true)
    }

    /// Every frame `s` has until it closes or waits for an order.
    fn drain(
        &mut self,
        s: &mut session::Session,
        sh: &session::Shared,
        tally: &mut tally::Tally,
    ) -> Result<(), SynthError> {
        while self.one(s, sh, tally)? {}
        Ok(())
    }
}

/// `peercache synth`: writes the pcap, plus `--torrent-out` and `--truth-out` if given.
pub fn run(args: &SynthArgs) -> Result<Truth, SynthError> {
    let torrent = torrent_for(args)?;
    // Validate everything before touching the output path.
    shared(args, torrent.clone())?;
    if let Some(path) = &args.torrent_out {
        std::fs::write(path, torrent.torrent_file()).map_err(|source| SynthError::Io {
            path: path.clone(),
            source,
        })?;
    }
    let mut out = pcapout::PcapOut::create(&args.output)?;
    let truth = match generate_with(args, torrent, &mut |f| out.write(&f)) {
        Ok(t) => t,
        Err(e) => {
            // A half-written capture would look valid to a reader; remove it (best effort,
            // the generation error is the one worth reporting).
            drop(out);
            let _ = std::fs::remove_file(&args.output);
            return Err(e);
        }
    };
    out.finish()?;
    if let Some(path) = &args.truth_out {
        let mut json = serde_json::to_vec_pretty(&truth).map_err(|source| SynthError::Json {
            path: path.clone(),
            source,
        })?;
        json.push(b'\n');
        std::fs::write(path, json).map_err(|source| SynthError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(truth)
}
