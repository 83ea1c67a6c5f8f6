//! Ethernet / [802.1Q | 802.1ad+802.1Q] / IPv4|IPv6 / TCP or UDP+uTP frames with correct
//! checksums.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder, PacketBuilderStep,
    TcpHeader, TcpOptionElement, VlanId,
};

use super::SynthError;

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

/// Link and IP headers of a frame from `src` to `dst`, up to the transport header.
fn ip_step(
    link: &Link,
    ep: &Endpoints,
    from_leecher: bool,
    ident: u16,
    next_header: IpNumber,
) -> Result<(PacketBuilderStep<IpHeaders>, SocketAddr, SocketAddr), SynthError> {
    let (src, dst, smac, dmac) = if from_leecher {
        (ep.leecher, ep.seeder, ep.leecher_mac, ep.gateway_mac)
    } else {
        (ep.seeder, ep.leecher, ep.gateway_mac, ep.leecher_mac)
    };
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpHeaders::Ipv4(
            Ipv4Header {
                identification: ident,
                // Path-MTU discovery is on for TCP on every modern stack, and uTP
                // implementations (libutp, libtorrent) set DF for their MTU probing.
                dont_fragment: true,
                time_to_live: TTL,
                source: s.octets(),
                destination: d.octets(),
                ..Default::default()
            },
            Default::default(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 0, // filled in on write
                next_header,
                hop_limit: TTL,
                source: s.octets(),
                destination: d.octets(),
            },
            Default::default(),
        ),
        _ => return Err(SynthError::Build("mixed IPv4/IPv6 endpoints".into())),
    };
    let eth = PacketBuilder::ethernet2(smac, dmac);
    let step = match (link.qinq, link.vlan) {
        (Some(outer), Some(inner)) => eth.double_vlan(outer, inner).ip(ip),
        (None, Some(v)) => eth.single_vlan(v).ip(ip),
        _ => eth.ip(ip),
    };
    Ok((step, src, dst))
}

/// Appends the full frame for `seg` carrying `payload` to `out`.
pub fn build(
    link: &Link,
    ep: &Endpoints,
    seg: &Segment,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SynthError> {
    let (step, src, dst) = ip_step(link, ep, seg.from_leecher, seg.ident, IpNumber::TCP)?;
    let mut tcp = TcpHeader::new(src.port(), dst.port(), seg.seq, WINDOW);
    tcp.syn = seg.syn;
    tcp.fin = seg.fin;
    tcp.psh = seg.psh;
    if let Some(a) = seg.ack {
        tcp.ack = true;
        tcp.acknowledgment_number = a;
    }
    if seg.syn {
        tcp.set_options(&[TcpOptionElement::MaximumSegmentSize(seg.mss)])
            .map_err(|e| SynthError::Build(e.to_string()))?;
    }
    step.tcp_header(tcp)
        .write(out, payload)
        .map_err(|e| SynthError::Build(e.to_string()))
}

/// BEP 29 packet types (high nibble of the first header byte).
pub const ST_DATA: u8 = 0;
pub const ST_FIN: u8 = 1;
pub const ST_STATE: u8 = 2;
#[allow(dead_code)] // never sent: every synthetic connection closes cleanly
pub const ST_RESET: u8 = 3;
pub const ST_SYN: u8 = 4;
pub const UTP_VERSION: u8 = 1;
pub const UTP_HEADER_LEN: usize = 20;
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
        let mut h = [0u8; UTP_HEADER_LEN];
        h[0] = self.ty << 4 | UTP_VERSION;
        h[1] = 0; // first extension: none
        h[2..4].copy_from_slice(&self.conn_id.to_be_bytes());
        h[4..8].copy_from_slice(&timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&ts_diff.to_be_bytes());
        h[12..16].copy_from_slice(&UTP_WINDOW.to_be_bytes());
        h[16..18].copy_from_slice(&self.seq_nr.to_be_bytes());
        h[18..20].copy_from_slice(&self.ack_nr.to_be_bytes());
        h
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
    let (step, src, dst) = ip_step(link, ep, from_leecher, ident, IpNumber::UDP)?;
    step.udp(src.port(), dst.port())
        .write(out, datagram)
        .map_err(|e| SynthError::Build(e.to_string()))
}
