//! Link, network and transport layer decoding on top of etherparse. The result is a typed,
//! borrowed view of one frame: who talks to whom, and the TCP/UDP payload. TCP headers are
//! read by `wire::tcp` (the same view the splice uses).

use std::net::IpAddr;

use etherparse::{
    err::packet::SliceError, EtherType, IpNumber, LinkSlice, NetSlice, SlicedPacket,
    TransportSlice, UdpSlice,
};

use super::tcp::TcpPacket;
pub use super::tcp::{TcpFlags, TcpSegment};

/// Link types we can decode, mapped from the pcap DLT/LINKTYPE value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    /// Raw IPv4 or IPv6, version taken from the first nibble.
    RawIp,
    /// BSD loopback: 4-byte address family, host (Null) or network (Loop) order.
    Null,
}

impl LinkType {
    /// From the value libpcap reports (`pcap_datalink`). libpcap maps the file's LINKTYPE to
    /// DLT, which differs for raw IP (LINKTYPE_RAW 101 is DLT_RAW 12 or 14).
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        Some(match dlt {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            0 | 108 => LinkType::Null,
            _ => return None,
        })
    }
}

/// Why a frame could not be used. The `as_str` names are the keys of `decode_errors` in the
/// replay report, so they are part of the stable schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DecodeError {
    Truncated,
    Link,
    NotIp,
    Ipv4,
    Ipv6,
    IpExtension,
    Tcp,
    Udp,
    Fragment,
    FragmentOverflow,
}

impl DecodeError {
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::Link => "link",
            DecodeError::NotIp => "not_ip",
            DecodeError::Ipv4 => "ipv4",
            DecodeError::Ipv6 => "ipv6",
            DecodeError::IpExtension => "ip_extension",
            DecodeError::Tcp => "tcp",
            DecodeError::Udp => "udp",
            DecodeError::Fragment => "fragment",
            DecodeError::FragmentOverflow => "fragment_overflow",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
pub enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
    /// Another IP protocol: counted, not followed.
    Other(u8),
}

/// One IP datagram's worth of a decoded frame.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport<'a>,
}

/// A fragment of an IP datagram, to be reassembled before the transport can be read.
#[derive(Clone, Copy, Debug)]
pub struct Fragment<'a> {
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ident: u32,
    pub protocol: u8,
    /// Byte offset of this fragment's data in the datagram's payload.
    pub offset: u32,
    pub more: bool,
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
pub enum Decoded<'a> {
    Packet(Packet<'a>),
    Fragment(Fragment<'a>),
    /// A well-formed frame without IP (ARP, LLDP, ...): nothing for us.
    NonIp,
}

/// Decode one captured frame. `orig_len` is the length on the wire; a frame captured short of
/// it is refused as truncated rather than parsed half-way.
pub fn decode(link: LinkType, frame: &[u8], orig_len: u32) -> Result<Decoded<'_>, DecodeError> {
    if (frame.len() as u64) < orig_len as u64 {
        return Err(DecodeError::Truncated);
    }
    let sliced = match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(frame),
        LinkType::LinuxSll => SlicedPacket::from_linux_sll(frame),
        LinkType::LinuxSll2 => {
            // SLL2 (20 bytes): protocol type first, then interface, ARPHRD, packet type,
            // address length and 8 address bytes. etherparse knows only SLL v1.
            let hdr = frame.get(..20).ok_or(DecodeError::Link)?;
            let ether_type = EtherType(u16::from_be_bytes([hdr[0], hdr[1]]));
            SlicedPacket::from_ether_type(ether_type, &frame[20..])
        }
        LinkType::RawIp => SlicedPacket::from_ip(frame),
        LinkType::Null => {
            let rest = frame.get(4..).ok_or(DecodeError::Link)?;
            SlicedPacket::from_ip(rest)
        }
    };
    let sliced = sliced.map_err(slice_error)?;
    packet_from_sliced(&sliced)
}

