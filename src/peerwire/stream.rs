//! One direction of a peer-wire connection as a resumable parser: fed contiguous bytes and
//! gaps from the reassembler, it emits messages. PIECE blocks are streamed through, never
//! buffered whole; other messages are buffered up to a cap. Mid-stream and after a gap that
//! swallowed a message boundary it hunts for the next plausible frame (Suricata-style: the
//! parser reports what it consumed and waits for more rather than guessing). Where messages
//! begin and end is the wire layer's framing core (`wire::peerwire::framing`), shared with
//! the splice; what is judged, buffered, streamed or skipped, and the resync, are here.

use crate::wire::peerwire::framing::{Framed, Framing};
use crate::wire::peerwire::{self, Handshake, Kind, Message, PROTOCOL};

#[derive(Clone, Copy, Debug)]
pub struct ParserLimits {
    /// Largest non-PIECE message buffered (bitfield, extended); larger ones are skipped.
    pub max_message_len: u32,
    /// Bytes held while hunting for a frame boundary.
    pub resync_window: usize,
    /// A mid-stream flow with no plausible frame in this many bytes is not BitTorrent.
    pub probe_bytes: u64,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_message_len: 1 << 20,
            resync_window: 256 << 10,
            probe_bytes: 64 << 10,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Handshake(Handshake<'a>),
    Message(Message<'a>),
    /// A PIECE header; its `length` block bytes follow as `BlockData`.
    Piece {
        index: u32,
        begin: u32,
        length: u32,
    },
    BlockData {
        index: u32,
        begin: u32,
        offset: u32,
        data: &'a [u8],
    },
    /// A gap took bytes of the current PIECE block: they will never be seen.
    BlockLost {
        index: u32,
        begin: u32,
        offset: u32,
        len: u32,
    },
    /// A message longer than the cap (or damaged by a gap) was skipped.
    Skipped {
        kind: Kind,
    },
    /// Framing was re-found after `skipped` bytes that could not be parsed.
    Resynced {
        skipped: u64,
    },
    /// Nothing plausible within the probe budget: this is not (plain) BitTorrent.
    NotBitTorrent,
}

#[derive(Debug)]
enum State {
    /// Framing known: the core says where the handshake and each message start and end;
    /// `msg` is what becomes of the current message's body.
    Framed {
        core: Framing,
        msg: Msg,
    },
    /// Looking for the next frame boundary.
    Hunt {
        buf: Vec<u8>,
        skipped: u64,
        probing: bool,
    },
    Dead,
}

/// What to do with the body of the message being read.
#[derive(Debug)]
enum Msg {
    /// Between messages (or a message without body).
    None,
    /// Buffered whole, then parsed.
    Buffer { kind: Kind, buf: Vec<u8> },
    /// A PIECE block, streamed through.
    Block {
        index: u32,
        begin: u32,
        length: u32,
        offset: u32,
    },
    /// Passed over (unknown id, or over the cap).
    Skip,
}

impl State {
    /// At the start of a connection: a 68-byte handshake is expected.
    fn handshake() -> State {
        State::Framed {
            core: Framing::at_handshake(),
            msg: Msg::None,
        }
    }

    /// At a message boundary: nothing of the next header read yet.
    fn header() -> State {
        State::Framed {
            core: Framing::at_message(),
            msg: Msg::None,
        }
    }
}

#[derive(Debug)]
pub struct StreamParser {
    state: State,
    pub handshake_seen: bool,
    pub resyncs: u64,
    pub bytes_seen: u64,
    /// Bytes held by a resync, to be parsed from the frame it found.
    replay: Vec<u8>,
}

impl StreamParser {
    /// For a direction whose first byte is known to be the first of the connection.
    pub fn at_start() -> Self {
        StreamParser {
            state: State::handshake(),
            handshake_seen: false,
            resyncs: 0,
            bytes_seen: 0,
            replay: Vec::new(),
        }
    }

    /// For a direction picked up mid-stream: probe for framing, give up after the budget.
    pub fn midstream() -> Self {
        StreamParser {
            state: State::Hunt {
                buf: Vec::new(),
                skipped: 0,
                probing: true,
            },
            handshake_seen: false,
            resyncs: 0,
            bytes_seen: 0,
            replay: Vec::new(),
        }
    }

    pub fn is_dead(&self) -> bool {
        matches!(self.state, State::Dead)
    }

    /// Framing is known (not hunting, not dead).
    pub fn in_sync(&self) -> bool {
        !matches!(self.state, State::Hunt { .. } | State::Dead)
    }

    /// Stop parsing this direction for good (encrypted, not ours).
    pub fn kill(&mut self) {
        self.state = State::Dead;
    }

    /// Switch to hunting for framing in the bytes that follow (e.g. after an MSE exchange
    /// that may have selected plaintext).
    pub fn hunt(&mut self, probing: bool) {
        self.state = State::Hunt {
            buf: Vec::new(),
            skipped: 0,
            probing,
        };
    }

    /// Bytes of unknown number were lost (a uTP packet the capture missed): whatever
    /// message was in progress is incomplete, and the next boundary must be hunted for.
    pub fn lost<F: FnMut(Event<'_>)>(&mut self, out: &mut F) {
        match &self.state {
            State::Dead => return,
            State::Framed { core, msg } if core.body_left().is_some() => match msg {
                Msg::Block {
                    index,
                    begin,
                    length,
                    offset,
                } => out(Event::BlockLost {
                    index: *index,
                    begin: *begin,
                    offset: *offset,
                    len: length - offset,
                }),
                Msg::Buffer { kind, .. } => out(Event::Skipped { kind: *kind }),
                Msg::None | Msg::Skip => {}
            },
            _ => {}
        }
        if let State::Hunt { buf, skipped, .. } = &mut self.state {
            *skipped += buf.len() as u64;
            buf.clear();
            return;
        }
        self.lose_sync();
    }

    /// `n` bytes of this direction were lost by the capture.
    pub fn gap<F: FnMut(Event<'_>)>(&mut self, n: u64, out: &mut F) {
        self.bytes_seen += n;
        let resync = match &mut self.state {
            State::Dead => false,
            State::Hunt { skipped, buf, .. } => {
                // Bytes held no longer join up with what follows.
                *skipped += buf.len() as u64 + n;
                buf.clear();
                false
            }
            State::Framed { core, msg } => {
                let left = core.body_left().map_or(0, u64::from);
                match msg {
                    Msg::Block {
                        index,
                        begin,
                        offset,
                        ..
                    } if core.body_left().is_some() => {
                        let lost = n.min(left) as u32;
                        out(Event::BlockLost {
                            index: *index,
                            begin: *begin,
                            offset: *offset,
                            len: lost,
                        });
                        *offset += lost;
                    }
                    // The message is damaged but its length is known: skip the rest of it.
                    Msg::Buffer { kind, .. } if core.body_left().is_some() => {
                        out(Event::Skipped { kind: *kind });
                        *msg = Msg::Skip;
                    }
                    _ => {}
                }
                // Inside a body the framing holds; a gap in a header or handshake, or past
                // the body's end, loses it.
                !core.skip(n)
            }
        };
        if resync {
            self.state = State::Hunt {
                buf: Vec::new(),
                skipped: 0,
                probing: false,
            };
        }
    }

    pub fn feed<F: FnMut(Event<'_>)>(&mut self, data: &[u8], lim: &ParserLimits, out: &mut F) {
        self.bytes_seen += data.len() as u64;
        self.run(data, lim, out);
        self.drain_replay(lim, out);
    }

    fn run<F: FnMut(Event<'_>)>(&mut self, mut data: &[u8], lim: &ParserLimits, out: &mut F) {
        while !data.is_empty() {
            let used = self.step(data, lim, out);
            if used == 0 {
                // Only Dead consumes nothing: nothing more is useful.
                return;
            }
            data = &data[used..];
            if !self.replay.is_empty() {
                // A resync found a frame inside held bytes: they come before the rest of
                // `data`, so queue the rest behind them.
                self.replay.extend_from_slice(data);
                return;
            }
        }
    }

    /// Feed bytes held by a resync, iteratively.
    fn drain_replay<F: FnMut(Event<'_>)>(&mut self, lim: &ParserLimits, out: &mut F) {
        while !self.replay.is_empty() {
            let held = std::mem::take(&mut self.replay);
            self.run(&held, lim, out);
            if self.is_dead() {
                self.replay.clear();
            }
        }
    }

    /// Consume a prefix of `data`; returns how much.
    fn step<F: FnMut(Event<'_>)>(&mut self, data: &[u8], lim: &ParserLimits, out: &mut F) -> usize {
        let State::Framed { core, msg } = &mut self.state else {
            return match self.state {
                State::Dead => 0,
                _ => self.hunt_step(data, lim, out),
            };
        };
        let max = lim.max_message_len;
        // A PIECE's index and begin come with its header; of other messages the id.
        let (used, framed) = core.step(data, |len, id| {
            if id == Kind::Piece.id() && Kind::Piece.valid_len(len, max) {
                9
            } else {
                1
            }
        });
        match framed {
            Framed::Partial | Framed::Prefix(_) => {}
            Framed::NotHandshake => {
                // Not BitTorrent from its first bytes: the flow dies fast.
                out(Event::NotBitTorrent);
                self.state = State::Dead;
                return data.len();
            }
            Framed::Handshake(h) => {
                out(Event::Handshake(h));
                self.handshake_seen = true;
            }
            Framed::KeepAlive => out(Event::Message(Message::KeepAlive)),
            Framed::Header { len, head, body } => {
                *msg = Msg::None;
                match Kind::from_id(head[0]) {
                    None => {
                        // Unknown id: BEP 3 says ignore, but only a sane length lets us
                        // skip it.
                        if len <= max {
                            *msg = Msg::Skip;
                        } else {
                            self.lose_sync();
                        }
                    }
                    Some(Kind::Piece) => {
                        if head.len() < 9 {
                            // Not a valid PIECE length: the core stopped at the id.
                            self.lose_sync();
                            return used;
                        }
                        let (index, begin) = peerwire::piece_header(&head[1..]).unwrap_or((0, 0));
                        let length = len - 9;
                        out(Event::Piece {
                            index,
                            begin,
                            length,
                        });
                        *msg = Msg::Block {
                            index,
                            begin,
                            length,
                            offset: 0,
                        };
                    }
                    Some(kind) if kind.valid_len(len, max) => {
                        if body == 0 {
                            if let Some(m) = peerwire::parse_body(kind, &[]) {
                                out(Event::Message(m));
                            }
                        } else {
                            *msg = Msg::Buffer {
                                kind,
                                buf: Vec::new(),
                            };
                        }
                    }
                    Some(kind)
                        if matches!(kind, Kind::Bitfield | Kind::Extended | Kind::Hashes)
                            && len < (1 << 27) =>
                    {
                        // Over our cap but framed sanely: skip it, keep sync.
                        out(Event::Skipped { kind });
                        *msg = Msg::Skip;
                    }
                    Some(_) => self.lose_sync(),
                }
            }
            Framed::Body { data, end } => {
                match msg {
                    Msg::Buffer { kind, buf } => {
                        buf.extend_from_slice(data);
                        if end {
                            if let Some(m) = peerwire::parse_body(*kind, buf) {
                                out(Event::Message(m));
                            }
                        }
                    }
                    Msg::Block {
                        index,
                        begin,
                        offset,
                        ..
                    } => {
                        out(Event::BlockData {
                            index: *index,
                            begin: *begin,
                            offset: *offset,
                            data,
                        });
                        *offset += data.len() as u32;
                    }
                    Msg::None | Msg::Skip => {}
                }
                if end {
                    *msg = Msg::None;
                }
            }
        }
        used
    }

    fn lose_sync(&mut self) {
        self.state = State::Hunt {
            buf: Vec::new(),
            skipped: 0,
            probing: false,
        };
    }

    fn hunt_step<F: FnMut(Event<'_>)>(
        &mut self,
        data: &[u8],
        lim: &ParserLimits,
        out: &mut F,
    ) -> usize {
        let State::Hunt {
            buf,
            skipped,
            probing,
        } = &mut self.state
        else {
            return 0;
        };
        let room = lim.resync_window.saturating_sub(buf.len()).max(1);
        let take = room.min(data.len());
        buf.extend_from_slice(&data[..take]);
        match find_frame(buf, lim) {
            Found::At(p, hs) => {
                let skipped_total = *skipped + p as u64;
                let rest = buf.split_off(p);
                self.resyncs += 1;
                out(Event::Resynced {
                    skipped: skipped_total,
                });
                self.state = if hs {
                    State::handshake()
                } else {
                    State::header()
                };
                // The held bytes go through the framed states next, from `feed`'s loop: a
                // replay that loses sync again must not recurse (a peer controls the depth).
                self.replay = rest;
            }
            Found::NeedMore(keep_from) => {
                if keep_from > 0 {
                    *skipped += keep_from as u64;
                    buf.drain(..keep_from);
                }
                if *probing && *skipped + buf.len() as u64 > lim.probe_bytes {
                    out(Event::NotBitTorrent);
                    self.state = State::Dead;
                    return take;
                }
                if buf.len() >= lim.resync_window {
                    // Nothing found in a full window: drop the older half and go on.
                    let half = buf.len() / 2;
                    *skipped += half as u64;
                    buf.drain(..half);
                }
            }
        }
        take
    }
}

enum Found {
    /// A frame (or a handshake when the flag is set) starts at this offset.
    At(usize, bool),
    /// None yet; positions before this offset can never start one.
    NeedMore(usize),
}

/// Is there a plausible message header at `p`? Some(end of that message) if so, None if
/// not, Err(()) if more bytes are needed to say.
fn header_at(buf: &[u8], p: usize, lim: &ParserLimits) -> Result<Option<usize>, ()> {
    let h = buf.get(p..p + 5).ok_or(())?;
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let Some(kind) = Kind::from_id(h[4]) else {
        return Ok(None);
    };
    if len == 0 || !kind.valid_len(len, lim.max_message_len) {
        return Ok(None);
    }
    Ok(Some(p + 4 + len as usize))
}

/// Where the next frame starts. A candidate counts when it is a handshake, a PIECE header
/// with a block-aligned offset (blocks are 16 KiB aligned in every client), a message
/// whose successor is also a plausible message, or one that ends exactly where the data
/// ends.
fn find_frame(buf: &[u8], lim: &ParserLimits) -> Found {
    let mut p = 0;
    while p + 5 <= buf.len() {
        if buf[p] == 19 {
            let n = (buf.len() - p).min(20);
            if buf[p..p + n] == PROTOCOL[..n] {
                if n == 20 {
                    return Found::At(p, true);
                }
                return Found::NeedMore(p);
            }
        }
        match header_at(buf, p, lim) {
            Ok(Some(end)) => {
                if buf[p + 4] == 7 {
                    let Some(h) = buf.get(p + 5..p + 13) else {
                        return Found::NeedMore(p);
                    };
                    let begin = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                    let index = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                    if begin % 16384 == 0 && index < (1 << 24) {
                        return Found::At(p, false);
                    }
                } else {
                    match header_at(buf, end, lim) {
                        Ok(Some(_)) => return Found::At(p, false),
                        Ok(None) => {}
                        Err(()) if end == buf.len() => {
                            // Exact fit: the message ends where the data so far ends, as
                            // small messages do at a segment's end. Random bytes fit with
                            // odds of about 2^-32 per position.
                            return Found::At(p, false);
                        }
                        Err(()) => {
                            // The successor is not here yet; wait unless the candidate is
                            // too long to ever confirm within the window.
                            if end - p < lim.resync_window / 2 {
                                return Found::NeedMore(p);
                            }
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(()) => return Found::NeedMore(p),
        }
        p += 1;
    }
    Found::NeedMore(p.min(buf.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(id);
        v.extend_from_slice(payload);
        v
    }

    fn piece(index: u32, begin: u32, block: &[u8]) -> Vec<u8> {
        let mut p = index.to_be_bytes().to_vec();
        p.extend_from_slice(&begin.to_be_bytes());
        p.extend_from_slice(block);
        msg(7, &p)
    }

    fn collect(p: &mut StreamParser, chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let lim = ParserLimits::default();
        let mut names = Vec::new();
        let mut data = Vec::new();
        for c in chunks {
            p.feed(c, &lim, &mut |e| match e {
                Event::Message(m) => names.push(format!("{m:?}")),
                Event::Piece { index, .. } => names.push(format!("piece{index}")),
                Event::BlockData { data: d, .. } => data.extend_from_slice(d),
                Event::Handshake(_) => names.push("hs".into()),
                Event::Resynced { skipped } => names.push(format!("resync{skipped}")),
                _ => {}
            });
        }
        (names, data)
    }

    #[test]
    fn byte_at_a_time() {
        let mut s = Vec::from(&PROTOCOL[..]);
        s.extend_from_slice(&[0u8; 48]);
        s.extend(msg(2, &[]));
        s.extend(piece(3, 16384, &[9u8; 100]));
        s.extend(msg(4, &[0, 0, 0, 3]));
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        let (names, data) = collect(&mut StreamParser::at_start(), &chunks);
        assert_eq!(names, vec!["hs", "Interested", "piece3", "Have(3)"]);
        assert_eq!(data, vec![9u8; 100]);
    }

    #[test]
    fn midstream_finds_piece_boundary() {
        let mut s = vec![0xAAu8; 37];
        s.extend(piece(1, 32768, &[1u8; 50]));
        s.extend(msg(4, &[0, 0, 0, 1]));
        let (names, data) = collect(&mut StreamParser::midstream(), &[&s]);
        assert_eq!(names, vec!["resync37", "piece1", "Have(1)"]);
        assert_eq!(data.len(), 50);
    }

    #[test]
    fn gap_inside_block_keeps_framing() {
        let lim = ParserLimits::default();
        let s = piece(0, 0, &[5u8; 100]);
        let mut p = StreamParser::at_start();
        p.state = State::header();
        let mut events = 0;
        p.feed(&s[..50], &lim, &mut |_| events += 1);
        p.gap(30, &mut |_| {});
        let (names, data) = collect(&mut p, &[&s[80..], &msg(1, &[])]);
        assert_eq!(names, vec!["Unchoke"]);
        assert_eq!(data.len(), 100 + 13 - 80);
    }

    /// A stream built to lose sync right after every resync (HAVE, HAVE, then a HAVE with a
    /// wrong length) must not recurse per resync: a peer controls how many there are.
    #[test]
    fn resync_chains_do_not_recurse() {
        let mut unit = Vec::new();
        unit.extend(msg(4, &[0, 0, 0, 1]));
        unit.extend(msg(4, &[0, 0, 0, 1]));
        unit.extend_from_slice(&[0, 0, 0, 7, 4]);
        let mut s = vec![0u8, 0];
        for _ in 0..11_000 {
            s.extend_from_slice(&unit);
        }
        // On a small stack: recursion one frame per resync would overflow it.
        let h = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let mut p = StreamParser::midstream();
                let mut haves = 0u64;
                p.feed(&s, &ParserLimits::default(), &mut |e| {
                    if let Event::Message(Message::Have(_)) = e {
                        haves += 1
                    }
                });
                (haves, p.resyncs)
            })
            .unwrap();
        let (haves, resyncs) = h.join().expect("parser thread");
        assert!(resyncs > 10_000, "{resyncs}");
        assert!(haves >= 2 * 10_000, "{haves}");
    }

    /// A message with a length that fits no kind but can be passed over (here an empty
    /// BITFIELD: prefix 1, id only) is skipped, and what follows it in the same run is
    /// parsed. (Before the framing core was shared, an empty skip ended the run there and
    /// the bytes after it were never parsed.)
    #[test]
    fn empty_skip_keeps_parsing_the_run() {
        let mut s = msg(5, &[]);
        s.extend(msg(4, &[0, 0, 0, 2]));
        let mut p = StreamParser::at_start();
        p.state = State::header();
        let lim = ParserLimits::default();
        let mut ev = Vec::new();
        p.feed(&s, &lim, &mut |e| ev.push(format!("{e:?}")));
        assert_eq!(ev, vec!["Skipped { kind: Bitfield }", "Message(Have(2))"]);
        assert!(p.in_sync());
    }

    #[test]
    fn not_bittorrent() {
        let mut p = StreamParser::at_start();
        let mut dead = false;
        p.feed(b"GET / HTTP/1.1\r\n", &ParserLimits::default(), &mut |e| {
            dead |= e == Event::NotBitTorrent
        });
        assert!(dead && p.is_dead());
    }
}
