//! A TCP segment in an Ethernet frame, as the bridge sees it, and the splice's write side:
//! rewrite a frame in place (sequence numbers, acks, window, SACK edges, payload bytes),
//! cut a frame's payload into a smaller segment, and build new segments that look like a
//! connection's own.
//!
//! [`TcpFrame`] holds its buffer; [`TcpFrame::new_checked`] walks Ethernet, VLAN tags and
//! IP (etherparse: options, extension headers, length checks) and the TCP header
//! ([`TcpPacket`]), and records where each layer starts. [`Layout`] is that record on its
//! own, for a caller that keeps the offsets apart from the bytes: it only turns back into
//! a view through [`TcpFrame::with_layout`], which checks it again.
//!
//! Checksums: an in-place rewrite adjusts the TCP checksum incrementally (RFC 1624), so a
//! frame that arrived with a bad checksum still has a bad one after the rewrite (the
//! receiver drops it, as it would have). A new segment gets a full checksum; check its
//! source frame first ([`TcpFrame::checksum_ok`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::checksum;
use super::ip::{self, IPV4_HEADER_LEN, IPV6_HEADER_LEN};
use super::seq::SeqNum;
use super::tcp::{self, OptionBytes, SynOptions, TcpFlags, TcpPacket, TcpRepr};

/// Where the layers of a frame start. Valid for the frame it came from (and copies of its
/// first `l4` bytes, for [`Template`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Start of the IP header (after Ethernet and VLAN tags).
    pub l3: usize,
    /// Start of the TCP header.
    pub l4: usize,
    /// Start of the payload.
    pub data: usize,
    /// End of the IP datagram (Ethernet padding excluded).
    pub end: usize,
    pub v6: bool,
}

impl Layout {
    /// The IP header at `l3` is whole within `head` (the frame's first `l4` bytes or more).
    pub(super) fn ip_ok(&self, head: &[u8]) -> bool {
        let Some(h) = head.get(self.l3..self.l4) else {
            return false;
        };
        match (self.v6, h.first().map(|b| b >> 4)) {
            (true, Some(6)) => h.len() >= IPV6_HEADER_LEN,
            (false, Some(4)) => {
                let ihl = usize::from(h[0] & 0x0f) * 4;
                ihl >= IPV4_HEADER_LEN && ihl <= h.len()
            }
            _ => false,
        }
    }

    pub(super) fn addrs(&self, head: &[u8]) -> Option<(IpAddr, IpAddr)> {
        let h = head.get(self.l3..self.l4)?;
        if self.v6 {
            let s: [u8; 16] = h.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = h.get(24..40)?.try_into().ok()?;
            Some((Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into()))
        } else {
            let s: [u8; 4] = h.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = h.get(16..20)?.try_into().ok()?;
            Some((Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into()))
        }
    }
}

/// Where the IP header of an unfragmented IPv4/IPv6 packet starts in `frame`, whether it
/// is IPv6, and the outermost VLAN id (for QinQ the outer tag: the one the access network
/// assigns per line). Shared by the TCP and UDP frame views.
pub(super) fn ip_layer(frame: &[u8], p: &SlicedPacket) -> Option<(usize, bool, Option<u16>)> {
    let vlan = p.vlan_ids().first().map(|v| v.value());
    match p.net.as_ref()? {
        NetSlice::Ipv4(ip) if !ip.is_payload_fragmented() => {
            Some((offset_of(frame, ip.header().slice()), false, vlan))
        }
        NetSlice::Ipv6(ip) if !ip.is_payload_fragmented() => {
            Some((offset_of(frame, ip.header().slice()), true, vlan))
        }
        _ => None,
    }
}

pub(super) fn offset_of(base: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize)
}

/// An unfragmented TCP segment over IPv4/IPv6 in an Ethernet frame (VLAN tags allowed).
#[derive(Clone, Copy, Debug)]
pub struct TcpFrame<'a> {
    buf: &'a [u8],
    at: Layout,
    tcp: TcpPacket<'a>,
    src: IpAddr,
    dst: IpAddr,
    vlan: Option<u16>,
}

