//! Frames from the remote peer R: its stream followed in order for message boundaries (where
//! answered blocks may go in), and every segment carried into S's sequence space — split
//! where an insertion point falls inside it.

use super::conn::Conn;
use super::frame::{self, Rewrite, TcpFrame, ACK, FIN, SYN};
use super::framer::Item;
use super::{BlockSource, Bypass, Emit, Port, Splicer};

impl<S: BlockSource> Splicer<S> {
    pub(super) fn on_upstream_frame(
        &mut self,
        now: u64,
        c: &mut Conn,
        frame: &[u8],
        t: &TcpFrame,
        out: &mut Vec<Emit>,
    ) {
        if t.has(SYN) {
            c.r.on_syn(t, frame);
            c.settle_options();
        }
        if !c.r.syn {
            c.stop_serving(Bypass::Midstream, &mut self.counters);
        }
        if t.has(ACK) && (!c.r_ack_seen || t.ack > c.r_ack) {
            c.r_ack = t.ack;
            c.r_ack_seen = true;
        }
        c.r_win = t.window;
        if let Some((val, _)) = t.timestamps(frame) {
            c.r.tsval = val;
        }
        if c.template.is_none() || !t.has(SYN) {
            c.template = Some((frame[..t.l4].to_vec(), *t));
        }
        let payload = t.payload(frame);
        let len = payload.len();
        // In-order tracking of R's stream: where its messages end.
        let mut points: Vec<usize> = Vec::new();
        if !t.has(SYN) {
            if let Some(next) = c.r.next {
                let off = t.seq.diff(next);
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
                if t.has(FIN) {
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
            self.emit_upstream_segment(now, c, frame, t, insert_here, out);
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
        frame: &[u8],
        t: &TcpFrame,
        insert_here: Option<usize>,
        out: &mut Vec<Emit>,
    ) {
        let len = t.end - t.data;
        let a = t.seq;
        // Cut points: existing insertion points strictly inside the payload, plus ours.
        let mut cuts: Vec<usize> = c.map.points_inside(a, len).collect();
        if let Some(q) = insert_here {
            if q > 0 && !cuts.contains(&q) {
                cuts.push(q);
            }
        }
        cuts.sort_unstable();
        if !cuts.is_empty() && !t.checksum_ok(frame) {
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
                let mut w = Rewrite::new(frame, *t);
                w.set_seq(s_seq);
                self.counters.rewritten_segments += 1;
                out.push(Emit::Frame(Port::Subscriber, w.finish()));
            } else {
                out.push(Emit::Frame(
                    Port::Subscriber,
                    frame::slice_segment(frame, t, start..end, s_seq),
                ));
            }
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
