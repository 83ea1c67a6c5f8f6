//! Ethernet / [802.1Q | 802.1ad+802.1Q] / IPv4|IPv6 / TCP or UDP+uTP frames with correct
//! checksums: what each frame of a session is (addresses, TCP and uTP fields), put on the
//! wire by the wire layer's emitters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::VlanId;

use super::SynthError;
use crate::wire::checksum::{PROTO_TCP, PROTO_UDP};
use crate::wire::ether::EthernetRepr;
use crate::wire::ip::{IpRepr, Ipv4Repr, Ipv6Repr};
use crate::wire::seq::SeqNum;
use crate::wire::tcp::{OptionBytes, TcpFlags, TcpRepr};
use crate::wire::udp::UdpRepr;
use crate::wire::utp::{UtpRepr, UtpType};

/// Receive window both ends advertise (Linux's initial window for a 1460-byte MSS). No window
/// scaling is negotiated, so this is the real window; a leecher never has more than one
/// 16 KiB block plus the pipeline of requests in flight, far below it.
pub const WINDOW: u16 = 64240;
const TTL: u8 = 64;

/// Link-layer encapsulation shared by all frames of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Link {
    pub vlan: Option<VlanId>,
    pub qinq: Option<VlanId>,
}

impl Link {
    pub fn new(vlan: Option<u16>, qinq: Option<u16>) -> Result<Self, SynthError> {
        let id = |v: u16, flag: &str| {
            VlanId::try_new(v).map_err(|e| SynthError::InvalidArgs(format!("{flag} {v}: {e}")))
        };
        let vlan = vlan.map(|v| id(v, "--vlan")).transpose()?;
        let qinq = qinq.map(|v| id(v, "--qinq")).transpose()?;
        if qinq.is_some() && vlan.is_none() {
            // The outer 802.1ad tag wraps the customer tag; without one there is nothing to
            // wrap and the result would not be Q-in-Q.
            return Err(SynthError::InvalidArgs(
                "--qinq needs --vlan (the inner tag)".into(),
            ));
        }
        Ok(Link { vlan, qinq })
    }
}

/// Addresses of one session.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub leecher: SocketAddr,
    pub seeder: SocketAddr,
    pub leecher_mac: [u8; 6],
    /// The MAC the leecher sees for the remote side: its default gateway.
    pub gateway_mac: [u8; 6],
}

pub const SEEDER_PORT: u16 = 6881;
pub const LEECHER_BASE_PORT: u16 = 40000;
/// Leecher ports are 40000 + flow and must stay below 65536.
pub const MAX_FLOWS: u32 = (u16::MAX - LEECHER_BASE_PORT) as u32 + 1;
/// Seeders are spread over this many hosts (several leechers share a seeder, as in a swarm).
const SEEDER_HOSTS: u32 = 200;
/// Hostile peers of `--poison` (at most this many) are hosts of their own, 198.19.66.x or
/// 2001:2:0:66::x, port [`SEEDER_PORT`]; every leecher connects to each of them from port
/// 39999 - k (its port 40000 + flow goes to its honest seeder).
pub const MAX_HOSTILE_PEERS: u8 = 2;
const HOSTILE_NET: u8 = 66;

impl Endpoints {
    /// Subscriber side from 198.18.0.0/16, remote side from 198.19.0.0/16 (RFC 2544
    /// benchmarking range); IPv6 from 2001:2::/48 (RFC 5180).
    pub fn for_flow(flow: u32, ipv6: bool) -> Result<Self, SynthError> {
        if flow >= MAX_FLOWS {
            return Err(SynthError::InvalidArgs(format!(
                "at most {MAX_FLOWS} flows (leecher ports 40000 + flow)"
            )));
        }
        let host = flow + 1; // .0.0 is the network address
        let seeder_host = 1 + flow % SEEDER_HOSTS; // 198.19.0.1 is the tracker; use .1.x
        let (leecher_ip, seeder_ip): (IpAddr, IpAddr) = if ipv6 {
            (
                Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, host as u16).into(),
                Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, seeder_host as u16).into(),
            )
        } else {
            (
                Ipv4Addr::new(198, 18, (host >> 8) as u8, host as u8).into(),
                Ipv4Addr::new(198, 19, 1, seeder_host as u8).into(),
            )
        };
        let f = flow.to_be_bytes();
        Ok(Endpoints {
            leecher: SocketAddr::new(leecher_ip, LEECHER_BASE_PORT + flow as u16),
            seeder: SocketAddr::new(seeder_ip, SEEDER_PORT),
            // Locally administered unicast MACs ("LE" leecher, "GW" gateway).
            leecher_mac: [0x02, b'L', b'E', f[1], f[2], f[3]],
            gateway_mac: [0x02, b'G', b'W', 0, 0, 1],
        })
    }

    /// The connection of flow `flow`'s leecher to hostile peer `k` (0-based, below
    /// [`MAX_HOSTILE_PEERS`]): the same leecher host, another port, a peer of its own.
    pub fn hostile(flow: u32, k: u8, ipv6: bool) -> Result<Self, SynthError> {
        if k >= MAX_HOSTILE_PEERS {
            return Err(SynthError::InvalidArgs(format!(
                "at most {MAX_HOSTILE_PEERS} hostile peers"
            )));
        }
        let mut ep = Self::for_flow(flow, ipv6)?;
        let ip: IpAddr = if ipv6 {
            Ipv6Addr::new(
                0x2001,
                2,
                0,
                u16::from(HOSTILE_NET),
                0,
                0,
                0,
                u16::from(k) + 1,
            )
            .into()
        } else {
            Ipv4Addr::new(198, 19, HOSTILE_NET, k + 1).into()
        };
        ep.leecher.set_port(LEECHER_BASE_PORT - 1 - u16::from(k));
        ep.seeder = SocketAddr::new(ip, SEEDER_PORT);
        Ok(ep)
    }
}

