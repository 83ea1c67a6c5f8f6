//! Just enough peer-wire framing for the splice, over one direction of a connection, in
//! order: the handshake (for the info-hash), then length-prefixed messages. It reports where
//! messages end (the points where bytes may be inserted into the stream) and every
//! REQUEST/CANCEL with its exact position, and copies nothing but a 17-byte header. The
//! cutting is the wire layer's framing core (`wire::peerwire::framing`); what is judged here
//! is which headers the splice accepts.
//!
//! Anything that does not frame (not a plaintext handshake, a length no client sends, an
//! unknown id) makes it `Broken`: the connection is then left alone.

use crate::wire::peerwire::framing::{Framed, Framing};
use crate::wire::peerwire::{BlockRef, Kind};

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
    /// Offset in the current run where the message being read began (None: an earlier run).
    hdr_start: Option<usize>,
    max_len: u32,
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
        }
    }

    pub fn broken(&self) -> bool {
        self.broken
    }

    /// At a message boundary after the handshake: bytes may be inserted here.
    pub fn at_boundary(&self) -> bool {
        !self.broken && self.core.at_boundary()
    }

    pub fn past_handshake(&self) -> bool {
        !self.broken && !self.core.in_handshake()
    }

    /// Feed the next in-order bytes; items go to `out` in stream order.
    pub fn feed(&mut self, buf: &[u8], out: &mut Vec<Item>) {
        let mut i = 0;
        // A header collected across runs began in an earlier one: no start in this run.
        self.hdr_start = None;
        while i < buf.len() && !self.broken {
            if self.core.at_boundary() {
                self.hdr_start = Some(i);
            }
            // REQUEST and CANCEL are read whole (they may be rewritten); of any other
            // message only the id.
            let (used, f) = self.core.step(&buf[i..], |len, id| {
                let block_msg = id == Kind::Request.id() || id == Kind::Cancel.id();
                if block_msg && len == 13 {
                    BLOCK_MSG_HEAD
                } else {
                    1
                }
            });
            i += used;
            match f {
                Framed::Partial | Framed::Body { end: false, .. } => {}
                Framed::NotHandshake => self.broken = true,
                Framed::Handshake(h) => out.push(Item::Handshake {
                    end: i,
                    info_hash: h.info_hash().into(),
                }),
                Framed::KeepAlive | Framed::Body { end: true, .. } => {
                    out.push(Item::Boundary { end: i })
                }
                Framed::Prefix(len) => self.broken = len > self.max_len,
                Framed::Header { len, head, body } => {
                    let Some(kind) =
                        Kind::from_id(head[0]).filter(|k| k.valid_len(len, self.max_len))
                    else {
                        self.broken = true;
                        continue;
                    };
                    if head.len() == BLOCK_MSG_HEAD {
                        let be = |at: usize| {
                            u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]])
                        };
                        out.push(Item::Request {
                            start: self.hdr_start,
                            block: BlockRef {
                                index: be(1),
                                begin: be(5),
                                length: be(9),
                            },
                            cancel: kind == Kind::Cancel,
                        });
                    }
                    if body == 0 {
                        out.push(Item::Boundary { end: i });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut f = Framer::new(1 << 20);
        f.feed(&[0x8a; 96], &mut Vec::new());
        assert!(f.broken());
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
}
