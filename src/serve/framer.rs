//! Just enough peer-wire framing for the splice, over one direction of a connection, in
//! order: the handshake (for the info-hash), then length-prefixed messages. It reports where
//! messages end (the points where bytes may be inserted into the stream) and every
//! REQUEST/CANCEL with its exact position, and copies nothing but a 17-byte header. The
//! cutting is the wire layer's framing core (`wire::peerwire::framing`); what is judged here
//! is which headers the splice accepts.
//!
//! A stream that does not begin with the protocol string may be MSE/PE that selected
//! plaintext: its first bytes are then held (at most `mse::MSE_HOLD`), nothing is reported
//! from them, and framing starts where `mse::Locator` finds the plaintext; a stream where it
//! finds none (RC4, another protocol) is `Broken`. Anything else that does not frame (a
//! length no client sends, an unknown id) makes it `Broken` too: the connection is then left
//! alone.

use super::mse::{Locator, Start, Verdict};
use crate::wire::peerwire::framing::{Framed, Framing};
use crate::wire::peerwire::{BlockRef, Kind, PROTOCOL};

pub use crate::wire::peerwire::emit::NOOP17;

/// What one in-order run of bytes held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// The handshake completed at this offset (exclusive end); its info-hash.
    Handshake { end: usize, info_hash: [u8; 20] },
    /// A message ended at this offset (a boundary).
    Boundary { end: usize },
    /// A REQUEST (or CANCEL) occupying `start..start+17` of this run; `start` is None when it
    /// began in an earlier run (it cannot be rewritten then).
    Request {
        start: Option<usize>,
        block: BlockRef,
        cancel: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Framer {
    core: Framing,
    broken: bool,
    /// Offset in the bytes being framed where the message being read began (None: an
    /// earlier run).
    hdr_start: Option<usize>,
    max_len: u32,
    /// Bytes of the protocol string checked so far (the stream's first bytes).
    checked: usize,
    /// This direction opened the connection (an MSE prefix is then longer).
    initiator: bool,
    /// The stream began with something else than the protocol string.
    mse: bool,
    /// Some while the plaintext start after an MSE/PE exchange is being looked for.
    locating: Option<Box<Locator>>,
}

/// Bytes after the prefix of a REQUEST or CANCEL: id, index, begin, length.
const BLOCK_MSG_HEAD: usize = 13;

impl Framer {
    /// `max_len`: the largest message accepted (anything longer breaks the framing).
    pub fn new(max_len: u32) -> Framer {
        Framer {
            core: Framing::at_handshake(),
            broken: false,
            hdr_start: None,
            max_len,
            checked: 0,
            initiator: false,
            mse: false,
            locating: None,
        }
    }

    /// This direction is the connection's initiator (its SYN carried no ACK): were it MSE,
    /// its plaintext would start after the two sync hashes and len(IA) too.
    pub fn set_initiator(&mut self) {
        self.initiator = true;
    }

    pub fn broken(&self) -> bool {
        self.broken
    }

    /// The stream began with MSE/PE (or something else than a plaintext handshake).
    pub fn mse(&self) -> bool {
        self.mse
    }

    /// The stream began with MSE/PE and its plaintext start was found: it is framed now.
    pub fn mse_located(&self) -> bool {
        self.mse && self.locating.is_none() && !self.broken
    }

    /// At a message boundary after the handshake: bytes may be inserted here.
    pub fn at_boundary(&self) -> bool {
        !self.broken && self.locating.is_none() && self.core.at_boundary()
    }

    /// Framing messages (past the handshake, or past an MSE start found among messages).
    pub fn past_handshake(&self) -> bool {
        !self.broken && self.locating.is_none() && !self.core.in_handshake()
    }

    /// Feed the next in-order bytes; items go to `out` in stream order, with offsets into
    /// `buf`.
    pub fn feed(&mut self, buf: &[u8], out: &mut Vec<Item>) {
        if self.broken || buf.is_empty() {
            return;
        }
        if self.locating.is_none() && self.checked < PROTOCOL.len() {
            let n = (PROTOCOL.len() - self.checked).min(buf.len());
            if buf[..n] == PROTOCOL[self.checked..self.checked + n] {
                self.checked += n;
            } else {
                // Everything before this run matched the protocol string, so those bytes
                // are known without having been kept. The check is over for good.
                self.mse = true;
                self.locating = Some(Box::new(Locator::new(
                    &PROTOCOL[..self.checked],
                    self.initiator,
                )));
                self.checked = PROTOCOL.len();
            }
        }
        let Some(loc) = self.locating.as_mut() else {
            self.frame(buf, 0, 0, out);
            return;
        };
        match loc.push(buf, self.max_len) {
            Verdict::Hold => {}
            Verdict::NotFound => {
                self.locating = None;
                self.broken = true;
            }
            Verdict::Located(start) => {
                let held = loc.held().len();
                let Some(loc) = self.locating.take() else {
                    return;
                };
                let held_bytes = loc.into_held();
                let from = match start {
                    Start::Handshake(at) => {
                        self.core = Framing::at_handshake();
                        at
                    }
                    Start::Message(at) => {
                        self.core = Framing::at_message();
                        at
                    }
                };
                // The run is the last `buf.len()` bytes held; the start may lie before it.
                self.frame(&held_bytes, from, held - buf.len(), out);
            }
        }
    }

    /// Frames `bytes[from..]`, of which `bytes[run..]` is the run being fed: items are
    /// reported with offsets into the run, and only those that end inside it (the bytes
    /// before it were held while the start was looked for, and reported nothing).
    fn frame(&mut self, bytes: &[u8], from: usize, run: usize, out: &mut Vec<Item>) {
        let mut i = from;
        // A header collected across runs began in an earlier one: no start in this run.
        self.hdr_start = None;
        while i < bytes.len() && !self.broken {
            if self.core.at_boundary() {
                self.hdr_start = Some(i);
            }
            // REQUEST and CANCEL are read whole (they may be rewritten); of any other
            // message only the id.
            let (used, f) = self.core.step(&bytes[i..], |len, id| {
                let block_msg = id == Kind::Request.id() || id == Kind::Cancel.id();
                if block_msg && len == 13 {
                    BLOCK_MSG_HEAD
                } else {
                    1
                }
            });
            i += used;
            // Whether what ended at `i` ended inside the run.
            let in_run = i > run;
            match f {
                Framed::Partial | Framed::Body { end: false, .. } => {}
                Framed::NotHandshake => self.broken = true,
                // A located handshake's protocol string was found in the run that completed
                // it, so its end is inside the run.
                Framed::Handshake(h) => out.push(Item::Handshake {
                    end: i.saturating_sub(run),
                    info_hash: h.info_hash().into(),
                }),
                Framed::KeepAlive | Framed::Body { end: true, .. } => {
                    if in_run {
                        out.push(Item::Boundary { end: i - run })
                    }
                }
                Framed::Prefix(len) => self.broken = len > self.max_len,
                Framed::Header { len, head, body } => {
                    let Some(kind) =
                        Kind::from_id(head[0]).filter(|k| k.valid_len(len, self.max_len))
                    else {
                        self.broken = true;
                        continue;
                    };
                    if head.len() == BLOCK_MSG_HEAD && in_run {
                        let be = |at: usize| {
                            u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]])
                        };
                        out.push(Item::Request {
                            start: self.hdr_start.filter(|&s| s >= run).map(|s| s - run),
                            block: BlockRef {
                                index: be(1),
                                begin: be(5),
                                length: be(9),
                            },
                            cancel: kind == Kind::Cancel,
                        });
                    }
                    if body == 0 && in_run {
                        out.push(Item::Boundary { end: i - run });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::mse::fake;
    use crate::wire::peerwire::emit;

    fn handshake(ih: u8) -> Vec<u8> {
        let mut h = Vec::new();
        emit::handshake(&mut h, [0; 8], &[ih; 20], &[9; 20]);
        h
    }

    fn request(index: u32, begin: u32, length: u32) -> Vec<u8> {
        let mut m = Vec::new();
        emit::request(
            &mut m,
            BlockRef {
                index,
                begin,
                length,
            },
        );
        m
    }

    fn stream() -> Vec<u8> {
        let mut s = handshake(7);
        s.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
        s.extend_from_slice(&request(1, 0, 16384));
        s.extend_from_slice(&[0, 0, 0, 0]); // keep-alive
        emit::piece(&mut s, 1, 0, &[1, 2, 3, 4]);
        s.extend_from_slice(&request(2, 16384, 16384));
        s
    }

    #[test]
    fn any_split_gives_the_same_items() {
        let s = stream();
        let mut whole = Vec::new();
        Framer::new(1 << 20).feed(&s, &mut whole);
        assert_eq!(
            whole[0],
            Item::Handshake {
                end: 68,
                info_hash: [7; 20]
            }
        );
        let reqs: Vec<_> = whole
            .iter()
            .filter_map(|i| match i {
                Item::Request { start, block, .. } => Some((*start, block.index)),
                _ => None,
            })
            .collect();
        assert_eq!(reqs, vec![(Some(73), 1), (Some(111), 2)]);
        let ends: Vec<usize> = whole
            .iter()
            .filter_map(|i| match i {
                Item::Boundary { end } => Some(*end),
                _ => None,
            })
            .collect();
        assert_eq!(ends, vec![73, 90, 94, 111, 128]);
        for cut in 1..s.len() {
            let mut f = Framer::new(1 << 20);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            f.feed(&s[..cut], &mut a);
            f.feed(&s[cut..], &mut b);
            assert!(f.at_boundary());
            let mut ends2: Vec<usize> = a
                .iter()
                .filter_map(|i| match i {
                    Item::Boundary { end } => Some(*end),
                    _ => None,
                })
                .collect();
            ends2.extend(b.iter().filter_map(|i| match i {
                Item::Boundary { end } => Some(*end + cut),
                _ => None,
            }));
            assert_eq!(ends2, ends, "cut {cut}");
            let split_req = |lo: usize| cut > lo && cut < lo + 17;
            // A request reported with a start is at its exact place in the stream (the
            // second run's offsets count from `cut`); one split across the runs has no
            // start in the run it completes in.
            let placed: Vec<(Option<usize>, u32)> = a
                .iter()
                .map(|i| (i, 0))
                .chain(b.iter().map(|i| (i, cut)))
                .filter_map(|(i, base)| match i {
                    Item::Request { start, block, .. } => {
                        Some((start.map(|s| s + base), block.index))
                    }
                    _ => None,
                })
                .collect();
            let expect: Vec<(Option<usize>, u32)> = [(73, 1), (111, 2)]
                .iter()
                .map(|&(lo, index)| ((!split_req(lo)).then_some(lo), index))
                .collect();
            assert_eq!(placed, expect, "cut {cut}");
            let starts: Vec<Option<usize>> = a
                .iter()
                .chain(b.iter())
                .filter_map(|i| match i {
                    Item::Request { start, .. } => Some(*start),
                    _ => None,
                })
                .collect();
            assert_eq!(starts[0].is_none(), split_req(73), "cut {cut}");
            assert_eq!(starts[1].is_none(), split_req(111), "cut {cut}");
        }
    }

    #[test]
    fn mse_and_nonsense_break() {
        // An MSE-looking start is held, not judged at once; 2 KiB with no plaintext start
        // (later than any MSE prefix) is given up.
        let mut f = Framer::new(1 << 20);
        let mut out = Vec::new();
        f.feed(&[0x8a; 96], &mut out);
        assert!(!f.broken() && f.mse() && !f.mse_located() && !f.at_boundary());
        let mut rng = fastrand::Rng::with_seed(3);
        f.feed(&fake::rc4(&mut rng, 2048 - 96), &mut out);
        assert!(f.broken());
        assert!(out.is_empty());
        let mut f = Framer::new(1 << 20);
        let mut s = handshake(1);
        s.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        f.feed(&s, &mut Vec::new());
        assert!(f.broken());
    }

    #[test]
    fn noop_frames_as_four_messages() {
        let mut s = handshake(1);
        s.extend_from_slice(&NOOP17);
        let mut out = Vec::new();
        let mut f = Framer::new(1 << 20);
        f.feed(&s, &mut out);
        assert!(f.at_boundary());
        assert_eq!(
            out.iter()
                .filter(|i| matches!(i, Item::Boundary { .. }))
                .count(),
            4
        );
    }

    /// One direction's plaintext after an MSE prefix: its messages, every item a framer fed
    /// the whole stream reports (absolute offsets: handshake/boundary ends, REQUEST starts),
    /// and the ends of the messages at which a start is proven (enough evidence).
    struct Plain {
        bytes: Vec<u8>,
        /// (end, item) with absolute offsets; a REQUEST's `end` is start + 17.
        items: Vec<(usize, Item)>,
    }

    fn initiator_plaintext(at: usize) -> Plain {
        let mut p = Plain {
            bytes: Vec::new(),
            items: Vec::new(),
        };
        let msg = |p: &mut Plain, m: Vec<u8>, req: Option<BlockRef>| {
            let start = at + p.bytes.len();
            p.bytes.extend_from_slice(&m);
            let end = at + p.bytes.len();
            if let Some(block) = req {
                p.items.push((
                    end,
                    Item::Request {
                        start: Some(start),
                        block,
                        cancel: false,
                    },
                ));
            }
            p.items.push((end, Item::Boundary { end }));
        };
        let mut ext = Vec::new();
        emit::extended(&mut ext, 0, &[b"d1:md6:ut_pexi1ee1:v5:aria2e"]);
        msg(&mut p, ext, None);
        let mut bf = Vec::new();
        emit::message(&mut bf, Kind::Bitfield, &[0, 0, 0x10]);
        msg(&mut p, bf, None);
        msg(&mut p, vec![0, 0, 0, 1, 2], None);
        for (index, begin) in [(0, 0), (0, 16384), (3, 0)] {
            let b = BlockRef {
                index,
                begin,
                length: 16384,
            };
            msg(&mut p, request(index, begin, 16384), Some(b));
        }
        let mut have = Vec::new();
        emit::have(&mut have, 2);
        msg(&mut p, have, None);
        let b = BlockRef {
            index: 4,
            begin: 32768,
            length: 16384,
        };
        msg(&mut p, request(4, 32768, 16384), Some(b));
        p
    }

    /// Items of the stream fed in runs cut at `cuts`, with absolute offsets.
    fn fed(f: &mut Framer, stream: &[u8], cuts: &[usize]) -> Vec<Item> {
        let mut all = Vec::new();
        let mut at = 0;
        for &end in cuts.iter().chain([stream.len()].iter()) {
            let mut out = Vec::new();
            f.feed(&stream[at..end], &mut out);
            all.extend(out.into_iter().map(|i| match i {
                Item::Handshake { end, info_hash } => Item::Handshake {
                    end: end + at,
                    info_hash,
                },
                Item::Boundary { end } => Item::Boundary { end: end + at },
                Item::Request {
                    start,
                    block,
                    cancel,
                } => Item::Request {
                    start: start.map(|s| s + at),
                    block,
                    cancel,
                },
            }));
            at = end;
        }
        all
    }

    #[test]
    fn locates_the_initiators_plaintext_at_any_cut() {
        for seed in 0..6u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let (pad_a, pad_c) = (rng.usize(..=512), rng.usize(..=512));
            let mut s = fake::initiator(&mut rng, pad_a, pad_c, 68);
            let p = s.len();
            let plain = initiator_plaintext(p);
            s.extend_from_slice(&plain.bytes);
            // The start is proven at the INTERESTED (44 + 20 + 36 bits), or later.
            let proven: Vec<usize> = plain.items[2..]
                .iter()
                .filter_map(|(end, i)| matches!(i, Item::Boundary { .. }).then_some(*end))
                .collect();
            for c in 1..s.len() {
                let mut f = Framer::new(1 << 20);
                f.set_initiator();
                let got = fed(&mut f, &s, &[c]);
                assert!(f.mse_located() && f.at_boundary(), "seed {seed} cut {c}");
                // Located in the first run only at a proven end; what ended before the
                // run it was located in is not reported; a REQUEST cut in two has no start.
                let located_first = proven.contains(&c);
                let expect: Vec<Item> = plain
                    .items
                    .iter()
                    .filter(|(end, _)| *end > c || located_first)
                    .map(|&(end, i)| match i {
                        Item::Request {
                            start: Some(st),
                            block,
                            cancel,
                        } => Item::Request {
                            start: (st >= c || end <= c).then_some(st),
                            block,
                            cancel,
                        },
                        other => other,
                    })
                    .collect();
                assert_eq!(got, expect, "seed {seed} cut {c} start {p}");
            }
            // Four runs: the prefix cut inside, the start inside the second run and proven
            // at its end (the first REQUEST), a REQUEST split across the third and fourth.
            let (r1, r2) = (plain.items[4].0, plain.items[6].0);
            let mut f = Framer::new(1 << 20);
            f.set_initiator();
            let got = fed(&mut f, &s, &[p - 30, r1, r2 - 5]);
            let starts: Vec<Option<usize>> = got
                .iter()
                .filter_map(|i| match i {
                    Item::Request { start, .. } => Some(*start),
                    _ => None,
                })
                .collect();
            assert_eq!(
                starts,
                vec![Some(r1 - 17), None, Some(r2), Some(s.len() - 17)],
                "seed {seed}"
            );
        }
    }

    #[test]
    fn locates_the_responders_handshake_at_any_cut() {
        for seed in 0..4u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let (pad_b, pad_d) = (rng.usize(..=512), rng.usize(..=512));
            let mut s = fake::responder(&mut rng, pad_b, pad_d);
            let p = s.len();
            s.extend_from_slice(&handshake(7));
            s.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
            emit::piece(&mut s, 0, 0, &[5; 100]);
            let mut whole = Vec::new();
            let mut f = Framer::new(1 << 20);
            f.feed(&s, &mut whole);
            let expect = vec![
                Item::Handshake {
                    end: p + 68,
                    info_hash: [7; 20],
                },
                Item::Boundary { end: p + 73 },
                Item::Boundary { end: s.len() },
            ];
            assert_eq!(whole, expect);
            for c in (1..s.len()).step_by(7) {
                let mut f = Framer::new(1 << 20);
                assert_eq!(fed(&mut f, &s, &[c]), expect, "seed {seed} cut {c}");
                assert!(f.mse_located() && f.at_boundary());
            }
        }
    }

    #[test]
    fn rc4_streams_are_never_located() {
        for seed in 0..300u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let initiator = seed % 2 == 0;
            let mut s = if initiator {
                let (a, c) = (rng.usize(..=512), rng.usize(..=512));
                fake::initiator(&mut rng, a, c, 68)
            } else {
                let (b, d) = (rng.usize(..=512), rng.usize(..=512));
                fake::responder(&mut rng, b, d)
            };
            s.extend(fake::rc4(&mut rng, 6000));
            let mut f = Framer::new(1 << 20);
            if initiator {
                f.set_initiator();
            }
            let mut out = Vec::new();
            for run in s.chunks(1 + rng.usize(..1448)) {
                f.feed(run, &mut out);
            }
            assert!(f.broken() && f.mse() && !f.mse_located(), "seed {seed}");
            assert!(out.is_empty(), "seed {seed}");
        }
    }
}
