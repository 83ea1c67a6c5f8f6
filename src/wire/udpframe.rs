//! A UDP datagram in an Ethernet frame, as the bridge sees it, and the uTP splice's write
//! side: rewrite bytes of the datagram in place, and build new datagrams that look like a
//! flow's own. The UDP twin of `wire::tcpframe` (same [`Layout`], same walk through
//! Ethernet, VLAN tags and IP by etherparse).
//!
//! Checksums: UDP over IPv4 may carry none (zero); a rewrite keeps it that way. Otherwise
//! the rewrite adjusts it incrementally (RFC 1624), so a datagram that arrived with a wrong
//! checksum keeps a wrong one and its receiver drops it, as it would have. A computed
//! checksum of zero goes out as 0xffff (RFC 768). New datagrams get a full checksum.

use std::net::IpAddr;

use etherparse::{SlicedPacket, TransportSlice};

use super::checksum;
use super::ip;
use super::tcpframe::{ip_layer, offset_of, Layout};
use super::udp::{UdpRepr, HEADER_LEN};

/// Where the UDP checksum sits in the UDP header.
const CHECKSUM_AT: usize = 6;

/// An unfragmented UDP datagram over IPv4/IPv6 in an Ethernet frame (VLAN tags allowed).
#[derive(Clone, Copy, Debug)]
pub struct UdpFrame<'a> {
    buf: &'a [u8],
    at: Layout,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    vlan: Option<u16>,
}

impl<'a> UdpFrame<'a> {
    /// None: not such a frame, a fragment, or truncated. The bridge forwards those
    /// untouched.
    pub fn new_checked(frame: &'a [u8]) -> Option<UdpFrame<'a>> {
        let p = SlicedPacket::from_ethernet(frame).ok()?;
        let (l3, v6, vlan) = ip_layer(frame, &p)?;
        let TransportSlice::Udp(u) = p.transport.as_ref()? else {
            return None;
        };
        let l4 = offset_of(frame, u.slice());
        let end = l4.checked_add(u.slice().len())?;
        let at = Layout {
            l3,
            l4,
            data: l4 + HEADER_LEN,
            end,
            v6,
        };
        let head = frame.get(l4..at.data)?;
        if at.data > end || end > frame.len() || l3 >= l4 || !at.ip_ok(frame) {
            return None;
        }
        let (src, dst) = at.addrs(frame)?;
        Some(UdpFrame {
            buf: frame,
            at,
            src,
            dst,
            src_port: u16::from_be_bytes([head[0], head[1]]),
            dst_port: u16::from_be_bytes([head[2], head[3]]),
            vlan,
        })
    }

    pub fn src(&self) -> IpAddr {
        self.src
    }
    pub fn dst(&self) -> IpAddr {
        self.dst
    }
    pub fn src_port(&self) -> u16 {
        self.src_port
    }
    pub fn dst_port(&self) -> u16 {
        self.dst_port
    }
    /// The outermost VLAN id, if tagged.
    pub fn vlan(&self) -> Option<u16> {
        self.vlan
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.at.data..self.at.end]
    }

    /// Link and IP headers and ports, to build new datagrams of this flow from.
    pub fn template(&self) -> UdpTemplate {
        UdpTemplate {
            head: self.buf[..self.at.l4].to_vec(),
            at: self.at,
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
        }
    }
}

/// A datagram being rewritten in place; the original is kept to adjust the checksum.
#[derive(Debug)]
pub struct UdpRewrite<'a> {
    orig: UdpFrame<'a>,
    buf: Vec<u8>,
}

impl<'a> UdpRewrite<'a> {
    pub fn new(frame: UdpFrame<'a>) -> UdpRewrite<'a> {
        UdpRewrite {
            orig: frame,
            buf: frame.buf.to_vec(),
        }
    }

    /// Overwrite payload bytes from `off`; bytes past the payload's end are not written
    /// (the payload never changes length).
    pub fn set(&mut self, off: usize, bytes: &[u8]) {
        let Layout { data, end, .. } = self.orig.at;
        let start = data.saturating_add(off).min(end);
        let stop = start.saturating_add(bytes.len()).min(end);
        self.buf[start..stop].copy_from_slice(&bytes[..stop - start]);
    }

    /// The payload as it stands now (for reading back what was written).
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.orig.at.data..self.orig.at.end]
    }

    /// The rewritten frame, its checksum adjusted (or left at zero: none).
    pub fn finish(mut self) -> Vec<u8> {
        let Layout { l4, end, .. } = self.orig.at;
        let ck_at = l4 + CHECKSUM_AT;
        let old = [self.orig.buf[ck_at], self.orig.buf[ck_at + 1]];
        if old != [0, 0] {
            let mut ck = checksum::update(old, &self.orig.buf[l4..end], &self.buf[l4..end]);
            if ck == [0, 0] {
                ck = [0xff, 0xff];
            }
            self.buf[ck_at..ck_at + 2].copy_from_slice(&ck);
        }
        self.buf
    }
}