impl<'a> TcpFrame<'a> {
    /// None: not such a frame, or truncated. The bridge forwards those untouched.
    pub fn new_checked(frame: &'a [u8]) -> Option<TcpFrame<'a>> {
        let p = SlicedPacket::from_ethernet(frame).ok()?;
        let (l3, v6, vlan) = ip_layer(frame, &p)?;
        let TransportSlice::Tcp(t) = p.transport.as_ref()? else {
            return None;
        };
        let l4 = offset_of(frame, t.slice());
        let end = l4.checked_add(t.slice().len())?;
        let tcp = TcpPacket::new_checked(frame.get(l4..end)?)?;
        let at = Layout {
            l3,
            l4,
            data: l4 + tcp.header_len(),
            end,
            v6,
        };
        TcpFrame::with_layout(frame, at, vlan)
    }

    /// The view again from a layout `new_checked` found for this frame (or an identical
    /// copy): every offset is checked against `frame`, so a wrong pairing is None, never a
    /// panic later.
    pub fn with_layout(frame: &'a [u8], at: Layout, vlan: Option<u16>) -> Option<TcpFrame<'a>> {
        if at.l3 >= at.l4 || !at.ip_ok(frame) {
            return None;
        }
        let tcp = TcpPacket::new_checked(frame.get(at.l4..at.end)?)?;
        if at.l4 + tcp.header_len() != at.data {
            return None;
        }
        let (src, dst) = at.addrs(frame)?;
        Some(TcpFrame {
            buf: frame,
            at,
            tcp,
            src,
            dst,
            vlan,
        })
    }

    pub fn layout(&self) -> Layout {
        self.at
    }
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn tcp(&self) -> TcpPacket<'a> {
        self.tcp
    }
    pub fn src(&self) -> IpAddr {
        self.src
    }
    pub fn dst(&self) -> IpAddr {
        self.dst
    }
    /// The outermost VLAN id, if tagged (what policy rules match; part of a connection's
    /// identity, since VLANs may reuse addresses).
    pub fn vlan(&self) -> Option<u16> {
        self.vlan
    }
    pub fn payload(&self) -> &'a [u8] {
        self.tcp.payload()
    }
    pub fn syn_options(&self) -> SynOptions {
        self.tcp.syn_options()
    }
    pub fn timestamps(&self) -> Option<(u32, u32)> {
        self.tcp.timestamps()
    }
    /// Whether the TCP checksum is right.
    pub fn checksum_ok(&self) -> bool {
        self.tcp.checksum_ok(self.src, self.dst)
    }

    /// Link and IP headers and ports, to build new segments of this connection from.
    pub fn template(&self) -> Template<&'a [u8]> {
        Template {
            head: &self.buf[..self.at.l4],
            at: self.at,
            src: self.src,
            dst: self.dst,
            src_port: self.tcp.src_port(),
            dst_port: self.tcp.dst_port(),
        }
    }

    /// A copy carrying only payload bytes `range` at sequence number `seq`; FIN and PSH
    /// kept only on the part that ends the payload. Options kept as they were. None if
    /// `range` is not within the payload.
    pub fn slice_segment(&self, range: Range<usize>, seq: SeqNum) -> Option<Vec<u8>> {
        let payload = self.payload();
        let part = payload.get(range.clone())?;
        let last = range.end == payload.len();
        let (l3, l4) = (self.at.l3, self.at.l4);
        let mut out = Vec::with_capacity(self.at.data + part.len());
        out.extend_from_slice(&self.buf[..self.at.data]);
        out.extend_from_slice(part);
        out[l4 + tcp::SEQ_AT..l4 + tcp::SEQ_AT + 4].copy_from_slice(&seq.0.to_be_bytes());
        if !last {
            out[l4 + tcp::FLAGS_AT] &= !(TcpFlags::FIN | TcpFlags::PSH).bits();
        }
        ip::fix_lengths(&mut out[l3..], self.at.v6);
        let ck = checksum_of(self.src, self.dst, &out[l4..]);
        out[l4 + tcp::CHECKSUM_AT..l4 + tcp::CHECKSUM_AT + 2].copy_from_slice(&ck);
        Some(out)
    }
}

/// Full checksum of a segment whose checksum field may hold anything. Zero when the
/// addresses are of different families (a layout never pairs them so).
fn checksum_of(src: IpAddr, dst: IpAddr, seg: &[u8]) -> [u8; 2] {
    let (head, rest) = (&seg[..tcp::CHECKSUM_AT], &seg[tcp::CHECKSUM_AT + 2..]);
    checksum::pseudo_header(src, dst, checksum::PROTO_TCP, seg.len())
        .map(|s| s.add_bytes(head).add_bytes(&[0, 0]).add_bytes(rest).field())
        .unwrap_or([0, 0])
}

/// A segment being rewritten in place; the original is kept to adjust the checksum.
#[derive(Debug)]
pub struct Rewrite<'a> {
    orig: TcpFrame<'a>,
    buf: Vec<u8>,
}

