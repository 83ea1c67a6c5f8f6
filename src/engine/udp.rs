//! UDP: flows probed for uTP (BEP 29), then followed as uTP connections into their parsers.

use std::net::{IpAddr, SocketAddr};

use super::conn::Conn;
use super::utp_probe::{UtpProbe, UTP_PROBE_PACKETS};
use super::{Core, End, Engine};
use crate::flow::utp::UtpReasm;
use crate::flow::{Dir, FlowKey};
use crate::peerwire::conn::ConnState;
use crate::wire::link::UdpDatagram;
use crate::wire::utp::{UtpPacket, UtpType};

/// A UDP flow: being probed for uTP, followed as uTP, or not ours.
pub(super) enum UdpFlow {
    Probe(Box<UtpProbe>),
    Utp(Box<UtpFlow>),
    /// A uTP connection that ended (or is not ours): its stragglers are only counted.
    UtpDone,
    Other,
}

pub(super) struct UtpFlow {
    reasm: [UtpReasm; 2],
    conn: Conn,
    /// The connection's start (SYN) was seen: both streams start at their first byte.
    syn_seen: bool,
    syn_id: Option<u16>,
    fin: [bool; 2],
}

impl Engine {
    pub(super) fn udp_datagram(
        &mut self,
        ts: u64,
        vlan: Option<u16>,
        src: IpAddr,
        dst: IpAddr,
        u: &UdpDatagram<'_>,
    ) {
        let (key, dir) = FlowKey::new(
            17,
            vlan,
            SocketAddr::new(src, u.src_port),
            SocketAddr::new(dst, u.dst_port),
        );
        let core = &mut self.core;
        let flow = match self.udp.get_mut(&key, ts) {
            Some(f) => f,
            None => {
                core.app.stats.flows.udp += 1;
                let f = UdpFlow::Probe(Box::default());
                self.udp
                    .insert(key, f, ts, |k, f| core.finish_udp(k, f, End::Evicted))
            }
        };
        match flow {
            UdpFlow::Other => {}
            UdpFlow::UtpDone => match UtpPacket::new_checked(u.payload) {
                Some(p) if p.kind == UtpType::Syn => {
                    // A new connection on the same ports.
                    let mut probe = Box::<UtpProbe>::default();
                    probe.observe(dir, u.payload);
                    *flow = UdpFlow::Probe(probe);
                }
                Some(_) => core.utp.packets += 1,
                None => {}
            },
            UdpFlow::Probe(p) => {
                let Some(initiator) = p.observe(dir, u.payload) else {
                    // Non-uTP datagrams do not condemn a flow: libtorrent sends DHT and uTP
                    // from one socket. Only uTP-looking packets that never pair up do.
                    if p.packets >= UTP_PROBE_PACKETS {
                        *flow = UdpFlow::Other;
                    }
                    return;
                };
                // Confirmed: replay what the probe held through a uTP flow.
                let held = std::mem::take(&mut p.held);
                let syn_seen = p.syn.is_some();
                let syn_id = p.syn.map(|(_, id, _)| id);
                core.utp.flows += 1;
                let start = Some(initiator).filter(|_| syn_seen);
                let mut f = UtpFlow {
                    reasm: [UtpReasm::default(), UtpReasm::default()],
                    conn: Conn::new(key, start, &core.app.cfg),
                    syn_seen,
                    syn_id,
                    fin: [false; 2],
                };
                f.conn.utp = true;
                f.conn.state = ConnState::for_utp(start);
                for (d, bytes) in &held {
                    if let Some(pkt) = UtpPacket::new_checked(bytes) {
                        core.utp_packet(&mut f, *d, &pkt);
                    }
                }
                *flow = UdpFlow::Utp(Box::new(f));
            }
            UdpFlow::Utp(f) => {
                let Some(pkt) = UtpPacket::new_checked(u.payload) else {
                    return;
                };
                if pkt.kind == UtpType::Syn && f.syn_id != Some(pkt.conn_id) {
                    // A new connection on the same ports: the old one is over.
                    let old = std::mem::replace(flow, UdpFlow::Probe(Box::default()));
                    core.finish_udp(key, old, End::Closed);
                    if let UdpFlow::Probe(p) = flow {
                        p.observe(dir, u.payload);
                    }
                    return;
                }
                core.utp_packet(f, dir, &pkt);
                let closed = f.fin == [true, true] || pkt.kind == UtpType::Reset;
                if f.conn.ignorable() || closed {
                    let old = std::mem::replace(flow, UdpFlow::UtpDone);
                    core.finish_udp(key, old, End::Closed);
                }
            }
        }
    }
}

impl Core {
    pub(super) fn finish_udp(&mut self, _key: FlowKey, flow: UdpFlow, end: End) {
        match end {
            End::Expired => self.app.stats.flows.expired += 1,
            End::Evicted => self.app.stats.flows.evicted += 1,
            End::Closed | End::Drained => {}
        }
        let UdpFlow::Utp(mut f) = flow else {
            return;
        };
        let UtpFlow {
            reasm,
            conn,
            syn_seen,
            ..
        } = &mut *f;
        let Core {
            budget,
            utp,
            app: ctx,
            ..
        } = self;
        for d in [Dir::LoToHi, Dir::HiToLo] {
            let at_start = *syn_seen;
            reasm[d.idx()].flush(utp, budget, &mut |c| conn.on_chunk(d, at_start, c, ctx));
        }
        conn.close(ctx);
    }

    /// One uTP packet of a confirmed flow.
    fn utp_packet(&mut self, f: &mut UtpFlow, dir: Dir, pkt: &UtpPacket<'_>) {
        let Core {
            ulimits,
            budget,
            utp: c,
            app: ctx,
            ..
        } = self;
        let UtpFlow {
            reasm,
            conn,
            syn_seen,
            fin,
            ..
        } = f;
        c.packets += 1;
        let at_start = *syn_seen;
        match pkt.kind {
            UtpType::Syn => {
                // The initiator's first DATA carries the SYN's seq_nr + 1.
                reasm[dir.idx()].start_at(pkt.seq.wrapping_add(1));
                return;
            }
            UtpType::Reset => {
                c.resets += 1;
                return;
            }
            UtpType::Fin => fin[dir.idx()] = true,
            UtpType::Data | UtpType::State => {}
        }
        let rd = dir.rev();
        reasm[rd.idx()].ack(pkt.ack, c, budget, &mut |ch| {
            conn.on_chunk(rd, at_start, ch, ctx)
        });
        if pkt.kind == UtpType::Data {
            reasm[dir.idx()].data(pkt.seq, pkt.payload, ulimits, c, budget, &mut |ch| {
                conn.on_chunk(dir, at_start, ch, ctx)
            });
        }
    }
}
