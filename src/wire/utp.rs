//! BEP 29 uTP header: a checked view, and `UtpRepr` to emit one. A UDP payload is only a uTP candidate here; whether a
//! flow is uTP is decided by the engine from both directions (connection ids that pair up,
//! a SYN answered by a STATE), because 20 random bytes pass these checks now and then.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UtpType {
    Data,
    Fin,
    State,
    Reset,
    Syn,
}

impl UtpType {
    /// From the high nibble of the first header byte.
    pub fn from_wire(t: u8) -> Option<UtpType> {
        Some(match t {
            0 => UtpType::Data,
            1 => UtpType::Fin,
            2 => UtpType::State,
            3 => UtpType::Reset,
            4 => UtpType::Syn,
            _ => return None,
        })
    }

    pub fn to_wire(self) -> u8 {
        match self {
            UtpType::Data => 0,
            UtpType::Fin => 1,
            UtpType::State => 2,
            UtpType::Reset => 3,
            UtpType::Syn => 4,
        }
    }
}

pub const HEADER_LEN: usize = 20;
/// Byte offsets of the header fields a splice rewrites.
pub const WND_AT: usize = 12;
pub const SEQ_AT: usize = 16;
pub const ACK_AT: usize = 18;
/// The only version there is.
pub const VERSION: u8 = 1;
/// libtorrent sends at most a few extensions (selective ack, extension bits).
const MAX_EXTENSIONS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtpPacket<'a> {
    pub kind: UtpType,
    pub conn_id: u16,
    /// The sender's clock (microseconds) when it sent the packet.
    pub timestamp: u32,
    /// The sender's latest one-way delay measurement of the other direction.
    pub ts_diff: u32,
    pub wnd: u32,
    pub seq: u16,
    pub ack: u16,
    /// Selective-ack bitmask, when present.
    pub sack: Option<&'a [u8]>,
    /// Where the selective-ack bitmask starts in the packet (0 without one), for a
    /// rewrite that maps it in place.
    pub sack_at: usize,
    /// Where the payload starts (the header and its extensions before it).
    pub payload_at: usize,
    pub payload: &'a [u8],
}

impl<'a> UtpPacket<'a> {
    /// Parse and check: version 1, a known type, a well-formed extension chain, and no
    /// payload on packets that never carry one.
    pub fn new_checked(b: &'a [u8]) -> Option<UtpPacket<'a>> {
        let h = b.get(..HEADER_LEN)?;
        if h[0] & 0x0f != VERSION {
            return None;
        }
        let kind = UtpType::from_wire(h[0] >> 4)?;
        let be16 = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let mut ext = h[1];
        let mut at = HEADER_LEN;
        let mut sack = None;
        let mut sack_at = 0;
        let mut n = 0;
        while ext != 0 {
            n += 1;
            if n > MAX_EXTENSIONS || ext > 4 {
                return None;
            }
            let next = *b.get(at)?;
            let len = *b.get(at + 1)? as usize;
            let body = b.get(at + 2..at + 2 + len)?;
            if ext == 1 {
                // BEP 29 says a multiple of 4 bytes, but libtorrent sends 2-byte masks too;
                // an empty one is malformed.
                if len == 0 {
                    return None;
                }
                sack = Some(body);
                sack_at = at + 2;
            }
            ext = next;
            at += 2 + len;
        }
        let payload = &b[at..];
        if !payload.is_empty() && matches!(kind, UtpType::State | UtpType::Syn | UtpType::Reset) {
            return None;
        }
        Some(UtpPacket {
            kind,
            conn_id: be16(2),
            timestamp: be32(4),
            ts_diff: be32(8),
            wnd: be32(12),
            seq: be16(16),
            ack: be16(18),
            sack,
            sack_at,
            payload_at: at,
            payload,
        })
    }
}

/// A header without extensions, to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtpRepr {
    pub kind: UtpType,
    pub conn_id: u16,
    /// Microseconds, the sender's clock.
    pub timestamp: u32,
    /// The sender's last measured one-way delay.
    pub ts_diff: u32,
    pub wnd: u32,
    pub seq: u16,
    pub ack: u16,
}

impl UtpRepr {
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.kind.to_wire() << 4 | VERSION;
        h[1] = 0; // first extension: none
        h[2..4].copy_from_slice(&self.conn_id.to_be_bytes());
        h[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&self.ts_diff.to_be_bytes());
        h[12..16].copy_from_slice(&self.wnd.to_be_bytes());
        h[16..18].copy_from_slice(&self.seq.to_be_bytes());
        h[18..20].copy_from_slice(&self.ack.to_be_bytes());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(kind: u8, ext: u8, conn: u16, seq: u16, ack: u16) -> Vec<u8> {
        let mut v = vec![kind << 4 | 1, ext];
        v.extend_from_slice(&conn.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ack.to_be_bytes());
        v
    }

    #[test]
    fn emit_reads_back() {
        for kind in [
            UtpType::Data,
            UtpType::Fin,
            UtpType::State,
            UtpType::Reset,
            UtpType::Syn,
        ] {
            let h = UtpRepr {
                kind,
                conn_id: 0xbeef,
                timestamp: 1,
                ts_diff: 2,
                wnd: 1 << 20,
                seq: 7,
                ack: 6,
            }
            .emit();
            let p = UtpPacket::new_checked(&h).unwrap();
            assert_eq!(
                (p.kind, p.conn_id, p.wnd, p.seq, p.ack, p.sack, p.payload),
                (kind, 0xbeef, 1 << 20, 7, 6, None, &[][..])
            );
            assert_eq!((p.timestamp, p.ts_diff, p.payload_at), (1, 2, HEADER_LEN));
            assert_eq!(UtpType::from_wire(kind.to_wire()), Some(kind));
        }
        assert_eq!(UtpType::from_wire(5), None);
    }

    #[test]
    fn parses_and_refuses() {
        let mut d = hdr(0, 0, 7, 100, 5);
        d.extend_from_slice(b"\x13BitTorrent protocol");
        let p = UtpPacket::new_checked(&d).unwrap();
        assert_eq!(
            (p.kind, p.conn_id, p.seq, p.ack, p.payload.len()),
            (UtpType::Data, 7, 100, 5, 20)
        );
        let mut s = hdr(2, 1, 7, 1, 2);
        s.extend_from_slice(&[0, 4, 0xff, 0, 0, 0]);
        let p = UtpPacket::new_checked(&s).unwrap();
        assert_eq!(p.sack, Some(&[0xff, 0, 0, 0][..]));
        assert_eq!((p.sack_at, p.payload_at), (22, 26));
        // DHT is bencoded: 'd' is type 6, version 4.
        assert!(UtpPacket::new_checked(
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
        )
        .is_none());
        // STATE with payload, broken extension chain, version 2.
        let mut bad = hdr(2, 0, 1, 1, 1);
        bad.push(0);
        assert!(UtpPacket::new_checked(&bad).is_none());
        assert!(UtpPacket::new_checked(&hdr(0, 1, 1, 1, 1)).is_none());
        // libtorrent's 2-byte selective ack after loss.
        let mut s2 = hdr(2, 1, 7, 1, 2);
        s2.extend_from_slice(&[0, 2, 0x01, 0]);
        assert_eq!(UtpPacket::new_checked(&s2).unwrap().sack, Some(&[1, 0][..]));
        let mut v2 = hdr(0, 0, 1, 1, 1);
        v2[0] = 0x02;
        assert!(UtpPacket::new_checked(&v2).is_none());
    }
}
