//! The resumable per-direction peer-wire parser, fed the way the reassembler feeds it:
//! contiguous chunks of arbitrary sizes and, now and then, a gap.
//!
//! Input: `[mode][nctl][ctl x nctl][stream bytes ...]`
//! - `mode` bit 0: `at_start()` (else `midstream()`); bit 1: small ParserLimits (so the
//!   caps, resync window and probe budget are reached); bit 2: hunt(true) right away.
//! - each control byte cuts the next chunk: `c < 0x40` -> c bytes, `0x40..0x80` ->
//!   `(c-0x40)*64`, `0x80..0xC0` -> `(c-0x80)*1024`; `c >= 0xC0` -> a gap of
//!   `(c-0xC0)^3` bytes (0 = 16384) before the next chunk. The rest goes in one chunk.
//!
//! Checks (no panic, and):
//! - BlockData and BlockLost of a PIECE belong to the last announced PIECE, come in order
//!   without holes (`offset` = bytes seen + lost so far), and never exceed its length;
//!   no other frame (or resync) is reported while a block is unfinished: a gap inside a
//!   block reports the lost part as BlockLost, so every block is accounted for in full;
//! - the declared block length is within MAX_BLOCK; buffered messages respect the cap;
//! - `bytes_seen` counts every fed byte and gap byte; `resyncs` counts Resynced events;
//! - once NotBitTorrent is reported the parser is dead and says nothing more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::peerwire::{Event, ParserLimits, StreamParser};
use peercache::wire::peerwire::{Message, MAX_BLOCK};

#[derive(Default)]
struct Check {
    /// (index, begin, length, bytes accounted for)
    block: Option<(u32, u32, u32, u32)>,
    resynced: u64,
    dead: bool,
    max_message_len: u32,
}

impl Check {
    fn event(&mut self, ev: Event<'_>) {
        assert!(!self.dead, "event after NotBitTorrent: {ev:?}");
        match ev {
            Event::Piece {
                index,
                begin,
                length,
            } => {
                self.open_ok();
                assert!(length > 0 && length <= MAX_BLOCK, "block length {length}");
                self.block = Some((index, begin, length, 0));
            }
            Event::BlockData {
                index,
                begin,
                offset,
                data,
            } => {
                let (i, b, len, seen) = self.block.as_mut().expect("BlockData without PIECE");
                assert_eq!((index, begin), (*i, *b), "BlockData for another block");
                assert_eq!(offset, *seen, "BlockData out of order");
                let end = offset as u64 + data.len() as u64;
                assert!(end <= *len as u64, "BlockData past block end: {end} > {len}");
                *seen = end as u32;
            }
            Event::BlockLost {
                index,
                begin,
                offset,
                len: lost,
            } => {
                let (i, b, len, seen) = self.block.as_mut().expect("BlockLost without PIECE");
                assert_eq!((index, begin), (*i, *b), "BlockLost for another block");
                assert_eq!(offset, *seen, "BlockLost out of order");
                let end = offset as u64 + lost as u64;
                assert!(end <= *len as u64, "BlockLost past block end: {end} > {len}");
                *seen = end as u32;
            }
            Event::Message(m) => {
                self.open_ok();
                match m {
                    Message::Bitfield(b) => assert!(b.len() < self.max_message_len as usize),
                    Message::Extended { payload, .. } => {
                        assert!(payload.len() + 1 < self.max_message_len as usize)
                    }
                    _ => {}
                }
            }
            Event::Handshake(_) => self.open_ok(),
            Event::Skipped { .. } => {}
            Event::Resynced { .. } => {
                self.resynced += 1;
                // Framing was lost in a header or after a gap that finished the block.
                self.open_ok();
            }
            Event::NotBitTorrent => self.dead = true,
        }
    }

    /// A new frame starts: the previous block must be complete (unless a gap broke it).
    fn open_ok(&mut self) {
        if let Some((i, b, len, seen)) = self.block {
            assert!(
                seen == len,
                "new frame inside unfinished block {i}/{b}: {seen} of {len}"
            );
        }
        self.block = None;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mode = data[0];
    let nctl = (data[1] as usize).min(data.len() - 2);
    let (ctl, mut stream) = data[2..].split_at(nctl);
    let lim = if mode & 2 != 0 {
        ParserLimits {
            max_message_len: 512,
            resync_window: 2048,
            probe_bytes: 4096,
        }
    } else {
        ParserLimits::default()
    };
    let mut p = if mode & 1 != 0 {
        StreamParser::at_start()
    } else {
        StreamParser::midstream()
    };
    if mode & 4 != 0 {
        p.hunt(true);
    }
    let mut chk = Check {
        max_message_len: lim.max_message_len,
        ..Check::default()
    };
    let mut total = 0u64;
    let feed = |p: &mut StreamParser, chk: &mut Check, chunk: &[u8]| {
        p.feed(chunk, &lim, &mut |e| chk.event(e));
        if chk.dead {
            assert!(p.is_dead(), "NotBitTorrent but parser not dead");
        }
    };
    for &c in ctl {
        if c >= 0xC0 {
            let n = match (c - 0xC0) as u64 {
                0 => 16384,
                k => k * k * k,
            };
            p.gap(n, &mut |e| chk.event(e));
            total += n;
            continue;
        }
        let n = match c {
            0..=0x3F => c as usize,
            0x40..=0x7F => (c - 0x40) as usize * 64,
            _ => (c - 0x80) as usize * 1024,
        }
        .min(stream.len());
        let (chunk, rest) = stream.split_at(n);
        stream = rest;
        total += chunk.len() as u64;
        feed(&mut p, &mut chk, chunk);
    }
    total += stream.len() as u64;
    feed(&mut p, &mut chk, stream);
    assert_eq!(p.bytes_seen, total, "bytes_seen");
    assert_eq!(p.resyncs, chk.resynced, "resyncs vs Resynced events");
    if chk.dead {
        assert!(p.is_dead());
    }
});