/// The link and IP headers of a flow's frame and its ports: what [`UdpTemplate::build`]
/// dresses a new datagram in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpTemplate {
    head: Vec<u8>,
    at: Layout,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
}

impl UdpTemplate {
    /// A datagram with the template's link header, addresses, ports and IP header fields,
    /// carrying `payload`; lengths and checksums computed. Empty if it would not fit.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let (l3, l4) = (self.at.l3, self.at.l4);
        let mut out = Vec::with_capacity(l4 + HEADER_LEN + payload.len());
        out.extend_from_slice(&self.head[..l4]);
        let repr = UdpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
        };
        if repr.emit(self.src, self.dst, payload, &mut out).is_none() {
            return Vec::new();
        }
        ip::fix_lengths(&mut out[l3..], self.at.v6);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    fn frame(payload: &[u8], v6: bool, vlan: Option<u16>) -> Vec<u8> {
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
        let b = b.udp(6881, 40000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        if let Some(id) = vlan {
            // an 802.1Q tag between the MAC addresses and the ethertype
            let tag = [0x81, 0x00, (id >> 8) as u8, id as u8];
            out.splice(12..12, tag);
        }
        out
    }

    /// The UDP checksum of a frame verifies (or is zero on IPv4: none).
    fn checksum_verifies(f: &[u8]) -> bool {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let TransportSlice::Udp(u) = p.transport.unwrap() else {
            panic!("not udp")
        };
        let h = u.to_header();
        let payload = u.payload();
        match p.net.unwrap() {
            NetSlice::Ipv4(ip) => {
                let ip = ip.header().to_header();
                h.checksum == 0
                    || h.checksum
                        == h.calc_checksum_ipv4_raw(ip.source, ip.destination, payload)
                            .unwrap()
            }
            NetSlice::Ipv6(ip) => {
                let ip = ip.header().to_header();
                h.checksum
                    == h.calc_checksum_ipv6_raw(ip.source, ip.destination, payload)
                        .unwrap()
            }
            _ => false,
        }
    }

    #[test]
    fn view_rewrite_and_build_on_every_kind_of_frame() {
        for v6 in [false, true] {
            for vlan in [None, Some(42)] {
                let f = frame(b"hello uTP payload", v6, vlan);
                let u = UdpFrame::new_checked(&f).unwrap();
                assert_eq!((u.src_port(), u.dst_port(), u.vlan()), (6881, 40000, vlan));
                assert_eq!(u.payload(), b"hello uTP payload");
                assert!(checksum_verifies(&f));
                let mut w = UdpRewrite::new(u);
                w.set(6, b"xyz");
                // past the end: clipped, never grows the datagram
                w.set(15, b"abcdef");
                assert_eq!(w.payload(), b"hello xyz payloab");
                let out = w.finish();
                assert_eq!(out.len(), f.len());
                assert!(checksum_verifies(&out), "v6 {v6} vlan {vlan:?}");
                let t = u.template().build(b"a new datagram, longer than the first");
                let n = UdpFrame::new_checked(&t).unwrap();
                assert_eq!(n.payload(), b"a new datagram, longer than the first");
                assert_eq!((n.src(), n.dst(), n.vlan()), (u.src(), u.dst(), vlan));
                assert!(checksum_verifies(&t));
            }
        }
    }

    #[test]
    fn zero_checksum_stays_zero() {
        let mut f = frame(b"no checksum", false, None);
        let ck_at = f.len() - b"no checksum".len() - 2;
        f[ck_at..ck_at + 2].copy_from_slice(&[0, 0]);
        let u = UdpFrame::new_checked(&f).unwrap();
        let mut w = UdpRewrite::new(u);
        w.set(0, b"NO");
        let out = w.finish();
        assert_eq!(&out[ck_at..ck_at + 2], &[0, 0]);
    }

    #[test]
    fn refuses_non_udp_and_truncated() {
        let f = frame(b"x", false, None);
        assert!(UdpFrame::new_checked(&f[..f.len() - 2]).is_none());
        assert!(UdpFrame::new_checked(&[0u8; 10]).is_none());
    }
}
