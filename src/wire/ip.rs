//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers: emit, and the length/checksum fix-up of a
//! header whose datagram was cut or grown. Reading IP stays with etherparse (`wire::link`,
//! `wire::tcpframe`), which handles options and extension chains.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum::Sum;

pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;

/// An IPv4 header without options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ident: u16,
    pub dont_fragment: bool,
    pub ttl: u8,
    pub protocol: u8,
}

/// An IPv6 header without extension headers (traffic class and flow label zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpRepr {
    V4(Ipv4Repr),
    V6(Ipv6Repr),
}

impl IpRepr {
    pub fn src(&self) -> IpAddr {
        match self {
            IpRepr::V4(h) => h.src.into(),
            IpRepr::V6(h) => h.src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match self {
            IpRepr::V4(h) => h.dst.into(),
            IpRepr::V6(h) => h.dst.into(),
        }
    }

    /// The Ethernet type that announces this header.
    pub fn ethertype(&self) -> u16 {
        match self {
            IpRepr::V4(_) => super::ether::ETHERTYPE_IPV4,
            IpRepr::V6(_) => super::ether::ETHERTYPE_IPV6,
        }
    }

    /// Append the header for `payload_len` bytes after it. None (nothing written) when the
    /// length does not fit the header's length field.
    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) -> Option<()> {
        match self {
            IpRepr::V4(h) => {
                let total = u16::try_from(IPV4_HEADER_LEN + payload_len).ok()?;
                let start = out.len();
                out.extend_from_slice(&[0x45, 0]);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&h.ident.to_be_bytes());
                out.extend_from_slice(&[if h.dont_fragment { 0x40 } else { 0 }, 0]);
                out.extend_from_slice(&[h.ttl, h.protocol, 0, 0]);
                out.extend_from_slice(&h.src.octets());
                out.extend_from_slice(&h.dst.octets());
                let ck = Sum::new().add_bytes(&out[start..]).field();
                out[start + 10..start + 12].copy_from_slice(&ck);
            }
            IpRepr::V6(h) => {
                let plen = u16::try_from(payload_len).ok()?;
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&plen.to_be_bytes());
                out.extend_from_slice(&[h.next_header, h.hop_limit]);
                out.extend_from_slice(&h.src.octets());
                out.extend_from_slice(&h.dst.octets());
            }
        }
        Some(())
    }
}

/// Set the length field of the IP header at the start of `datagram` to the datagram's
/// length (IPv6: payload length, extension headers included) and, for IPv4, recompute the
/// header checksum. `v6` says which header it is; a header shorter than its fixed part (or
/// than its IHL) is left as it is. Lengths over 65535 saturate.
pub fn fix_lengths(datagram: &mut [u8], v6: bool) {
    let total = datagram.len();
    if v6 {
        let plen = total
            .saturating_sub(IPV6_HEADER_LEN)
            .min(usize::from(u16::MAX)) as u16;
        if let Some(f) = datagram.get_mut(4..6) {
            f.copy_from_slice(&plen.to_be_bytes());
        }
        return;
    }
    let Some(&vihl) = datagram.first() else {
        return;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < IPV4_HEADER_LEN || ihl > total {
        return;
    }
    let total = total.min(usize::from(u16::MAX)) as u16;
    datagram[2..4].copy_from_slice(&total.to_be_bytes());
    datagram[10..12].copy_from_slice(&[0, 0]);
    let ck = Sum::new().add_bytes(&datagram[..ihl]).field();
    datagram[10..12].copy_from_slice(&ck);
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};

    #[test]
    fn v4_emits_what_etherparse_reads() {
        let mut out = Vec::new();
        IpRepr::V4(Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 19, 1, 1),
            ident: 0x1234,
            dont_fragment: true,
            ttl: 64,
            protocol: 6,
        })
        .emit(100, &mut out)
        .unwrap();
        let h = Ipv4HeaderSlice::from_slice(&out).unwrap();
        assert_eq!(h.total_len(), 120);
        assert!(h.dont_fragment() && !h.more_fragments());
        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        assert!(IpRepr::V4(Ipv4Repr {
            src: Ipv4Addr::LOCALHOST,
            dst: Ipv4Addr::LOCALHOST,
            ident: 0,
            dont_fragment: false,
            ttl: 1,
            protocol: 17
        })
        .emit(65535, &mut Vec::new())
        .is_none());
    }

    #[test]
    fn v6_and_fix_lengths() {
        let mut out = Vec::new();
        IpRepr::V6(Ipv6Repr {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
            next_header: 17,
            hop_limit: 64,
        })
        .emit(8, &mut out)
        .unwrap();
        out.extend_from_slice(&[0; 30]);
        fix_lengths(&mut out, true);
        assert_eq!(
            Ipv6HeaderSlice::from_slice(&out).unwrap().payload_length(),
            30
        );
        let mut v4 = Vec::new();
        IpRepr::V4(Ipv4Repr {
            src: Ipv4Addr::LOCALHOST,
            dst: Ipv4Addr::LOCALHOST,
            ident: 9,
            dont_fragment: false,
            ttl: 1,
            protocol: 6,
        })
        .emit(0, &mut v4)
        .unwrap();
        v4.extend_from_slice(&[0; 7]);
        fix_lengths(&mut v4, false);
        let h = Ipv4HeaderSlice::from_slice(&v4).unwrap();
        assert_eq!(h.total_len(), 27);
        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        // too short to be a header: untouched
        let mut short = vec![0x45, 0, 0];
        fix_lengths(&mut short, false);
        assert_eq!(short, [0x45, 0, 0]);
    }
}
