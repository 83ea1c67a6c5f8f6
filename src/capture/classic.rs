//! Classic pcap files read directly, in large reads. libpcap reads files through stdio's
//! 4 KiB buffer: a 272 MiB capture took about 70,000 `read` calls, a good part of a replay's
//! time. This reader takes 1 MiB at a time and copies each record once. It accepts only what
//! it reads exactly as libpcap would (format 2.3 and later, either byte order, micro- or
//! nanosecond timestamps, link types whose file value is the one the engine knows); for
//! anything else (pcapng, modified pcap, other link types) [`super::PcapFile`] uses libpcap.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

/// libpcap's largest accepted record (MAXIMUM_SNAPLEN): a larger length is a corrupt file.
const MAX_RECORD: u32 = 262_144;
const READ_BUFFER: usize = 1 << 20;

/// The parts of a classic pcap file header the reader needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Fields are big-endian (the file was written on such a machine).
    pub big_endian: bool,
    pub nanos: bool,
    pub linktype: u32,
    /// Records longer than this are cut to it (libpcap does, for files whose records
    /// exceed the snapshot length they declare); 0 or absurd values mean the maximum.
    pub snapshot: u32,
}

impl Header {
    /// The 24-byte file header, when this reader can take the file.
    pub fn parse(b: &[u8; 24]) -> Option<Header> {
        let (big_endian, nanos) = match b[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            _ => return None,
        };
        let u16_at = |i: usize| {
            let v = [b[i], b[i + 1]];
            if big_endian {
                u16::from_be_bytes(v)
            } else {
                u16::from_le_bytes(v)
            }
        };
        let (major, minor) = (u16_at(4), u16_at(6));
        // Before 2.3 the two length fields were the other way round; libpcap copes.
        if major != 2 || minor < 3 {
            return None;
        }
        // The top bits carry FCS information (LT_LINKTYPE in libpcap).
        let linktype = word([b[20], b[21], b[22], b[23]], big_endian) & 0x03ff_ffff;
        let snaplen = word([b[16], b[17], b[18], b[19]], big_endian);
        let snapshot = if snaplen == 0 || snaplen > MAX_RECORD {
            MAX_RECORD
        } else {
            snaplen
        };
        match linktype {
            0 | 1 | 101 | 108 | 113 | 228 | 229 | 276 => Some(Header {
                big_endian,
                nanos,
                linktype,
                snapshot,
            }),
            _ => None,
        }
    }

    /// A 16-byte record header: (timestamp in microseconds, captured length, wire length).
    pub fn record(&self, r: &[u8; 16]) -> (u64, u32, u32) {
        let w = |i: usize| word([r[i], r[i + 1], r[i + 2], r[i + 3]], self.big_endian);
        let frac = if self.nanos { w(4) / 1000 } else { w(4) };
        let ts = u64::from(w(0)) * 1_000_000 + u64::from(frac);
        (ts, w(8), w(12))
    }
}

fn word(b: [u8; 4], big_endian: bool) -> u32 {
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// One record: timestamp in microseconds since the epoch, captured bytes, wire length.
pub struct Record<'a> {
    pub ts_micros: u64,
    pub data: &'a [u8],
    pub orig_len: u32,
}

pub struct Reader<R: Read = File> {
    input: BufReader<R>,
    header: Header,
    /// A record that straddles two reads is put together here.
    data: Vec<u8>,
    /// Bytes of the read buffer lent out as the last record, consumed on the next call.
    lent: usize,
}

/// What went wrong reading a record, in libpcap's words.
#[derive(Debug)]
pub enum RecordError {
    Io(io::Error),
    Truncated {
        what: &'static str,
        wanted: u32,
        got: usize,
    },
    TooLong {
        len: u32,
        snapshot: u32,
    },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Io(e) => write!(f, "{e}"),
            RecordError::Truncated { what, wanted, got } => write!(
                f,
                "truncated dump file; tried to read {wanted} {what} bytes, only got {got}"
            ),
            RecordError::TooLong { len, snapshot } => write!(
                f,
                "invalid packet capture length {len}, bigger than snaplen of {snapshot}"
            ),
        }
    }
}

impl<R: Read> Reader<R> {
    /// The input positioned after its header, or None when libpcap should read it.
    pub fn open(mut file: R) -> io::Result<Option<Reader<R>>> {
        let mut h = [0u8; 24];
        if read_full(&mut file, &mut h)? < h.len() {
            return Ok(None);
        }
        Ok(Header::parse(&h).map(|header| Reader {
            input: BufReader::with_capacity(READ_BUFFER, file),
            header,
            data: Vec::new(),
            lent: 0,
        }))
    }

    pub fn linktype(&self) -> u32 {
        self.header.linktype
    }

    /// The next record; None at the end. A record wholly inside the read buffer is lent
    /// from there (no copy); one that straddles two reads is copied together.
    pub fn read_record(&mut self) -> Result<Option<Record<'_>>, RecordError> {
        self.input.consume(std::mem::take(&mut self.lent));
        if self.input.buffer().is_empty() {
            self.input.fill_buf().map_err(RecordError::Io)?;
        }
        let buf = self.input.buffer();
        if let Some(h) = buf.get(..16) {
            let mut head = [0u8; 16];
            head.copy_from_slice(h);
            let (ts, caplen, len) = self.header.record(&head);
            let end = 16 + caplen.min(MAX_RECORD + 1) as usize;
            if caplen <= MAX_RECORD && buf.len() >= end {
                self.lent = end;
                let keep = end.min(16 + self.header.snapshot as usize);
                return Ok(Some(Record {
                    ts_micros: ts,
                    data: &self.input.buffer()[16..keep],
                    orig_len: len,
                }));
            }
        }
        self.read_copied()
    }

    fn read_copied(&mut self) -> Result<Option<Record<'_>>, RecordError> {
        let mut r = [0u8; 16];
        match read_full(&mut self.input, &mut r).map_err(RecordError::Io)? {
            0 => return Ok(None),
            16 => {}
            got => {
                return Err(RecordError::Truncated {
                    what: "header",
                    wanted: 16,
                    got,
                })
            }
        }
        let (ts, caplen, len) = self.header.record(&r);
        if caplen > MAX_RECORD {
            return Err(RecordError::TooLong {
                len: caplen,
                snapshot: self.header.snapshot,
            });
        }
        self.data.resize(caplen as usize, 0);
        let got = read_full(&mut self.input, &mut self.data).map_err(RecordError::Io)?;
        if got < self.data.len() {
            return Err(RecordError::Truncated {
                what: "captured",
                wanted: caplen,
                got,
            });
        }
        // Past the declared snapshot length: the rest of the record is dropped.
        self.data.truncate(self.header.snapshot as usize);
        Ok(Some(Record {
            ts_micros: ts,
            data: &self.data,
            orig_len: len,
        }))
    }
}

/// Reads until `buf` is full or the input ends; how many bytes it got.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
