//! A TCP segment in an Ethernet frame, as the bridge sees it: a checked view that knows where
//! the IP header, the TCP header and the payload start, so that the splice can rewrite
//! sequence numbers, acks, windows, SACK edges and payload bytes in place, and build new
//! segments (splits and injected data) from a frame of the same connection.
//!
//! Checksums: an in-place rewrite adjusts the TCP checksum incrementally (RFC 1624), so a
//! frame that arrived with a bad checksum still has a bad one after the rewrite (the receiver
//! drops it, as it would have). A new segment gets a full checksum; its source frame is
//! checked first (see `checksum_ok`).

use std::net::IpAddr;

use etherparse::checksum::u64_16bit_word::{add_slice, ones_complement};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::wire::seq::SeqNum;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK: u8 = 5;
const OPT_TS: u8 = 8;

/// Offsets and fields of one TCP segment in a frame. Built only by [`TcpFrame::parse`], which
/// checked every offset against the frame, so the accessors below cannot go out of bounds.
#[derive(Clone, Copy, Debug)]
pub struct TcpFrame {
    /// Start of the IP header (after Ethernet and VLAN tags).
    pub l3: usize,
    /// Start of the TCP header.
    pub l4: usize,
    /// Start of the payload.
    pub data: usize,
    /// End of the IP datagram (Ethernet padding excluded).
    pub end: usize,
    pub v6: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: u8,
    pub window: u16,
    /// The outermost VLAN id, if tagged (what policy rules match; part of the connection's
    /// identity, since VLANs may reuse addresses).
    pub vlan: Option<u16>,
}

/// Options a SYN announces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub timestamps: bool,
}

fn offset_of(base: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize)
}

impl TcpFrame {
    /// None: not an unfragmented TCP segment over IPv4/IPv6 in Ethernet (with or without
    /// VLAN tags), or truncated. Such frames are forwarded untouched.
    pub fn parse(frame: &[u8]) -> Option<TcpFrame> {
        let p = SlicedPacket::from_ethernet(frame).ok()?;
        let vlan = p.vlan_ids().first().map(|v| v.value());
        let (l3, v6, src, dst) = match p.net.as_ref()? {
            NetSlice::Ipv4(ip) => {
                if ip.is_payload_fragmented() {
                    return None;
                }
                let h = ip.header();
                (
                    offset_of(frame, h.slice()),
                    false,
                    IpAddr::from(h.source()),
                    IpAddr::from(h.destination()),
                )
            }
            NetSlice::Ipv6(ip) => {
                if ip.is_payload_fragmented() {
                    return None;
                }
                let h = ip.header();
                (
                    offset_of(frame, h.slice()),
                    true,
                    IpAddr::from(h.source()),
                    IpAddr::from(h.destination()),
                )
            }
            NetSlice::Arp(_) => return None,
        };
        let TransportSlice::Tcp(t) = p.transport.as_ref()? else {
            return None;
        };
        let l4 = offset_of(frame, t.slice());
        let data = l4 + t.header_slice().len();
        let end = l4 + t.slice().len();
        if l3 >= l4 || data > end || end > frame.len() {
            return None;
        }
        let mut flags = 0;
        for (on, bit) in [
            (t.fin(), FIN),
            (t.syn(), SYN),
            (t.rst(), RST),
            (t.psh(), PSH),
            (t.ack(), ACK),
        ] {
            if on {
                flags |= bit;
            }
        }
        Some(TcpFrame {
            l3,
            l4,
            data,
            end,
            v6,
            src,
            dst,
            sport: t.source_port(),
            dport: t.destination_port(),
            seq: SeqNum(t.sequence_number()),
            ack: SeqNum(t.acknowledgment_number()),
            flags,
            window: t.window_size(),
            vlan,
        })
    }

    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        &frame[self.data..self.end]
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space the segment occupies (payload, plus one each for SYN and FIN).
    pub fn seq_len(&self) -> u32 {
        (self.end - self.data) as u32 + u32::from(self.has(SYN)) + u32::from(self.has(FIN))
    }