impl<'a> Rewrite<'a> {
    pub fn new(frame: TcpFrame<'a>) -> Rewrite<'a> {
        Rewrite {
            orig: frame,
            buf: frame.buf.to_vec(),
        }
    }

    fn field(&mut self, at: usize, bytes: &[u8]) {
        let at = self.orig.at.l4 + at;
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    pub fn set_seq(&mut self, s: SeqNum) {
        self.field(tcp::SEQ_AT, &s.0.to_be_bytes());
    }

    pub fn set_ack(&mut self, a: SeqNum) {
        self.field(tcp::ACK_AT, &a.0.to_be_bytes());
    }

    pub fn set_window(&mut self, w: u16) {
        self.field(tcp::WINDOW_AT, &w.to_be_bytes());
    }

    /// Overwrite payload bytes at `off` (same length: no sequence number moves). Bytes that
    /// would run past the payload are not written at all.
    pub fn set_payload(&mut self, off: usize, bytes: &[u8]) {
        let Layout { data, end, .. } = self.orig.at;
        let Some(stop) = data
            .checked_add(off)
            .and_then(|a| a.checked_add(bytes.len()))
        else {
            return;
        };
        if stop <= end {
            self.buf[stop - bytes.len()..stop].copy_from_slice(bytes);
        }
    }

    /// Map every SACK edge with `f`; an option with a block that maps to nothing (inside
    /// bytes the box inserted: an empty or inverted block) becomes NOPs, always allowed.
    pub fn map_sack(&mut self, mut f: impl FnMut(SeqNum) -> SeqNum) {
        let Layout { l4, data, .. } = self.orig.at;
        let area = l4 + tcp::HEADER_LEN;
        // Walk the original's options (same bytes as ours: only SACK edges change here).
        let opts = tcp::raw_options(&self.orig.buf[area..data]);
        for (kind, start, edges) in opts {
            if !tcp::is_sack(kind) || edges.len() % 8 != 0 {
                continue;
            }
            let mapped: Vec<SeqNum> = edges
                .chunks_exact(4)
                .map(|e| f(SeqNum(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))))
                .collect();
            let keep = mapped.chunks_exact(2).all(|p| p[0] < p[1]);
            let at = area + start;
            if keep {
                for (k, e) in mapped.iter().enumerate() {
                    let o = at + 2 + 4 * k;
                    self.buf[o..o + 4].copy_from_slice(&e.0.to_be_bytes());
                }
            } else {
                self.buf[at..at + 2 + edges.len()].fill(tcp::NOP);
            }
        }
    }

    /// The rewritten frame, its checksum adjusted for what changed.
    pub fn finish(mut self) -> Vec<u8> {
        let Layout { l4, end, .. } = self.orig.at;
        let ck_at = l4 + tcp::CHECKSUM_AT;
        let old = [self.orig.buf[ck_at], self.orig.buf[ck_at + 1]];
        let ck = checksum::update(old, &self.orig.buf[l4..end], &self.buf[l4..end]);
        self.buf[ck_at..ck_at + 2].copy_from_slice(&ck);
        self.buf
    }
}

/// What a new segment of a connection carries.
#[derive(Clone, Copy, Debug)]
pub struct SegmentSpec<'p> {
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: TcpFlags,
    pub window: u16,
    /// (TSval, TSecr), when the connection uses timestamps.
    pub ts: Option<(u32, u32)>,
    pub payload: &'p [u8],
}

/// The link and IP headers of a connection's frame (its first `l4` bytes) and its ports:
/// what [`Template::build`] dresses a new segment in. Borrowed (`Template<&[u8]>`, from
/// [`TcpFrame::template`]) or owned (`Template<Vec<u8>>`, [`Template::to_owned`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template<B> {
    head: B,
    at: Layout,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
}

impl<B: AsRef<[u8]>> Template<B> {
    /// From a frame's first `layout.l4` bytes (or more) and the layout and ports
    /// [`TcpFrame`] found in it. None if the layout does not fit `head`.
    pub fn new_checked(head: B, at: Layout, src_port: u16, dst_port: u16) -> Option<Template<B>> {
        let h = head.as_ref();
        if at.l3 >= at.l4 || h.len() < at.l4 || !at.ip_ok(h) {
            return None;
        }
        let (src, dst) = at.addrs(h)?;
        Some(Template {
            head,
            at,
            src,
            dst,
            src_port,
            dst_port,
        })
    }

    pub fn to_owned(&self) -> Template<Vec<u8>> {
        Template {
            head: self.head.as_ref()[..self.at.l4].to_vec(),
            at: self.at,
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
        }
    }

