//! Request traces: every subscriber REQUEST a box saw (`--requests-out`), or a synthetic
//! workload (`peercache sim workload`), in one compact binary format that the simulator
//! reads back (`peercache sim run`). Streaming both ways: the writer keeps only the ids it
//! has handed out, the reader only the definitions it has read.
//!
//! Format (docs/sim.md), all integers LEB128 varints unless said otherwise:
//!
//! ```text
//! header   "PCTRACE1"                                  8 bytes
//! record   tag (1 byte) then its fields:
//!   'S'    swarm: info-hash (20 bytes), piece_length, total_length (0: unknown)
//!          -> the next swarm id (0, 1, 2, ... in order of definition)
//!   'C'    client: address family (1 byte: 4 or 6), address (4 or 16 bytes)
//!          -> the next client id
//!   'R'    request: dt_us (microseconds since the previous request), swarm id,
//!          client id, piece, begin, length
//! ```
//!
//! A definition always comes before the first request that uses it. Time starts at the
//! first request (its dt_us is 0) and never goes backwards (a capture's clock stepping back
//! is written as dt 0).

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::IpAddr;

use thiserror::Error;

use crate::wire::infohash::InfoHash;

pub const MAGIC: &[u8; 8] = b"PCTRACE1";

/// One REQUEST, as the simulator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Microseconds since the trace's first request.
    pub time_us: u64,
    pub swarm: u32,
    pub client: u32,
    pub piece: u32,
    pub begin: u32,
    pub length: u32,
}

/// A swarm the trace defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swarm {
    pub info_hash: InfoHash,
    /// 0 when the box did not know the metainfo.
    pub piece_length: u32,
    pub total_length: u64,
}

/// What a trace holds, item by item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Swarm(u32, Swarm),
    Client(u32, IpAddr),
    Request(Request),
}