    fn options<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        &frame[self.l4 + 20..self.data]
    }

    pub fn syn_options(&self, frame: &[u8]) -> SynOptions {
        let mut o = SynOptions::default();
        for (kind, body) in options(self.options(frame)) {
            match (kind, body.len()) {
                (OPT_MSS, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                (OPT_WSCALE, 1) => o.wscale = Some(body[0].min(14)),
                (OPT_TS, 8) => o.timestamps = true,
                _ => {}
            }
        }
        o
    }

    /// (TSval, TSecr) when the segment carries timestamps.
    pub fn timestamps(&self, frame: &[u8]) -> Option<(u32, u32)> {
        options(self.options(frame)).find_map(|(kind, b)| {
            (kind == OPT_TS && b.len() == 8).then(|| {
                (
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                )
            })
        })
    }

    /// Whether the TCP checksum of the frame is right.
    pub fn checksum_ok(&self, frame: &[u8]) -> bool {
        pseudo_sum(self.src, self.dst, self.end - self.l4, 0)
            .map(|s| ones_complement(add_slice(s, &frame[self.l4..self.end])) == 0)
            .unwrap_or(false)
    }
}

/// (kind, body) of every well-formed option; stops at END or at a malformed length.
fn options(mut o: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || loop {
        let (&kind, rest) = o.split_first()?;
        match kind {
            OPT_END => return None,
            OPT_NOP => o = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > o.len() {
                    return None;
                }
                let body = &o[2..len];
                o = &o[len..];
                return Some((kind, body));
            }
        }
    })
}

/// A segment being rewritten in place: the original is kept to adjust the checksum.
pub struct Rewrite<'a> {
    orig: &'a [u8],
    pub buf: Vec<u8>,
    pub t: TcpFrame,
}

impl<'a> Rewrite<'a> {
    pub fn new(frame: &'a [u8], t: TcpFrame) -> Rewrite<'a> {
        Rewrite {
            orig: frame,
            buf: frame.to_vec(),
            t,
        }
    }

    pub fn set_seq(&mut self, s: SeqNum) {
        self.buf[self.t.l4 + 4..self.t.l4 + 8].copy_from_slice(&s.0.to_be_bytes());
    }

    pub fn set_ack(&mut self, a: SeqNum) {
        self.buf[self.t.l4 + 8..self.t.l4 + 12].copy_from_slice(&a.0.to_be_bytes());
    }

    pub fn set_window(&mut self, w: u16) {
        self.buf[self.t.l4 + 14..self.t.l4 + 16].copy_from_slice(&w.to_be_bytes());
    }

    /// Overwrite payload bytes at `off` (same length: no sequence number moves).
    pub fn set_payload(&mut self, off: usize, bytes: &[u8]) {
        let at = self.t.data + off;
        if let Some(dst) = self.buf.get_mut(at..at + bytes.len()) {
            if at + bytes.len() <= self.t.end {
                dst.copy_from_slice(bytes);
            }
        }
    }

    /// Map every SACK edge with `f`; a block that maps to nothing (inside bytes the box
    /// inserted) turns the whole option into NOPs, which is always allowed.
    pub fn map_sack(&mut self, mut f: impl FnMut(SeqNum) -> SeqNum) {
        let (start, end) = (self.t.l4 + 20, self.t.data);
        let mut i = start;
        while i < end {
            let kind = self.buf[i];
            if kind == OPT_END {
                break;
            }
            if kind == OPT_NOP {
                i += 1;
                continue;
            }
            let Some(&len) = self.buf.get(i + 1) else {
                break;
            };
            let len = usize::from(len);
            if len < 2 || i + len > end {
                break;
            }
            if kind == OPT_SACK && (len - 2) % 8 == 0 {
                let mut keep = true;
                let mut edges = Vec::with_capacity((len - 2) / 4);
                for e in self.buf[i + 2..i + len].chunks_exact(4) {
                    edges.push(f(SeqNum(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))));
                }
                for pair in edges.chunks_exact(2) {
                    if pair[0] >= pair[1] {
                        keep = false;
                    }
                }
                if keep {
                    for (k, e) in edges.iter().enumerate() {
                        let at = i + 2 + 4 * k;
                        self.buf[at..at + 4].copy_from_slice(&e.0.to_be_bytes());
                    }
                } else {
                    self.buf[i..i + len].fill(OPT_NOP);
                }
            }
            i += len;
        }
    }

    /// The rewritten frame, its checksum adjusted for what changed.
    pub fn finish(mut self) -> Vec<u8> {
        let (l4, end) = (self.t.l4, self.t.end);
        // etherparse sums in native byte order: checksum values stay in that order here.
        let old_ck = u16::from_ne_bytes([self.orig[l4 + 16], self.orig[l4 + 17]]);
        // Both sums include the old checksum field, which cancels out.
        let old = fold(add_slice(0, &self.orig[l4..end]));
        let new = fold(add_slice(0, &self.buf[l4..end]));
        let ck = ones_complement(u64::from(!old_ck) + u64::from(!old) + u64::from(new));
        self.buf[l4 + 16..l4 + 18].copy_from_slice(&ck.to_ne_bytes());
        self.buf
    }
}