    /// A segment with the template's link header, addresses, ports and IP header fields,
    /// and the spec's TCP fields and payload; lengths and checksums computed. The
    /// template's own TCP options are not copied: only timestamps, when given. Empty if the
    /// segment would not fit an IP packet.
    pub fn build(&self, s: &SegmentSpec<'_>) -> Vec<u8> {
        let (l3, l4) = (self.at.l3, self.at.l4);
        let options = match s.ts {
            Some((val, ecr)) => OptionBytes::new().timestamps(val, ecr),
            None => OptionBytes::new(),
        };
        let repr = TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq: s.seq,
            ack: s.ack,
            flags: s.flags,
            window: s.window,
            options,
        };
        let mut out = Vec::with_capacity(l4 + repr.header_len() + s.payload.len());
        out.extend_from_slice(&self.head.as_ref()[..l4]);
        if repr.emit(self.src, self.dst, s.payload, &mut out).is_none() {
            return Vec::new();
        }
        ip::fix_lengths(&mut out[l3..], self.at.v6);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// A VLAN-tagged (id 42) frame with timestamps and one SACK block.
    fn frame(payload: &[u8], v6: bool) -> Vec<u8> {
        frame_on(payload, v6, Some(42))
    }

    /// Every kind of frame the tests below go over: IPv4 and IPv6, tagged and untagged.
    fn frames(payload: &[u8]) -> Vec<(Vec<u8>, bool)> {
        [
            (false, None),
            (true, None),
            (false, Some(42)),
            (true, Some(42)),
        ]
        .into_iter()
        .map(|(v6, vlan)| (frame_on(payload, v6, vlan), v6))
        .collect()
    }

    /// A frame with timestamps and one SACK block, on VLAN `vlan` if any.
    fn frame_on(payload: &[u8], v6: bool, vlan: Option<u16>) -> Vec<u8> {
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
        if let Some(id) = vlan {
            // an 802.1Q tag after the MAC addresses
            let tag = [0x81, 0x00, (id >> 8) as u8 & 0x0f, id as u8];
            out.splice(12..12, tag);
        }
        out
    }

    #[test]
    fn view_and_layout() {
        for v6 in [false, true] {
            let f = frame(b"hello", v6);
            let t = TcpFrame::new_checked(&f).unwrap();
            assert_eq!(t.vlan(), Some(42));
            assert_eq!(t.payload(), b"hello");
            assert!(t.checksum_ok());
            let at = t.layout();
            assert_eq!((at.l3, at.v6), (18, v6));
            assert!(TcpFrame::with_layout(&f, at, None).is_some());
            // a layout that does not fit the frame is refused, not trusted
            assert!(TcpFrame::with_layout(&f[..at.end - 1], at, None).is_none());
            let shifted = Layout {
                l3: at.l3 + 1,
                ..at
            };
            assert!(TcpFrame::with_layout(&f, shifted, None).is_none());
            let wrong_data = Layout {
                data: at.data - 4,
                ..at
            };
            assert!(TcpFrame::with_layout(&f, wrong_data, None).is_none());
            assert!(Template::new_checked(&f[..at.l4 - 1], at, 1, 2).is_none());
            // Ethernet padding after the datagram is not payload
            let mut padded = f.clone();
            padded.extend_from_slice(&[0; 6]);
            assert_eq!(TcpFrame::new_checked(&padded).unwrap().payload(), b"hello");
        }
    }

    #[test]
    fn fragments_and_garbage_refused() {
        let f = frame(b"hello", false);
        let mut frag = f.clone();
        frag[18 + 6] |= 0x20; // more fragments
        assert!(TcpFrame::new_checked(&frag).is_none());
        for n in 0..f.len() {
            let _ = TcpFrame::new_checked(&f[..n]);
        }
        assert!(TcpFrame::new_checked(&[]).is_none());
    }

