//! Deciding that a UDP flow is uTP: one plausible header is not enough.

use crate::flow::Dir;
use crate::wire::peerwire;
use crate::wire::utp::{UtpPacket, UtpType};

/// Evidence gathered before calling a UDP flow uTP: a single plausible header is not
/// enough (DNS ids pass the header checks one time in fifty).
#[derive(Default)]
pub(super) struct UtpProbe {
    /// uTP-looking packets seen.
    pub(super) packets: u8,
    ids: [Option<u16>; 2],
    /// (sender, connection id, seq_nr) of a SYN.
    pub(super) syn: Option<(Dir, u16, u16)>,
    /// Per direction: (connection id, last seq_nr, run length) of packets that agree.
    runs: [Option<(u16, u16, u8)>; 2],
    pub(super) held: Vec<(Dir, Vec<u8>)>,
}

/// uTP-looking datagrams examined before a flow is given up as not uTP.
pub(super) const UTP_PROBE_PACKETS: u8 = 8;

impl UtpProbe {
    /// Record one datagram; Some(initiator) once the flow is shown to be uTP.
    pub(super) fn observe(&mut self, dir: Dir, payload: &[u8]) -> Option<Dir> {
        let p = UtpPacket::new_checked(payload)?;
        self.packets = self.packets.saturating_add(1);
        if self.held.len() < UTP_PROBE_PACKETS as usize {
            self.held.push((dir, payload.to_vec()));
        }
        if p.kind == UtpType::Syn {
            self.syn = Some((dir, p.conn_id, p.seq));
        }
        // A SYN answered by a STATE with the SYN's id, acking its seq_nr.
        if let Some((sd, id, seq)) = self.syn {
            if p.kind == UtpType::State && dir != sd && p.conn_id == id && p.ack == seq {
                return Some(sd);
            }
        }
        // Mid-stream: the initiator sends with id + 1, the responder with id.
        self.ids[dir.idx()] = Some(p.conn_id);
        if let (Some(a), Some(b), None) = (self.ids[dir.idx()], self.ids[dir.rev().idx()], self.syn)
        {
            if a == b.wrapping_add(1) {
                return Some(dir);
            }
            if b == a.wrapping_add(1) {
                return Some(dir.rev());
            }
        }
        // One direction only (a tap may see just one): a run of packets with one
        // connection id and nearby sequence numbers is not an accident.
        let run = &mut self.runs[dir.idx()];
        *run = match *run {
            Some((id, last, n))
                if id == p.conn_id && p.seq.wrapping_sub(last).wrapping_add(8) <= 24 =>
            {
                Some((id, p.seq, n + 1))
            }
            _ => Some((p.conn_id, p.seq, 1)),
        };
        if matches!(run, Some((_, _, n)) if *n >= 3) && self.syn.is_none() {
            // Which side opened the connection is unknown: both streams are mid-stream.
            return Some(dir);
        }
        // A plaintext BitTorrent handshake as the first payload.
        if p.kind == UtpType::Data && p.payload.starts_with(&peerwire::PROTOCOL[..]) {
            return Some(dir);
        }
        None
    }
}
