//! Compatibility shim over `crate::wire::tcpframe` for the splice (serve/mod.rs): the names
//! and signatures it has always used, delegating to the wire layer, where a TCP segment in
//! an Ethernet frame is read ([`wire::tcpframe::TcpFrame`]), rewritten in place
//! ([`wire::tcpframe::Rewrite`]) and built ([`wire::tcpframe::Template`]).
//!
//! The one thing kept here is [`TcpFrame`]: the offsets and fields of a frame without the
//! frame, which the splice stores (with a copy of the frame's headers) as the template for
//! the segments it injects. Every method that reads bytes turns it back into a checked
//! view first ([`wire::tcpframe::TcpFrame::with_layout`]), so a frame paired with the
//! wrong offsets reads as nothing rather than out of bounds.
//!
//! [`wire::tcpframe::TcpFrame`]: crate::wire::tcpframe::TcpFrame
//! [`wire::tcpframe::Rewrite`]: crate::wire::tcpframe::Rewrite
//! [`wire::tcpframe::Template`]: crate::wire::tcpframe::Template
//! [`wire::tcpframe::TcpFrame::with_layout`]: crate::wire::tcpframe::TcpFrame::with_layout

use std::net::IpAddr;

use crate::wire::seq::SeqNum;
use crate::wire::tcp::TcpFlags;
use crate::wire::tcpframe::{self, Layout, Template};

pub use crate::wire::tcp::SynOptions;

pub const FIN: u8 = TcpFlags::FIN.bits();
pub const SYN: u8 = TcpFlags::SYN.bits();
pub const RST: u8 = TcpFlags::RST.bits();
pub const PSH: u8 = TcpFlags::PSH.bits();
pub const ACK: u8 = TcpFlags::ACK.bits();

/// Offsets and fields of one TCP segment in a frame. Built only by [`TcpFrame::parse`].
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

impl TcpFrame {
    /// None: not an unfragmented TCP segment over IPv4/IPv6 in Ethernet (with or without
    /// VLAN tags), or truncated. Such frames are forwarded untouched.
    pub fn parse(frame: &[u8]) -> Option<TcpFrame> {
        let v = tcpframe::TcpFrame::new_checked(frame)?;
        let (at, tcp) = (v.layout(), v.tcp());
        Some(TcpFrame {
            l3: at.l3,
            l4: at.l4,
            data: at.data,
            end: at.end,
            v6: at.v6,
            src: v.src(),
            dst: v.dst(),
            sport: tcp.src_port(),
            dport: tcp.dst_port(),
            seq: tcp.seq(),
            ack: tcp.ack(),
            flags: tcp.flags().bits(),
            window: tcp.window(),
            vlan: v.vlan(),
        })
    }

    fn layout(&self) -> Layout {
        Layout {
            l3: self.l3,
            l4: self.l4,
            data: self.data,
            end: self.end,
            v6: self.v6,
        }
    }

    /// The checked view of `frame` at these offsets; None if they are not its own.
    fn view<'a>(&self, frame: &'a [u8]) -> Option<tcpframe::TcpFrame<'a>> {
        tcpframe::TcpFrame::with_layout(frame, self.layout(), self.vlan)
    }

    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        self.view(frame).map_or(&[], |v| v.payload())
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space the segment occupies (payload, plus one each for SYN and FIN).
    pub fn seq_len(&self) -> u32 {
        (self.end - self.data) as u32 + u32::from(self.has(SYN)) + u32::from(self.has(FIN))
    }

    pub fn syn_options(&self, frame: &[u8]) -> SynOptions {
        self.view(frame)
            .map(|v| v.syn_options())
            .unwrap_or_default()
    }

    /// (TSval, TSecr) when the segment carries timestamps.
    pub fn timestamps(&self, frame: &[u8]) -> Option<(u32, u32)> {
        self.view(frame)?.timestamps()
    }

    /// Whether the TCP checksum of the frame is right.
    pub fn checksum_ok(&self, frame: &[u8]) -> bool {
        self.view(frame).is_some_and(|v| v.checksum_ok())
    }
}

/// A segment being rewritten in place (see [`tcpframe::Rewrite`]). Offsets that are not
/// the frame's own leave it as it was.
pub struct Rewrite<'a> {
    inner: Option<tcpframe::Rewrite<'a>>,
    orig: &'a [u8],
}

impl<'a> Rewrite<'a> {
    pub fn new(frame: &'a [u8], t: TcpFrame) -> Rewrite<'a> {
        Rewrite {
            inner: t.view(frame).map(tcpframe::Rewrite::new),
            orig: frame,
        }
    }

    pub fn set_seq(&mut self, s: SeqNum) {
        if let Some(w) = &mut self.inner {
            w.set_seq(s)
        }
    }

    pub fn set_ack(&mut self, a: SeqNum) {
        if let Some(w) = &mut self.inner {
            w.set_ack(a)
        }
    }

    pub fn set_window(&mut self, win: u16) {
        if let Some(w) = &mut self.inner {
            w.set_window(win)
        }
    }

    /// Overwrite payload bytes at `off` (same length: no sequence number moves).
    pub fn set_payload(&mut self, off: usize, bytes: &[u8]) {
        if let Some(w) = &mut self.inner {
            w.set_payload(off, bytes)
        }
    }

    /// Map every SACK edge with `f`; a block that maps to nothing (inside bytes the box
    /// inserted) turns the whole option into NOPs, which is always allowed.
    pub fn map_sack(&mut self, f: impl FnMut(SeqNum) -> SeqNum) {
        if let Some(w) = &mut self.inner {
            w.map_sack(f)
        }
    }

    /// The rewritten frame, its checksum adjusted for what changed.
    pub fn finish(self) -> Vec<u8> {
        match self.inner {
            Some(w) => w.finish(),
            None => self.orig.to_vec(),
        }
    }
}

/// What a new segment of a connection carries (`flags` as the wire byte).
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
/// header fields) with new TCP fields and payload; see [`Template::build`]. `template` is
/// the first `t.l4` bytes (or more) of the frame `t` was parsed from; if it is not, the
/// result is empty.
pub fn build(template: &[u8], t: &TcpFrame, s: &SegmentSpec<'_>) -> Vec<u8> {
    let Some(tmpl) = Template::new_checked(template, t.layout(), t.sport, t.dport) else {
        return Vec::new();
    };
    tmpl.build(&tcpframe::SegmentSpec {
        seq: s.seq,
        ack: s.ack,
        flags: TcpFlags::from_bits(s.flags),
        window: s.window,
        ts: s.ts,
        payload: s.payload,
    })
}

/// Copy of `frame` carrying only payload bytes `range` (offsets into the payload) at
/// sequence number `seq`; see [`tcpframe::TcpFrame::slice_segment`]. Empty if `range` is
/// not within the payload.
pub fn slice_segment(
    frame: &[u8],
    t: &TcpFrame,
    range: std::ops::Range<usize>,
    seq: SeqNum,
) -> Vec<u8> {
    t.view(frame)
        .and_then(|v| v.slice_segment(range, seq))
        .unwrap_or_default()
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
        let v = tcpframe::TcpFrame::new_checked(&out).unwrap();
        assert_eq!(v.tcp().sack_blocks().count(), 0);
        assert!(v.tcp().options().all(|o| !matches!(
            o,
            crate::wire::tcp::TcpOption::Sack(_)
                | crate::wire::tcp::TcpOption::Unknown { kind: 5, .. }
        )));
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