/// TCP-level description of one frame.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub from_leecher: bool,
    pub seq: u32,
    /// None only on the initial SYN.
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub psh: bool,
    /// IPv4 identification (ignored for IPv6).
    pub ident: u16,
    /// MSS option value on SYNs.
    pub mss: u16,
}

/// Link and IP headers of a frame from one end to the other, and the two sockets.
fn headers(
    link: &Link,
    ep: &Endpoints,
    from_leecher: bool,
    ident: u16,
    protocol: u8,
) -> Result<(EthernetRepr, IpRepr, SocketAddr, SocketAddr), SynthError> {
    let (src, dst, smac, dmac) = if from_leecher {
        (ep.leecher, ep.seeder, ep.leecher_mac, ep.gateway_mac)
    } else {
        (ep.seeder, ep.leecher, ep.gateway_mac, ep.leecher_mac)
    };
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpRepr::V4(Ipv4Repr {
            src: s,
            dst: d,
            ident,
            // Path-MTU discovery is on for TCP on every modern stack, and uTP
            // implementations (libutp, libtorrent) set DF for their MTU probing.
            dont_fragment: true,
            ttl: TTL,
            protocol,
        }),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpRepr::V6(Ipv6Repr {
            src: s,
            dst: d,
            next_header: protocol,
            hop_limit: TTL,
        }),
        _ => return Err(SynthError::Build("mixed IPv4/IPv6 endpoints".into())),
    };
    let eth = EthernetRepr {
        src: smac,
        dst: dmac,
        vlan: link.vlan.map(|v| v.value()),
        qinq: link.qinq.map(|v| v.value()),
    };
    Ok((eth, ip, src, dst))
}

fn too_long() -> SynthError {
    SynthError::Build("payload too long for one IP packet".into())
}

/// Appends the full frame for `seg` carrying `payload` to `out`.
pub fn build(
    link: &Link,
    ep: &Endpoints,
    seg: &Segment,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SynthError> {
    let (eth, ip, src, dst) = headers(link, ep, seg.from_leecher, seg.ident, PROTO_TCP)?;
    let mut flags = TcpFlags {
        syn: seg.syn,
        fin: seg.fin,
        psh: seg.psh,
        ..TcpFlags::default()
    };
    flags.ack = seg.ack.is_some();
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq: SeqNum(seg.seq),
        ack: SeqNum(seg.ack.unwrap_or(0)),
        flags,
        window: WINDOW,
        options: if seg.syn {
            OptionBytes::new().mss(seg.mss)
        } else {
            OptionBytes::new()
        },
    };
    let start = out.len();
    eth.emit(ip.ethertype(), out);
    let written = ip
        .emit(tcp.header_len() + payload.len(), out)
        .and_then(|()| tcp.emit(ip.src(), ip.dst(), payload, out));
    if written.is_none() {
        out.truncate(start);
        return Err(too_long());
    }
    Ok(())
}

/// BEP 29 packet types (high nibble of the first header byte).
pub const ST_DATA: u8 = 0;
pub const ST_FIN: u8 = 1;
pub const ST_STATE: u8 = 2;
#[allow(dead_code)] // never sent: every synthetic connection closes cleanly
pub const ST_RESET: u8 = 3;
pub const ST_SYN: u8 = 4;
pub const UTP_HEADER_LEN: usize = crate::wire::utp::HEADER_LEN;
/// Receive window both ends advertise (libtorrent's default receive buffer); like the TCP
/// window it is far above what the request pipeline ever has in flight.
pub const UTP_WINDOW: u32 = 1 << 20;

/// uTP-level description of one frame (BEP 29). Timestamps are not here: they come from
/// the frame clock when the frame is built.
#[derive(Clone, Copy, Debug)]
pub struct UtpPacket {
    pub from_leecher: bool,
    /// One of `ST_*`.
    pub ty: u8,
    pub conn_id: u16,
    pub seq_nr: u16,
    pub ack_nr: u16,
    /// IPv4 identification (ignored for IPv6).
    pub ident: u16,
}

impl UtpPacket {
    /// The 20-byte BEP 29 header (no extensions: the receiver always has everything, so
    /// there is never a selective ack to send).
    pub fn header(&self, timestamp: u32, ts_diff: u32) -> [u8; UTP_HEADER_LEN] {
        UtpRepr {
            // `ty` is one of the ST_* constants above, all BEP 29 types.
            kind: UtpType::from_wire(self.ty).expect("ST_* is a BEP 29 packet type"),
            conn_id: self.conn_id,
            timestamp,
            ts_diff,
            wnd: UTP_WINDOW,
            seq: self.seq_nr,
            ack: self.ack_nr,
        }
        .emit()
    }
}

/// Appends the full frame of a UDP datagram (a uTP header + payload) to `out`.
pub fn build_udp(
    link: &Link,
    ep: &Endpoints,
    from_leecher: bool,
    ident: u16,
    datagram: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SynthError> {
    let (eth, ip, src, dst) = headers(link, ep, from_leecher, ident, PROTO_UDP)?;
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let start = out.len();
    eth.emit(ip.ethertype(), out);
    let written = ip
        .emit(crate::wire::udp::HEADER_LEN + datagram.len(), out)
        .and_then(|()| udp.emit(ip.src(), ip.dst(), datagram, out));
    if written.is_none() {
        out.truncate(start);
        return Err(too_long());
    }
    Ok(())
}