fn slice_error(e: SliceError) -> DecodeError {
    match e {
        SliceError::Len(l) => match l.layer {
            etherparse::err::Layer::TcpHeader => DecodeError::Tcp,
            etherparse::err::Layer::UdpHeader | etherparse::err::Layer::UdpPayload => {
                DecodeError::Udp
            }
            etherparse::err::Layer::Ipv4Header | etherparse::err::Layer::Ipv4Packet => {
                DecodeError::Ipv4
            }
            etherparse::err::Layer::Ipv6Header | etherparse::err::Layer::Ipv6Packet => {
                DecodeError::Ipv6
            }
            _ => DecodeError::Link,
        },
        SliceError::LinuxSll(_) | SliceError::Macsec(_) => DecodeError::Link,
        SliceError::Ip(_) => DecodeError::NotIp,
        SliceError::Ipv4(_) => DecodeError::Ipv4,
        SliceError::Ipv6(_) => DecodeError::Ipv6,
        SliceError::Ipv4Exts(_) | SliceError::Ipv6Exts(_) => DecodeError::IpExtension,
        SliceError::Tcp(_) => DecodeError::Tcp,
    }
}

fn outer_vlan(sliced: &SlicedPacket<'_>) -> Option<u16> {
    // For QinQ we key on the outer tag: it is the one the access network assigns per
    // subscriber line. etherparse lists link extensions outermost first.
    sliced.vlan_ids().first().map(|v| v.value())
}

fn packet_from_sliced<'a>(sliced: &SlicedPacket<'a>) -> Result<Decoded<'a>, DecodeError> {
    let vlan = outer_vlan(sliced);
    if matches!(sliced.link, Some(LinkSlice::LinuxSll(_)))
        && sliced.net.is_none()
        && sliced.transport.is_none()
    {
        return Ok(Decoded::NonIp);
    }
    let (src, dst, payload) = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let src = IpAddr::V4(h.source_addr());
            let dst = IpAddr::V4(h.destination_addr());
            let p = v4.payload();
            if p.fragmented {
                return Ok(Decoded::Fragment(Fragment {
                    vlan,
                    src,
                    dst,
                    ident: h.identification() as u32,
                    protocol: p.ip_number.0,
                    offset: h.fragments_offset().byte_offset() as u32,
                    more: h.more_fragments(),
                    data: p.payload,
                }));
            }
            (src, dst, p)
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let src = IpAddr::V6(h.source_addr());
            let dst = IpAddr::V6(h.destination_addr());
            let p = v6.payload();
            if p.fragmented {
                let frag = v6.extensions().clone().into_iter().find_map(|e| match e {
                    etherparse::Ipv6ExtensionSlice::Fragment(f) => Some(f.to_header()),
                    _ => None,
                });
                let frag = frag.ok_or(DecodeError::IpExtension)?;
                return Ok(Decoded::Fragment(Fragment {
                    vlan,
                    src,
                    dst,
                    ident: frag.identification,
                    protocol: p.ip_number.0,
                    offset: frag.fragment_offset.byte_offset() as u32,
                    more: frag.more_fragments,
                    data: p.payload,
                }));
            }
            (src, dst, p)
        }
        Some(NetSlice::Arp(_)) | None => return Ok(Decoded::NonIp),
    };
    let transport = match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => Transport::Tcp(tcp_segment(t.slice())?),
        Some(TransportSlice::Udp(u)) => Transport::Udp(UdpDatagram {
            src_port: u.source_port(),
            dst_port: u.destination_port(),
            payload: u.payload(),
        }),
        _ => Transport::Other(payload.ip_number.0),
    };
    Ok(Decoded::Packet(Packet {
        vlan,
        src,
        dst,
        transport,
    }))
}

/// etherparse has already sliced the header when it hands `t` over; the view's checks are
/// the same ones (20 bytes, data offset 5 or more, header present), so this never refuses
/// what etherparse accepted.
fn tcp_segment(t: &[u8]) -> Result<TcpSegment<'_>, DecodeError> {
    TcpPacket::new_checked(t)
        .map(|p| p.segment())
        .ok_or(DecodeError::Tcp)
}

/// Read the transport header of a reassembled IP datagram payload.
pub fn transport_from_payload(protocol: u8, data: &[u8]) -> Result<Transport<'_>, DecodeError> {
    match IpNumber(protocol) {
        IpNumber::TCP => tcp_segment(data).map(Transport::Tcp),
        IpNumber::UDP => UdpSlice::from_slice(data)
            .map(|u| {
                Transport::Udp(UdpDatagram {
                    src_port: u.source_port(),
                    dst_port: u.destination_port(),
                    payload: u.payload(),
                })
            })
            .map_err(|_| DecodeError::Udp),
        _ => Ok(Transport::Other(protocol)),
    }
}