#[derive(Debug, Error)]
pub enum TraceError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a request trace (no PCTRACE1 header)")]
    NotATrace,
    #[error("record {0}: unknown tag {1:#04x}")]
    BadTag(u64, u8),
    #[error("record {0}: cut short")]
    Truncated(u64),
    #[error("record {0}: varint too long")]
    BadVarint(u64),
    #[error("record {0}: {1} id {2} used before it was defined")]
    Undefined(u64, &'static str, u64),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Writes a trace; give it the swarm's metainfo facts when known.
pub struct TraceWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    swarms: HashMap<InfoHash, u32>,
    clients: HashMap<IpAddr, u32>,
    last_us: Option<u64>,
    requests: u64,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(mut out: W) -> io::Result<TraceWriter<W>> {
        out.write_all(MAGIC)?;
        Ok(TraceWriter {
            out,
            buf: Vec::with_capacity(64 << 10),
            swarms: HashMap::new(),
            clients: HashMap::new(),
            last_us: None,
            requests: 0,
        })
    }

    /// One REQUEST at `time_us` (any epoch; only differences are kept).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        time_us: u64,
        info_hash: &InfoHash,
        piece_length: u32,
        total_length: u64,
        client: IpAddr,
        piece: u32,
        begin: u32,
        length: u32,
    ) -> io::Result<()> {
        let swarm = match self.swarms.get(info_hash) {
            Some(&id) => id,
            None => {
                let id = self.swarms.len() as u32;
                self.buf.push(b'S');
                self.buf.extend_from_slice(info_hash.as_bytes());
                put_varint(&mut self.buf, u64::from(piece_length));
                put_varint(&mut self.buf, total_length);
                self.swarms.insert(*info_hash, id);
                id
            }
        };
        let client = match self.clients.get(&client) {
            Some(&id) => id,
            None => {
                let id = self.clients.len() as u32;
                self.buf.push(b'C');
                match client {
                    IpAddr::V4(a) => {
                        self.buf.push(4);
                        self.buf.extend_from_slice(&a.octets());
                    }
                    IpAddr::V6(a) => {
                        self.buf.push(6);
                        self.buf.extend_from_slice(&a.octets());
                    }
                }
                self.clients.insert(client, id);
                id
            }
        };
        let dt = match self.last_us {
            Some(l) => time_us.saturating_sub(l),
            None => 0,
        };
        self.last_us = Some(self.last_us.map_or(time_us, |l| l.max(time_us)));
        self.buf.push(b'R');
        for v in [
            dt,
            u64::from(swarm),
            u64::from(client),
            u64::from(piece),
            u64::from(begin),
            u64::from(length),
        ] {
            put_varint(&mut self.buf, v);
        }
        self.requests += 1;
        if self.buf.len() >= 60 << 10 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Write what is buffered and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a trace item by item.
pub struct TraceReader<R: BufRead> {
    input: R,
    swarms: u32,
    clients: u32,
    time_us: u64,
    record: u64,
}

impl<R: BufRead> TraceReader<R> {
    pub fn new(mut input: R) -> Result<TraceReader<R>, TraceError> {
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| TraceError::NotATrace)?;
        if &magic != MAGIC {
            return Err(TraceError::NotATrace);
        }
        Ok(TraceReader {
            input,
            swarms: 0,
            clients: 0,
            time_us: 0,
            record: 0,
        })
    }

    fn byte(&mut self) -> Result<u8, TraceError> {
        let mut b = [0u8; 1];
        self.input
            .read_exact(&mut b)
            .map_err(|_| TraceError::Truncated(self.record))?;
        Ok(b[0])
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], TraceError> {
        let mut b = [0u8; N];
        self.input
            .read_exact(&mut b)
            .map_err(|_| TraceError::Truncated(self.record))?;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, TraceError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(TraceError::BadVarint(self.record))
    }

    fn u32(&mut self) -> Result<u32, TraceError> {
        u32::try_from(self.varint()?).map_err(|_| TraceError::BadVarint(self.record))
    }

    /// The next item; None at the end of the trace.
    pub fn next_item(&mut self) -> Result<Option<Item>, TraceError> {
        let tag = match self.input.fill_buf()?.first() {
            None => return Ok(None),
            Some(&t) => t,
        };
        self.input.consume(1);
        self.record += 1;
        match tag {
            b'S' => {
                let ih = InfoHash::from(self.bytes::<20>()?);
                let piece_length = self.u32()?;
                let total_length = self.varint()?;
                let id = self.swarms;
                self.swarms += 1;
                Ok(Some(Item::Swarm(
                    id,
                    Swarm {
                        info_hash: ih,
                        piece_length,
                        total_length,
                    },
                )))
            }
            b'C' => {
                let addr = match self.byte()? {
                    4 => IpAddr::from(self.bytes::<4>()?),
                    6 => IpAddr::from(self.bytes::<16>()?),
                    f => return Err(TraceError::BadTag(self.record, f)),
                };
                let id = self.clients;
                self.clients += 1;
                Ok(Some(Item::Client(id, addr)))
            }
            b'R' => {
                let dt = self.varint()?;
                let swarm = self.u32()?;
                let client = self.u32()?;
                if swarm >= self.swarms {
                    return Err(TraceError::Undefined(self.record, "swarm", swarm.into()));
                }
                if client >= self.clients {
                    return Err(TraceError::Undefined(self.record, "client", client.into()));
                }
                self.time_us = self.time_us.saturating_add(dt);
                Ok(Some(Item::Request(Request {
                    time_us: self.time_us,
                    swarm,
                    client,
                    piece: self.u32()?,
                    begin: self.u32()?,
                    length: self.u32()?,
                })))
            }
            t => Err(TraceError::BadTag(self.record, t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let a = InfoHash::from([7; 20]);
        let b = InfoHash::from([9; 20]);
        let s1: IpAddr = "198.18.0.2".parse().unwrap();
        let s2: IpAddr = "2001:db8::2".parse().unwrap();
        let mut w = TraceWriter::new(Vec::new()).unwrap();
        w.request(1_000_000, &a, 65536, 1 << 20, s1, 3, 16384, 16384)
            .unwrap();
        w.request(1_000_500, &b, 0, 0, s2, 0, 0, 16384).unwrap();
        // The clock stepping back is written as no time passing.
        w.request(999_000, &a, 65536, 1 << 20, s2, 1 << 20, 0, 1)
            .unwrap();
        assert_eq!(w.requests(), 3);
        let bytes = w.finish().unwrap();
        let mut r = TraceReader::new(&bytes[..]).unwrap();
        let mut items = Vec::new();
        while let Some(i) = r.next_item().unwrap() {
            items.push(i);
        }
        let req = |time_us, swarm, client, piece, begin, length| {
            Item::Request(Request {
                time_us,
                swarm,
                client,
                piece,
                begin,
                length,
            })
        };
        let swarm = |info_hash, piece_length, total_length| Swarm {
            info_hash,
            piece_length,
            total_length,
        };
        assert_eq!(
            items,
            vec![
                Item::Swarm(0, swarm(a, 65536, 1 << 20)),
                Item::Client(0, s1),
                req(0, 0, 0, 3, 16384, 16384),
                Item::Swarm(1, swarm(b, 0, 0)),
                Item::Client(1, s2),
                req(500, 1, 1, 0, 0, 16384),
                req(500, 0, 1, 1 << 20, 0, 1),
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_a_trace() {
        assert!(matches!(
            TraceReader::new(&b"PCAP"[..]),
            Err(TraceError::NotATrace)
        ));
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[b'R', 0, 0, 0, 0, 0, 0]);
        let mut r = TraceReader::new(&bad[..]).unwrap();
        assert!(matches!(
            r.next_item(),
            Err(TraceError::Undefined(1, "swarm", 0))
        ));
        let mut cut = MAGIC.to_vec();
        cut.extend_from_slice(&[b'S', 1, 2]);
        let mut r = TraceReader::new(&cut[..]).unwrap();
        assert!(matches!(r.next_item(), Err(TraceError::Truncated(1))));
    }
}