    #[test]
    fn slice_out_of_range_is_none() {
        let f = frame(b"0123456789", false);
        let t = TcpFrame::new_checked(&f).unwrap();
        assert!(t.slice_segment(3..11, SeqNum(0)).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let r = 5..3;
        assert!(t.slice_segment(r, SeqNum(0)).is_none());
        let s = t.slice_segment(0..10, SeqNum(9)).unwrap();
        assert_eq!(TcpFrame::new_checked(&s).unwrap().payload(), b"0123456789");
    }

    #[test]
    fn set_payload_never_writes_past_the_payload() {
        let f = frame(b"abc", false);
        let t = TcpFrame::new_checked(&f).unwrap();
        let mut r = Rewrite::new(t);
        r.set_payload(2, b"XY");
        r.set_payload(usize::MAX, b"Z");
        r.set_payload(1, b"Q");
        let out = r.finish();
        let t2 = TcpFrame::new_checked(&out).unwrap();
        assert_eq!(t2.payload(), b"aQc");
        assert!(t2.checksum_ok());
    }

    #[test]
    fn fields_checksum_and_timestamps() {
        for (f, v6) in frames(b"hello world") {
            let t = TcpFrame::new_checked(&f).unwrap();
            assert_eq!(t.payload(), b"hello world");
            let tcp = t.tcp();
            assert_eq!(
                (tcp.src_port(), tcp.dst_port(), tcp.seq(), tcp.ack()),
                (50000, 6881, SeqNum(1000), SeqNum(77))
            );
            assert_eq!((tcp.window(), tcp.flags()), (512, TcpFlags::ACK));
            assert!(t.checksum_ok(), "v6={v6}");
            assert_eq!(t.timestamps(), Some((5, 6)));
        }
    }

    #[test]
    fn rewrite_keeps_checksums_right_and_wrong() {
        for (f, v6) in frames(b"hello world, odd") {
            let t = TcpFrame::new_checked(&f).unwrap();
            let mut r = Rewrite::new(t);
            r.set_seq(SeqNum(123456));
            r.set_ack(SeqNum(99));
            r.set_window(7);
            r.set_payload(3, b"XYZ");
            r.map_sack(|s| s + 1000);
            let out = r.finish();
            let t2 = TcpFrame::new_checked(&out).unwrap();
            assert!(t2.checksum_ok(), "v6={v6}");
            assert_eq!(t2.payload(), b"helXYZworld, odd");
            let tcp = t2.tcp();
            assert_eq!(
                (tcp.seq(), tcp.ack(), tcp.window()),
                (SeqNum(123456), SeqNum(99), 7)
            );
            assert_eq!(
                tcp.sack_blocks().collect::<Vec<_>>(),
                vec![(SeqNum(1100), SeqNum(1200))]
            );
            assert_eq!(t2.timestamps(), Some((5, 6)));
            // a frame that arrived corrupted stays corrupted
            let mut bad = f.clone();
            let n = bad.len();
            bad[n - 1] ^= 0x40;
            let mut r = Rewrite::new(TcpFrame::new_checked(&bad).unwrap());
            r.set_seq(SeqNum(5));
            let out = r.finish();
            assert!(!TcpFrame::new_checked(&out).unwrap().checksum_ok());
        }
    }

    #[test]
    fn sack_inside_insert_becomes_nops() {
        for (f, _) in frames(b"x") {
            let mut r = Rewrite::new(TcpFrame::new_checked(&f).unwrap());
            r.map_sack(|_| SeqNum(5));
            let out = r.finish();
            let t2 = TcpFrame::new_checked(&out).unwrap();
            assert!(t2.checksum_ok());
            assert_eq!(t2.timestamps(), Some((5, 6)));
            assert_eq!(t2.tcp().sack_blocks().count(), 0);
            assert!(t2.tcp().options().all(|o| !matches!(
                o,
                tcp::TcpOption::Sack(_) | tcp::TcpOption::Unknown { kind: 5, .. }
            )));
        }
    }

    #[test]
    fn build_and_slice() {
        for (f, v6) in frames(b"0123456789") {
            let t = TcpFrame::new_checked(&f).unwrap();
            let spec = SegmentSpec {
                seq: SeqNum(42),
                ack: SeqNum(43),
                flags: TcpFlags::ACK | TcpFlags::PSH,
                window: 100,
                ts: Some((1, 2)),
                payload: b"injected",
            };
            // borrowed and owned templates build the same segment
            let b = t.template().build(&spec);
            assert_eq!(t.template().to_owned().build(&spec), b);
            let tb = TcpFrame::new_checked(&b).unwrap();
            assert!(tb.checksum_ok(), "v6={v6}");
            assert_eq!(tb.payload(), b"injected");
            assert_eq!(tb.timestamps(), Some((1, 2)));
            assert_eq!(
                (tb.src(), tb.dst(), tb.vlan()),
                (t.src(), t.dst(), t.vlan())
            );
            let tcp = tb.tcp();
            assert_eq!(
                (tcp.src_port(), tcp.dst_port(), tcp.seq(), tcp.ack()),
                (50000, 6881, SeqNum(42), SeqNum(43))
            );
            assert_eq!((tcp.flags(), tcp.window()), (spec.flags, 100));
            let s = t.slice_segment(3..7, SeqNum(1003)).unwrap();
            let ts = TcpFrame::new_checked(&s).unwrap();
            assert!(ts.checksum_ok());
            assert_eq!(ts.payload(), b"3456");
            assert_eq!(ts.tcp().seq(), SeqNum(1003));
        }
    }
}
