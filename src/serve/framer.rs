//! Just enough peer-wire framing for the splice, over one direction of a connection, in
//! order: the handshake (for the info-hash), then length-prefixed messages. It reports where
//! messages end (the points where bytes may be inserted into the stream) and every
//! REQUEST/CANCEL with its exact position, and copies nothing but a 17-byte header.
//!
//! Anything that does not frame (not a plaintext handshake, a length no client sends, an
//! unknown id) makes it `Broken`: the connection is then left alone.

use crate::wire::peerwire::{BlockRef, Kind, HANDSHAKE_LEN, PROTOCOL};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshake,
    /// Collecting a message header into `hdr` (length prefix, id, up to 12 body bytes).
    Header,
    /// Inside a message body we do not need: this many bytes left.
    Body(u32),
    Broken,
}

#[derive(Clone, Debug)]
pub struct Framer {
    state: State,
    hdr: [u8; HANDSHAKE_LEN],
    have: usize,
    /// Offset in the current run where the collected header began (None: an earlier run).
    hdr_start: Option<usize>,
    max_len: u32,
}

impl Framer {
    /// `max_len`: the largest message accepted (anything longer breaks the framing).
    pub fn new(max_len: u32) -> Framer {
        Framer {
            state: State::Handshake,
            hdr: [0; HANDSHAKE_LEN],
            have: 0,
            hdr_start: None,
            max_len,
        }
    }

    pub fn broken(&self) -> bool {
        self.state == State::Broken
    }

    /// At a message boundary after the handshake: bytes may be inserted here.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Header && self.have == 0
    }

    pub fn past_handshake(&self) -> bool {
        !matches!(self.state, State::Handshake | State::Broken)
    }

    /// Feed the next in-order bytes; items go to `out` in stream order.
    pub fn feed(&mut self, buf: &[u8], out: &mut Vec<Item>) {
        let mut i = 0;
        // A header collected across runs began in an earlier one: no start in this run.
        self.hdr_start = None;
        while i < buf.len() {
            match self.state {
                State::Broken => return,
                State::Handshake => {
                    let take = (HANDSHAKE_LEN - self.have).min(buf.len() - i);
                    self.hdr[self.have..self.have + take].copy_from_slice(&buf[i..i + take]);
                    // Check the protocol string as it arrives: MSE or another protocol breaks
                    // the framing at once.
                    let upto = (self.have + take).min(PROTOCOL.len());
                    if self.hdr[..upto] != PROTOCOL[..upto] {
                        self.state = State::Broken;
                        return;
                    }
                    self.have += take;
                    i += take;
                    if self.have == HANDSHAKE_LEN {
                        let mut ih = [0u8; 20];
                        ih.copy_from_slice(&self.hdr[28..48]);
                        out.push(Item::Handshake {
                            end: i,
                            info_hash: ih,
                        });
                        self.have = 0;
                        self.state = State::Header;
                    }
                }
                State::Body(left) => {
                    let take = left.min((buf.len() - i) as u32);
                    i += take as usize;
                    if take == left {
                        self.state = State::Header;
                        out.push(Item::Boundary { end: i });
                    } else {
                        self.state = State::Body(left - take);
                    }
                }
                State::Header => {
                    if self.have == 0 {
                        self.hdr_start = Some(i);
                    }
                    // Length prefix first, then id and (for REQUEST/CANCEL) the body.
                    let want = if self.have < 4 { 4 } else { self.header_len() };
                    let take = (want - self.have).min(buf.len() - i);
                    self.hdr[self.have..self.have + take].copy_from_slice(&buf[i..i + take]);
                    self.have += take;
                    i += take;
                    if self.have < want {
                        continue;
                    }
                    if self.have == 4 {
                        let len = self.len();
                        if len == 0 {
                            self.have = 0;
                            out.push(Item::Boundary { end: i });
                        } else if len > self.max_len {
                            self.state = State::Broken;
                            return;
                        }
                        continue;
                    }
                    if self.have < self.header_len() {
                        continue;
                    }
                    self.message_header_done(i, out);
                }
            }
        }
    }

    fn len(&self) -> u32 {
        u32::from_be_bytes([self.hdr[0], self.hdr[1], self.hdr[2], self.hdr[3]])
    }

    /// Bytes of a message collected in `hdr`: 4 + 1 (id), or the whole 17 of REQUEST/CANCEL.
    fn header_len(&self) -> usize {
        if self.have >= 5 && matches!(self.hdr[4], 6 | 8) && self.len() == 13 {
            17
        } else {
            5
        }
    }

    fn message_header_done(&mut self, i: usize, out: &mut Vec<Item>) {
        let len = self.len();
        let Some(kind) = Kind::from_id(self.hdr[4]) else {
            self.state = State::Broken;
            return;
        };
        if !kind.valid_len(len, self.max_len) {
            self.state = State::Broken;
            return;
        }
        if self.have == 17 {
            let be = |at: usize| {
                u32::from_be_bytes([
                    self.hdr[at],
                    self.hdr[at + 1],
                    self.hdr[at + 2],
                    self.hdr[at + 3],
                ])
            };
            out.push(Item::Request {
                start: self.hdr_start,
                block: BlockRef {
                    index: be(5),
                    begin: be(9),
                    length: be(13),
                },
                cancel: kind == Kind::Cancel,
            });
            out.push(Item::Boundary { end: i });
            self.have = 0;
            return;
        }
        self.have = 0;
        let rest = len - 1;
        if rest == 0 {
            out.push(Item::Boundary { end: i });
        } else {
            self.state = State::Body(rest);
        }
    }
}

/// 17 bytes a peer treats as nothing: INTERESTED (the subscriber is interested, or it would
/// not be requesting) and three keep-alives. A REQUEST or CANCEL the box answers becomes this.
pub const NOOP17: [u8; 17] = [0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(ih: u8) -> Vec<u8> {
        let mut h = PROTOCOL.to_vec();
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&[ih; 20]);
        h.extend_from_slice(&[9; 20]);
        h
    }

    fn request(i: u32, b: u32, l: u32) -> Vec<u8> {
        let mut m = vec![0, 0, 0, 13, 6];
        for v in [i, b, l] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        m
    }

    fn stream() -> Vec<u8> {
        let mut s = handshake(7);
        s.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
        s.extend_from_slice(&request(1, 0, 16384));
        s.extend_from_slice(&[0, 0, 0, 0]); // keep-alive
        s.extend_from_slice(&[0, 0, 0, 13, 7, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]); // piece, 4 bytes
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
            // a request split across runs has no start in the run it completes in
            for it in &b {
                if let Item::Request {
                    start: Some(st), ..
                } = it
                {
                    assert!(*st + cut >= cut);
                }
            }
            let split_req = |lo: usize| cut > lo && cut < lo + 17;
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
