//! Frames from the remote peer R: its stream followed in order for message boundaries (where
//! answered blocks may go in), and every segment carried into S's sequence space — split
//! where an insertion point falls inside it.

use super::conn::Conn;
use super::framer::Item;
use super::{BlockSource, Bypass, Emit, Port, Splicer};
use crate::wire::tcpframe::{Rewrite, TcpFrame};

impl<S: BlockSource> Splicer<S> {
    pub(super) fn on_upstream_frame(
        &mut self,
        now: u64,
        c: &mut Conn,
        t: &TcpFrame,
        out: &mut Vec<Emit>,
    ) {
        let (tcp, flags) = (t.tcp(), t.tcp().flags());
        if flags.syn {
            c.r.on_syn(t);
            c.settle_options();
        }
        if !c.r.syn {
            c.stop_serving(Bypass::Midstream, &mut self.counters);
        }
        if flags.ack && (!c.r_ack_seen || tcp.ack() > c.r_ack) {
            c.r_ack = tcp.ack();
            c.r_ack_seen = true;
        }
        c.r_win = tcp.window();
        if let Some((val, _)) = t.timestamps() {
            c.r.tsval = val;
        }
        if c.template.is_none() || !flags.syn {
            c.template = Some(t.template().to_owned());
        }
        let payload = t.payload();
        let len = payload.len();
        // In-order tracking of R's stream: where its messages end.
        let mut points: Vec<usize> = Vec::new();
        if !flags.syn {
            if let Some(next) = c.r.next {
                let off = tcp.seq().diff(next);
                if off > 0 && len > 0 {
                    c.r.next = None;
                    c.stop_serving(Bypass::Gap, &mut self.counters);
                } else if len > 0 && (-off) < len as i32 {
                    let skip = (-off) as usize;
                    if skip == 0 && c.r.framer.at_boundary() {
                        points.push(0);
                    }
                    let mut items = std::mem::take(&mut self.items);
                    items.clear();
                    c.r.framer.feed(&payload[skip..], &mut items);
                    for it in &items {
                        match *it {
                            Item::Handshake { info_hash, end } => {
                                c.r.info_hash = Some(info_hash);
                                points.push(end + skip);
                            }
                            Item::Boundary { end } => points.push(end + skip),
                            Item::Request { .. } => {}
                        }
                    }
                    self.items = items;
                    c.r.next = Some(next + (len - skip) as u32);
                    if c.r.framer.broken() {
                        c.stop_serving(Bypass::NotBittorrent, &mut self.counters);
                    }
                }
                if flags.fin {
                    c.r.fin = true;
                }
            }
        }
        // Where to insert the blocks waiting (the first boundary inside this segment; the
        // end of the segment is handled after it, as "R's stream is at a boundary").
        let insert_here = if c.inj.has_pending() {
            points.iter().copied().find(|&p| p < len)
        } else {
            None
        };
        if insert_here.is_none() && !c.translating() {
            out.push(Emit::Original);
        } else {
            self.emit_upstream_segment(now, c, t, insert_here, out);
        }
        if insert_here.is_none() {
            if let Some(next) = c.r.boundary() {
                self.insert_into(now, c, next, out);
            }
        }
    }

    /// An R→S segment, translated into S's space, split at insertion points inside it (and
    /// at `insert_here`, where the waiting blocks go in).
    fn emit_upstream_segment(
        &mut self,
        now: u64,
        c: &mut Conn,
        t: &TcpFrame,
        insert_here: Option<usize>,
        out: &mut Vec<Emit>,
    ) {
        let len = t.payload().len();
        let a = t.tcp().seq();
        // Cut points: existing insertion points strictly inside the payload, plus ours.
        let mut cuts: Vec<usize> = c.map.points_inside(a, len).collect();
        if let Some(q) = insert_here {
            if q > 0 && !cuts.contains(&q) {
                cuts.push(q);
            }
        }
        cuts.sort_unstable();
        if !cuts.is_empty() && !t.checksum_ok() {
            self.counters.bad_checksum_dropped += 1;
            return;
        }
        let mut start = 0;
        let mut bounds = cuts.clone();
        bounds.push(len);
        if insert_here == Some(0) {
            self.insert_into(now, c, a, out);
        }
        for end in bounds {
            let piece_seq = a + start as u32;
            let s_seq = c.map.forward(piece_seq);
            if cuts.is_empty() {
                let mut w = Rewrite::new(*t);
                w.set_seq(s_seq);
                self.counters.rewritten_segments += 1;
                out.push(Emit::Frame(Port::Subscriber, w.finish()));
            } else if let Some(part) = t.slice_segment(start..end, s_seq) {
                out.push(Emit::Frame(Port::Subscriber, part));
            }
            // (None cannot happen: every bound is inside the payload, `points_inside` and
            // `insert_here` being offsets into it. Were it to, the part is left out: S
            // sees a gap and asks again rather than the box sending bytes it never read.)
            if insert_here == Some(end) && end > 0 && end < len {
                self.insert_into(now, c, a + end as u32, out);
            }
            start = end;
        }
        if !cuts.is_empty() {
            self.counters.split_segments += 1;
        }
    }
}
