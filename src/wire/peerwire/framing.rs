//! The peer-wire framing core: where the handshake, each length prefix, each message
//! header and each body begin and end in one direction's byte stream, fed in runs of any
//! size. It holds at most a handshake's worth of bytes and decides nothing about what a
//! message means: the passive parser (`crate::peerwire::stream`, which adds resync) and the
//! splice's framer (`crate::serve::framer`) drive it and judge each header themselves.
//!
//! Each [`Framing::step`] consumes a prefix of its input up to the next thing to report
//! ([`Framed`]) and says how many bytes that was, so a caller knows the stream offset of
//! every boundary.

use super::{Handshake, HANDSHAKE_LEN, PROTOCOL};

/// A message's bytes after its length prefix that a caller may ask to see at once (id,
/// then up to 12 body bytes: a REQUEST's or a PIECE header's fields).
pub const MAX_HEAD: usize = 13;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    /// Collecting a length prefix and the head of a message into `buf`.
    Header,
    /// Inside a message body: this many bytes left.
    Body(u32),
}

/// What a step reached.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// All the input went into a handshake or header that is not complete yet.
    Partial,
    /// The bytes so far do not begin with the BitTorrent protocol string (MSE, or another
    /// protocol): the core stays put; the caller gives up on the stream.
    NotHandshake,
    Handshake(Handshake<'a>),
    /// A zero length prefix: a keep-alive, a whole message.
    KeepAlive,
    /// The length prefix of a message (id included in `len`, so at least 1); its head follows.
    Prefix(u32),
    /// The start of a message: `len` from its prefix, `head` the id and as many body bytes
    /// as the caller asked for, and `body` bytes still to come (reported as `Body`; 0 when
    /// the message is complete).
    Header {
        len: u32,
        head: &'a [u8],
        body: u32,
    },
    /// Bytes of the current body; `end` when they complete the message.
    Body {
        data: &'a [u8],
        end: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Framing {
    phase: Phase,
    /// The handshake, or a message's length prefix and head, as collected so far.
    buf: [u8; HANDSHAKE_LEN],
    have: usize,
    /// Bytes of the current message's head to collect (after its id arrived).
    head: usize,
}

impl Framing {
    /// For a stream whose next byte is the first of the handshake.
    pub fn at_handshake() -> Framing {
        Framing {
            phase: Phase::Handshake,
            buf: [0; HANDSHAKE_LEN],
            have: 0,
            head: 1,
        }
    }

    /// For a stream whose next byte starts a message.
    pub fn at_message() -> Framing {
        Framing {
            phase: Phase::Header,
            ..Framing::at_handshake()
        }
    }

    /// Between messages, after the handshake: nothing of the next message read yet.
    pub fn at_boundary(&self) -> bool {
        self.phase == Phase::Header && self.have == 0
    }

    pub fn in_handshake(&self) -> bool {
        self.phase == Phase::Handshake
    }

    /// Bytes left in the current message body, when inside one.
    pub fn body_left(&self) -> Option<u32> {
        match self.phase {
            Phase::Body(left) => Some(left),
            _ => None,
        }
    }

    /// `n` bytes of the stream were lost. True when they fell inside the current body
    /// (framing holds; the message ends if they were its last bytes); false when they took
    /// a prefix, header or handshake byte or crossed the end of the body: the caller must
    /// find the framing again (and make a new core).
    pub fn skip(&mut self, n: u64) -> bool {
        match self.phase {
            Phase::Body(left) if n <= u64::from(left) => {
                let left = left - n as u32;
                self.phase = if left == 0 {
                    Phase::Header
                } else {
                    Phase::Body(left)
                };
                true
            }
            _ => false,
        }
    }

    /// Consume a prefix of `data` (non-empty) up to the next thing to report; returns how
    /// many bytes that was. When a message's id arrives, `head_len(len, id)` says how many
    /// bytes after the prefix to collect before reporting its `Header`: 1 (the id alone) up
    /// to [`MAX_HEAD`], and never more than `len`.
    pub fn step<'s>(
        &'s mut self,
        data: &'s [u8],
        head_len: impl FnOnce(u32, u8) -> usize,
    ) -> (usize, Framed<'s>) {
        match self.phase {
            Phase::Handshake => {
                let take = (HANDSHAKE_LEN - self.have).min(data.len());
                self.buf[self.have..self.have + take].copy_from_slice(&data[..take]);
                self.have += take;
                // Check the protocol string as it arrives: MSE or another protocol is
                // refused at once.
                let n = self.have.min(PROTOCOL.len());
                if self.buf[..n] != PROTOCOL[..n] {
                    return (take, Framed::NotHandshake);
                }
                if self.have < HANDSHAKE_LEN {
                    return (take, Framed::Partial);
                }
                self.have = 0;
                self.phase = Phase::Header;
                match Handshake::new_checked(&self.buf) {
                    Some(h) => (take, Framed::Handshake(h)),
                    None => (take, Framed::NotHandshake),
                }
            }
            Phase::Header => self.header(data, head_len),
            Phase::Body(left) => {
                let take = left.min(u32::try_from(data.len()).unwrap_or(u32::MAX));
                let left = left - take;
                self.phase = if left == 0 {
                    Phase::Header
                } else {
                    Phase::Body(left)
                };
                let data = &data[..take as usize];
                (
                    data.len(),
                    Framed::Body {
                        data,
                        end: left == 0,
                    },
                )
            }
        }
    }

    fn len(&self) -> u32 {
        u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
    }

    fn header<'s>(
        &'s mut self,
        data: &'s [u8],
        head_len: impl FnOnce(u32, u8) -> usize,
    ) -> (usize, Framed<'s>) {
        let mut used = 0;
        if self.have < 4 {
            let take = (4 - self.have).min(data.len());
            self.buf[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            used = take;
            if self.have < 4 {
                return (used, Framed::Partial);
            }
            let len = self.len();
            if len == 0 {
                self.have = 0;
                return (used, Framed::KeepAlive);
            }
            return (used, Framed::Prefix(len));
        }
        let len = self.len();
        if self.have == 4 {
            let Some(&id) = data.first() else {
                return (0, Framed::Partial);
            };
            self.buf[4] = id;
            self.have = 5;
            used = 1;
            let want = head_len(len, id).clamp(1, MAX_HEAD);
            self.head = want.min(usize::try_from(len).unwrap_or(MAX_HEAD));
        }
        let want = 4 + self.head;
        let take = (want - self.have).min(data.len() - used);
        self.buf[self.have..self.have + take].copy_from_slice(&data[used..used + take]);
        self.have += take;
        used += take;
        if self.have < want {
            return (used, Framed::Partial);
        }
        let head_bytes = self.have - 4;
        self.have = 0;
        let body = len - head_bytes as u32;
        self.phase = if body == 0 {
            Phase::Header
        } else {
            Phase::Body(body)
        };
        (
            used,
            Framed::Header {
                len,
                head: &self.buf[4..4 + head_bytes],
                body,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every report of a stream fed in runs of `run` bytes, with the absolute offset where
    /// each ends; bodies merged.
    fn reports(stream: &[u8], run: usize, at_hs: bool) -> Vec<(usize, String)> {
        let mut f = if at_hs {
            Framing::at_handshake()
        } else {
            Framing::at_message()
        };
        let mut out = Vec::new();
        let mut pos = 0;
        for chunk in stream.chunks(run) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let (used, r) = f.step(rest, |len, id| if id == 6 && len == 13 { 13 } else { 1 });
                assert!(used > 0 && used <= rest.len());
                pos += used;
                rest = &rest[used..];
                let s = match r {
                    Framed::Partial | Framed::Body { end: false, .. } => continue,
                    Framed::Body { end: true, .. } => "end".to_string(),
                    Framed::Header { len, head, body } => format!("hdr{len}/{}/{body}", head.len()),
                    other => format!("{other:?}").chars().take(9).collect(),
                };
                out.push((pos, s));
            }
        }
        out
    }

    #[test]
    fn same_reports_for_any_run_length() {
        let mut s = PROTOCOL.to_vec();
        s.extend_from_slice(&[0; 48]);
        s.extend_from_slice(&[0, 0, 0, 0]); // keep-alive
        s.extend_from_slice(&[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0]); // request
        s.extend_from_slice(&[0, 0, 0, 3, 9, 0x1a, 0xe1]); // port
        s.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
        let whole = reports(&s, s.len(), true);
        assert_eq!(
            whole,
            vec![
                (68, "Handshake".into()),
                (72, "KeepAlive".into()),
                (76, "Prefix(13".into()),
                (89, "hdr13/13/0".into()),
                (93, "Prefix(3)".into()),
                (94, "hdr3/1/2".into()),
                (96, "end".into()),
                (100, "Prefix(1)".into()),
                (101, "hdr1/1/0".into()),
            ]
        );
        for run in 1..s.len() {
            assert_eq!(reports(&s, run, true), whole, "run {run}");
        }
    }

    #[test]
    fn refuses_other_protocols_and_skips_bodies() {
        let mut f = Framing::at_handshake();
        assert_eq!(f.step(b"\x13Bit", |_, _| 1), (4, Framed::Partial));
        assert_eq!(f.step(b"x", |_, _| 1), (1, Framed::NotHandshake));
        let mut f = Framing::at_message();
        assert!(!f.skip(0), "a gap at a boundary loses framing");
        f.step(&[0, 0, 0, 11], |_, _| 1);
        let (used, r) = f.step(&[5, 1, 2], |_, _| 1);
        assert_eq!(
            (used, r),
            (
                1,
                Framed::Header {
                    len: 11,
                    head: &[5],
                    body: 10
                }
            )
        );
        assert!(f.skip(4));
        assert_eq!(f.body_left(), Some(6));
        assert!(!f.clone().skip(7));
        assert!(f.skip(6));
        assert!(f.at_boundary());
        // a head asked longer than the message is cut to the message
        f.step(&[0, 0, 0, 2], |_, _| 1);
        let (_, r) = f.step(&[7, 1, 2, 3], |_, _| MAX_HEAD);
        assert_eq!(
            r,
            Framed::Header {
                len: 2,
                head: &[7, 1],
                body: 0
            }
        );
        assert!(f.at_boundary());
    }
}
