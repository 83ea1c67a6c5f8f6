//! UDP (RFC 768): emit. Reading stays with etherparse (`wire::link`), whose length checks
//! (IPv6 jumbograms included) the replay reports depend on.

use std::net::IpAddr;

use super::checksum;

pub const HEADER_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    /// Append header and payload, checksummed for `src` -> `dst`. A computed checksum of
    /// zero is sent as 0xffff (RFC 768: zero means "none"). None (nothing written) when the
    /// datagram does not fit the length field or the families differ.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let len = u16::try_from(HEADER_LEN + payload.len()).ok()?;
        let pseudo = checksum::pseudo_header(src, dst, checksum::PROTO_UDP, usize::from(len))?;
        let start = out.len();
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(payload);
        let mut ck = pseudo.add_bytes(&out[start..]).field();
        if ck == [0, 0] {
            ck = [0xff, 0xff];
        }
        out[start + 6..start + 8].copy_from_slice(&ck);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::UdpHeaderSlice;
    use std::net::Ipv4Addr;

    #[test]
    fn checksum_matches_etherparse() {
        let (s, d) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 19, 1, 1));
        for payload in [&b""[..], b"x", b"hello uTP"] {
            let mut out = Vec::new();
            UdpRepr {
                src_port: 40000,
                dst_port: 6881,
            }
            .emit(s.into(), d.into(), payload, &mut out)
            .unwrap();
            let h = UdpHeaderSlice::from_slice(&out).unwrap().to_header();
            assert_eq!(usize::from(h.length), 8 + payload.len());
            assert_eq!(
                h.checksum,
                h.calc_checksum_ipv4_raw(s.octets(), d.octets(), payload)
                    .unwrap()
            );
        }
    }
}