fn fold(s: u64) -> u16 {
    !ones_complement(s)
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, tcp_len: usize, start: u64) -> Option<u64> {
    let len = u32::try_from(tcp_len).ok()?;
    Some(match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let s = add_slice(start, &s.octets());
            let s = add_slice(s, &d.octets());
            add_slice(s, &[0, 6, (len >> 8) as u8, len as u8])
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let s = add_slice(start, &s.octets());
            let s = add_slice(s, &d.octets());
            let s = add_slice(s, &len.to_be_bytes());
            add_slice(s, &[0, 0, 0, 6])
        }
        _ => return None,
    })
}

/// What a new segment of a connection carries.
pub struct SegmentSpec<'p> {
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: u8,
    pub window: u16,
    /// (TSval, TSecr), when the connection uses timestamps.
    pub ts: Option<(u32, u32)>,
    pub payload: &'p [u8],
}

/// Build a segment that looks like `template` (same link header, addresses, ports, IP
/// header fields) with new TCP fields and payload; lengths and checksums computed. The
/// template's own TCP options are not copied: only timestamps, when given.
pub fn build(template: &[u8], t: &TcpFrame, s: &SegmentSpec<'_>) -> Vec<u8> {
    let opt_len = if s.ts.is_some() { 12 } else { 0 };
    let tcp_len = 20 + opt_len + s.payload.len();
    let mut out = Vec::with_capacity(t.l4 + tcp_len);
    out.extend_from_slice(&template[..t.l4]);
    // TCP header
    out.extend_from_slice(&t.sport.to_be_bytes());
    out.extend_from_slice(&t.dport.to_be_bytes());
    out.extend_from_slice(&s.seq.0.to_be_bytes());
    out.extend_from_slice(&s.ack.0.to_be_bytes());
    out.push(((20 + opt_len) as u8 / 4) << 4);
    out.push(s.flags);
    out.extend_from_slice(&s.window.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    if let Some((val, ecr)) = s.ts {
        out.extend_from_slice(&[OPT_NOP, OPT_NOP, OPT_TS, 10]);
        out.extend_from_slice(&val.to_be_bytes());
        out.extend_from_slice(&ecr.to_be_bytes());
    }
    out.extend_from_slice(s.payload);
    fix_ip_lengths(&mut out, t);
    let ck = pseudo_sum(t.src, t.dst, tcp_len, 0)
        .map(|sum| ones_complement(add_slice(sum, &out[t.l4..])))
        .unwrap_or(0);
    out[t.l4 + 16..t.l4 + 18].copy_from_slice(&ck.to_ne_bytes());
    out
}

/// Copy of `frame` carrying only payload bytes `range` (offsets into the payload) at
/// sequence number `seq`; FIN kept only on the part that ends the payload, PSH likewise.
/// TCP options are kept as they were.
pub fn slice_segment(
    frame: &[u8],
    t: &TcpFrame,
    range: std::ops::Range<usize>,
    seq: SeqNum,
) -> Vec<u8> {
    let payload_len = t.end - t.data;
    let last = range.end == payload_len;
    let mut out = Vec::with_capacity(t.data + range.len());
    out.extend_from_slice(&frame[..t.data]);
    out.extend_from_slice(&frame[t.data + range.start..t.data + range.end]);
    out[t.l4 + 4..t.l4 + 8].copy_from_slice(&seq.0.to_be_bytes());
    if !last {
        out[t.l4 + 13] &= !(FIN | PSH);
    }
    out[t.l4 + 16..t.l4 + 18].copy_from_slice(&[0, 0]);
    fix_ip_lengths(&mut out, t);
    let ck = pseudo_sum(t.src, t.dst, out.len() - t.l4, 0)
        .map(|sum| ones_complement(add_slice(sum, &out[t.l4..])))
        .unwrap_or(0);
    out[t.l4 + 16..t.l4 + 18].copy_from_slice(&ck.to_ne_bytes());
    out
}

/// IP total/payload length (and the IPv4 header checksum) for a datagram that ends at the
/// end of `out`.
fn fix_ip_lengths(out: &mut [u8], t: &TcpFrame) {
    let total = out.len() - t.l3;
    if t.v6 {
        let plen = (total.saturating_sub(40)) as u16;
        out[t.l3 + 4..t.l3 + 6].copy_from_slice(&plen.to_be_bytes());
    } else {
        out[t.l3 + 2..t.l3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
        out[t.l3 + 10..t.l3 + 12].copy_from_slice(&[0, 0]);
        let ihl = usize::from(out[t.l3] & 0x0f) * 4;
        let ck = ones_complement(add_slice(0, &out[t.l3..t.l3 + ihl]));
        out[t.l3 + 10..t.l3 + 12].copy_from_slice(&ck.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn frame(payload: &[u8], v6: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6]);
        let b = if v6 {
            b.ipv6(
                [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
        } else {
            b.ipv4([198, 18, 0, 2], [198, 19, 0, 2], 64)
        };
        let b = b
            .tcp(50000, 6881, 1000, 512)
            .ack(77)
            .options(&[
                etherparse::TcpOptionElement::Timestamp(5, 6),
                etherparse::TcpOptionElement::SelectiveAcknowledgement(
                    (100, 200),
                    [None, None, None],
                ),
            ])
            .unwrap();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn parse_and_checksum() {
        for v6 in [false, true] {
            let f = frame(b"hello world", v6);
            let t = TcpFrame::parse(&f).unwrap();
            assert_eq!(t.payload(&f), b"hello world");
            assert_eq!(
                (t.sport, t.dport, t.seq, t.ack),
                (50000, 6881, SeqNum(1000), SeqNum(77))
            );
            assert!(t.checksum_ok(&f));
            assert_eq!(t.timestamps(&f), Some((5, 6)));
        }
    }

    #[test]
    fn rewrite_keeps_checksums_right_and_wrong() {
        for v6 in [false, true] {
            let f = frame(b"hello world, odd", v6);
            let t = TcpFrame::parse(&f).unwrap();
            let mut r = Rewrite::new(&f, t);
            r.set_seq(SeqNum(123456));
            r.set_ack(SeqNum(99));
            r.set_window(7);
            r.set_payload(3, b"XYZ");
            r.map_sack(|s| s + 1000);
            let out = r.finish();
            let t2 = TcpFrame::parse(&out).unwrap();
            assert!(t2.checksum_ok(&out), "v6={v6}");
            assert_eq!(t2.payload(&out), b"helXYZworld, odd");
            assert_eq!((t2.seq, t2.ack, t2.window), (SeqNum(123456), SeqNum(99), 7));
            // a frame that arrived corrupted stays corrupted
            let mut bad = f.clone();
            let n = bad.len();
            bad[n - 1] ^= 0x40;
            let mut r = Rewrite::new(&bad, t);
            r.set_seq(SeqNum(5));
            let out = r.finish();
            assert!(!TcpFrame::parse(&out).unwrap().checksum_ok(&out));
        }
    }

    #[test]
    fn sack_inside_insert_becomes_nops() {
        let f = frame(b"x", false);
        let t = TcpFrame::parse(&f).unwrap();
        let mut r = Rewrite::new(&f, t);
        r.map_sack(|_| SeqNum(5));
        let out = r.finish();
        let t2 = TcpFrame::parse(&out).unwrap();
        assert!(t2.checksum_ok(&out));
        assert_eq!(t2.timestamps(&out), Some((5, 6)));
        assert!(options(t2.options(&out)).all(|(k, _)| k != OPT_SACK));
    }

    #[test]
    fn build_and_slice() {
        for v6 in [false, true] {
            let f = frame(b"0123456789", v6);
            let t = TcpFrame::parse(&f).unwrap();
            let spec = SegmentSpec {
                seq: SeqNum(42),
                ack: SeqNum(43),
                flags: ACK | PSH,
                window: 100,
                ts: Some((1, 2)),
                payload: b"injected",
            };
            let b = build(&f, &t, &spec);
            let tb = TcpFrame::parse(&b).unwrap();
            assert!(tb.checksum_ok(&b));
            assert_eq!(tb.payload(&b), b"injected");
            assert_eq!(tb.timestamps(&b), Some((1, 2)));
            let s = slice_segment(&f, &t, 3..7, SeqNum(1003));
            let ts = TcpFrame::parse(&s).unwrap();
            assert!(ts.checksum_ok(&s));
            assert_eq!(ts.payload(&s), b"3456");
            assert_eq!(ts.seq, SeqNum(1003));
        }
    }
}
