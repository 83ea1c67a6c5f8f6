//! Ethernet II with 802.1Q / 802.1ad (Q-in-Q) tags: emit. Reading stays with etherparse
//! (`wire::link`, `wire::tcpframe`).

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q customer tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// 802.1ad service tag (the outer tag of Q-in-Q).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// VLAN ids are 12 bits; 4095 is reserved but carried.
pub const MAX_VLAN_ID: u16 = 0x0fff;

/// Source and destination MACs and up to two tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src: [u8; 6],
    pub dst: [u8; 6],
    /// 802.1Q tag (the inner one under Q-in-Q).
    pub vlan: Option<u16>,
    /// 802.1ad outer tag; only emitted together with `vlan`.
    pub qinq: Option<u16>,
}

impl EthernetRepr {
    /// Header length: 14, plus 4 a tag.
    pub fn header_len(&self) -> usize {
        14 + self.tags().len() * 4
    }

    /// (tag protocol id, vlan id), outermost first.
    fn tags(&self) -> &'static [u16] {
        match (self.qinq, self.vlan) {
            (Some(_), Some(_)) => &[ETHERTYPE_QINQ, ETHERTYPE_VLAN],
            (_, Some(_)) => &[ETHERTYPE_VLAN],
            _ => &[],
        }
    }

    /// Append the header for a payload of `ethertype`. Priority and drop-eligible bits are
    /// zero; ids are masked to 12 bits.
    pub fn emit(&self, ethertype: u16, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.src);
        let ids = [self.qinq.or(self.vlan), self.vlan];
        let ids = &ids[2 - self.tags().len()..];
        for (tpid, id) in self.tags().iter().zip(ids) {
            let id = id.unwrap_or(0);
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&(id & MAX_VLAN_ID).to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::{IpRepr, Ipv4Repr};
    use etherparse::{LinkSlice, SlicedPacket};
    use std::net::Ipv4Addr;

    #[test]
    fn tags_read_back() {
        for (vlan, qinq, ids) in [
            (None, None, vec![]),
            (Some(10), None, vec![10]),
            (Some(10), Some(20), vec![20, 10]),
        ] {
            let e = EthernetRepr {
                src: [2, 0, 0, 0, 0, 1],
                dst: [2, 0, 0, 0, 0, 2],
                vlan,
                qinq,
            };
            let mut f = Vec::new();
            e.emit(ETHERTYPE_IPV4, &mut f);
            assert_eq!(f.len(), e.header_len());
            assert_eq!(&f[f.len() - 2..], &ETHERTYPE_IPV4.to_be_bytes());
            IpRepr::V4(Ipv4Repr {
                src: Ipv4Addr::LOCALHOST,
                dst: Ipv4Addr::LOCALHOST,
                ident: 0,
                dont_fragment: false,
                ttl: 1,
                protocol: 253,
            })
            .emit(0, &mut f)
            .unwrap();
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let got: Vec<u16> = p.vlan_ids().iter().map(|v| v.value()).collect();
            assert_eq!(got, ids);
            assert!(matches!(p.link, Some(LinkSlice::Ethernet2(_))));
        }
    }
}
