//! TCP (RFC 9293): a checked view over a segment (header and payload), its flags and
//! options, the checksum check, and `TcpRepr` to emit a header. The engine's decoder
//! (`wire::link`) and the splice (`wire::tcpframe`) both read segments through
//! [`TcpPacket`], so there is one idea of what a TCP header is.

use std::net::IpAddr;

use super::checksum;
use super::seq::SeqNum;

/// Header length without options.
pub const HEADER_LEN: usize = 20;
/// Longest header: data offset 15 words.
pub const MAX_HEADER_LEN: usize = 60;

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMPS: u8 = 8;
/// RFC 7323 §2.3: larger shifts are treated as 14.
const MAX_WSCALE: u8 = 14;

/// The control bits of byte 13. Fields, not methods, so a decoded segment reads as
/// `seg.flags.syn`; [`TcpFlags::bits`] / [`TcpFlags::from_bits`] convert to the wire byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    pub fin: bool,
    pub syn: bool,
    pub rst: bool,
    pub psh: bool,
    pub ack: bool,
    pub urg: bool,
    pub ece: bool,
    pub cwr: bool,
}

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags::from_bits(0x01);
    pub const SYN: TcpFlags = TcpFlags::from_bits(0x02);
    pub const RST: TcpFlags = TcpFlags::from_bits(0x04);
    pub const PSH: TcpFlags = TcpFlags::from_bits(0x08);
    pub const ACK: TcpFlags = TcpFlags::from_bits(0x10);

    pub const fn from_bits(b: u8) -> TcpFlags {
        TcpFlags {
            fin: b & 0x01 != 0,
            syn: b & 0x02 != 0,
            rst: b & 0x04 != 0,
            psh: b & 0x08 != 0,
            ack: b & 0x10 != 0,
            urg: b & 0x20 != 0,
            ece: b & 0x40 != 0,
            cwr: b & 0x80 != 0,
        }
    }

    pub const fn bits(self) -> u8 {
        (self.fin as u8)
            | (self.syn as u8) << 1
            | (self.rst as u8) << 2
            | (self.psh as u8) << 3
            | (self.ack as u8) << 4
            | (self.urg as u8) << 5
            | (self.ece as u8) << 6
            | (self.cwr as u8) << 7
    }

    /// Every flag set in `other` is set here.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.bits() & other.bits() == other.bits()
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, o: TcpFlags) -> TcpFlags {
        TcpFlags::from_bits(self.bits() | o.bits())
    }
}

/// One option of the header. Known kinds with a length their RFC does not give are
/// `Unknown`, so a reader matching `Mss(_)` never sees a malformed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    /// SACK blocks (RFC 2018): left and right edges, 8 bytes a block.
    Sack(SackBlocks<'a>),
    Timestamps {
        val: u32,
        ecr: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// The blocks of a SACK option, each `(left, right)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SackBlocks<'a>(&'a [u8]);

impl<'a> SackBlocks<'a> {
    pub fn iter(&self) -> impl Iterator<Item = (SeqNum, SeqNum)> + 'a {
        self.0
            .chunks_exact(8)
            .map(|b| (SeqNum(be32(&b[..4])), SeqNum(be32(&b[4..]))))
    }
}

fn be32(b: &[u8]) -> u32 {
    b.iter().take(4).fold(0, |a, &x| a << 8 | u32::from(x))
}

/// Every well-formed option of an option area, as (kind, offset of the option in the area,
/// its data). Stops at END or at the first malformed length (RFC 9293 §3.1: the rest
/// cannot be parsed); NOPs are skipped.
pub(super) fn raw_options(area: &[u8]) -> impl Iterator<Item = (u8, usize, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || loop {
        let kind = *area.get(at)?;
        match kind {
            OPT_END => return None,
            OPT_NOP => at += 1,
            _ => {
                let len = usize::from(*area.get(at + 1)?);
                let data = area
                    .get(at + 2..at.checked_add(len)?)
                    .filter(|_| len >= 2)?;
                let start = at;
                at += len;
                return Some((kind, start, data));
            }
        }
    })
}

pub(super) fn is_sack(kind: u8) -> bool {
    kind == OPT_SACK
}

fn option(kind: u8, data: &[u8]) -> TcpOption<'_> {
    match (kind, data.len()) {
        (OPT_MSS, 2) => TcpOption::Mss(u16::from_be_bytes([data[0], data[1]])),
        (OPT_WSCALE, 1) => TcpOption::WindowScale(data[0]),
        (OPT_SACK_PERMITTED, 0) => TcpOption::SackPermitted,
        (OPT_SACK, n) if n % 8 == 0 => TcpOption::Sack(SackBlocks(data)),
        (OPT_TIMESTAMPS, 8) => TcpOption::Timestamps {
            val: be32(&data[..4]),
            ecr: be32(&data[4..]),
        },
        _ => TcpOption::Unknown { kind, data },
    }
}

/// Options a SYN announces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    pub mss: Option<u16>,
    /// Window scale shift, capped at 14 (RFC 7323 §2.3).
    pub wscale: Option<u8>,
    pub timestamps: bool,
}

/// A TCP segment: header (options included) and payload. Only [`TcpPacket::new_checked`]
/// makes one, after which no accessor can index out of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket<'a> {
    buf: &'a [u8],
    /// The fixed header, as an array: its fields are read without a bounds check each (the
    /// engine reads them for every frame).
    head: &'a [u8; HEADER_LEN],
    header_len: usize,
}

impl<'a> TcpPacket<'a> {
    /// None unless `buf` holds a whole header: 20 bytes at least, a data offset of 5 words
    /// or more and all of it present. Everything after the header is payload.
    pub fn new_checked(buf: &'a [u8]) -> Option<TcpPacket<'a>> {
        let head = buf.first_chunk::<HEADER_LEN>()?;
        let header_len = usize::from(head[12] >> 4) * 4;
        if header_len < HEADER_LEN || header_len > buf.len() {
            return None;
        }
        Some(TcpPacket {
            buf,
            head,
            header_len,
        })
    }

    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.head[at], self.head[at + 1]])
    }

    fn be32(&self, at: usize) -> u32 {
        let h = self.head;
        u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
    }

    pub fn src_port(&self) -> u16 {
        self.be16(0)
    }
    pub fn dst_port(&self) -> u16 {
        self.be16(2)
    }
    pub fn seq(&self) -> SeqNum {
        SeqNum(self.be32(4))
    }
    pub fn ack(&self) -> SeqNum {
        SeqNum(self.be32(8))
    }
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags::from_bits(self.head[13])
    }
    pub fn window(&self) -> u16 {
        self.be16(14)
    }
    /// Header and payload, as given to `new_checked`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// The option area (may contain padding).
    pub fn option_bytes(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..self.header_len]
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..]
    }

    /// Sequence space the segment occupies: payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        let f = self.flags();
        self.payload().len() as u32 + u32::from(f.syn) + u32::from(f.fin)
    }

    /// The options, in order; see [`TcpOption`] for what a malformed one becomes.
    pub fn options(&self) -> impl Iterator<Item = TcpOption<'a>> {
        raw_options(self.option_bytes()).map(|(kind, _, data)| option(kind, data))
    }

    pub fn syn_options(&self) -> SynOptions {
        let mut o = SynOptions::default();
        for opt in self.options() {
            match opt {
                TcpOption::Mss(m) => o.mss = Some(m),
                TcpOption::WindowScale(w) => o.wscale = Some(w.min(MAX_WSCALE)),
                TcpOption::Timestamps { .. } => o.timestamps = true,
                _ => {}
            }
        }
        o
    }

    /// (TSval, TSecr) of the first timestamps option.
    pub fn timestamps(&self) -> Option<(u32, u32)> {
        self.options().find_map(|o| match o {
            TcpOption::Timestamps { val, ecr } => Some((val, ecr)),
            _ => None,
        })
    }

    /// SACK blocks of every SACK option.
    pub fn sack_blocks(&self) -> impl Iterator<Item = (SeqNum, SeqNum)> + 'a {
        self.options()
            .filter_map(|o| match o {
                TcpOption::Sack(b) => Some(b),
                _ => None,
            })
            .flat_map(|b| b.iter())
    }

    /// Whether the checksum is right for a segment between these addresses.
    pub fn checksum_ok(&self, src: IpAddr, dst: IpAddr) -> bool {
        checksum::pseudo_header(src, dst, checksum::PROTO_TCP, self.buf.len())
            .is_some_and(|s| s.add_bytes(self.buf).verifies())
    }

    /// The decoded fields the engine works with.
    pub fn segment(&self) -> TcpSegment<'a> {
        TcpSegment {
            src_port: self.src_port(),
            dst_port: self.dst_port(),
            seq: self.seq(),
            ack: self.ack(),
            flags: self.flags(),
            window: self.window(),
            payload: self.payload(),
        }
    }
}

/// A decoded segment, by value: what the engine tracks per frame.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: TcpFlags,
    pub window: u16,
    pub payload: &'a [u8],
}

/// Option bytes to emit, padded to whole words by [`TcpRepr::emit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionBytes {
    buf: [u8; MAX_HEADER_LEN - HEADER_LEN],
    len: usize,
}

impl Default for OptionBytes {
    fn default() -> OptionBytes {
        OptionBytes::new()
    }
}

impl OptionBytes {
    pub fn new() -> OptionBytes {
        OptionBytes {
            buf: [0; MAX_HEADER_LEN - HEADER_LEN],
            len: 0,
        }
    }

    fn push(mut self, bytes: &[u8]) -> OptionBytes {
        // A header has room for 40 option bytes; the builders below use at most 16.
        let end = (self.len + bytes.len()).min(self.buf.len());
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
        self
    }

    pub fn mss(self, mss: u16) -> OptionBytes {
        let m = mss.to_be_bytes();
        self.push(&[OPT_MSS, 4, m[0], m[1]])
    }

    /// Timestamps, NOP-aligned as Linux sends them.
    pub fn timestamps(self, val: u32, ecr: u32) -> OptionBytes {
        let (v, e) = (val.to_be_bytes(), ecr.to_be_bytes());
        self.push(&[OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10])
            .push(&v)
            .push(&e)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Header length these options make, padded to words.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.len.div_ceil(4) * 4
    }
}

/// A TCP header to emit.
#[derive(Clone, Copy, Debug)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: TcpFlags,
    pub window: u16,
    pub options: OptionBytes,
}

impl TcpRepr {
    pub fn header_len(&self) -> usize {
        self.options.header_len()
    }

    /// Append header and payload to `out`, checksummed for `src` -> `dst`. None (nothing
    /// written) when the segment is too long for an IP packet or the families differ.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let hl = self.header_len();
        let pseudo = checksum::pseudo_header(src, dst, checksum::PROTO_TCP, hl + payload.len())?;
        let start = out.len();
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.0.to_be_bytes());
        out.extend_from_slice(&self.ack.0.to_be_bytes());
        out.push(((hl / 4) as u8) << 4);
        out.push(self.flags.bits());
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        out.extend_from_slice(self.options.as_bytes());
        out.resize(start + hl, OPT_END);
        out.extend_from_slice(payload);
        let ck = pseudo.add_bytes(&out[start..]).field();
        out[start + 16..start + 18].copy_from_slice(&ck);
        Some(())
    }
}

/// Offset of the checksum field in the header.
pub(super) const CHECKSUM_AT: usize = 16;
pub(super) const SEQ_AT: usize = 4;
pub(super) const ACK_AT: usize = 8;
pub(super) const FLAGS_AT: usize = 13;
pub(super) const WINDOW_AT: usize = 14;
pub(super) const NOP: u8 = OPT_NOP;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn seg(opts: OptionBytes, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        TcpRepr {
            src_port: 50000,
            dst_port: 6881,
            seq: SeqNum(1000),
            ack: SeqNum(77),
            flags,
            window: 512,
            options: opts,
        }
        .emit(
            Ipv4Addr::new(198, 18, 0, 2).into(),
            Ipv4Addr::new(198, 19, 0, 2).into(),
            payload,
            &mut v,
        )
        .unwrap();
        v
    }

    #[test]
    fn flags_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(TcpFlags::from_bits(b).bits(), b);
        }
        let f = TcpFlags::ACK | TcpFlags::PSH;
        assert!(f.ack && f.psh && !f.syn);
        assert!(f.contains(TcpFlags::ACK) && !f.contains(TcpFlags::SYN | TcpFlags::ACK));
    }

    #[test]
    fn emit_then_view() {
        let s = seg(
            OptionBytes::new().mss(1460).timestamps(5, 6),
            TcpFlags::SYN,
            b"",
        );
        let p = TcpPacket::new_checked(&s).unwrap();
        assert_eq!(p.header_len(), 36);
        assert_eq!((p.src_port(), p.dst_port()), (50000, 6881));
        assert_eq!(
            (p.seq(), p.ack(), p.window()),
            (SeqNum(1000), SeqNum(77), 512)
        );
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!(p.seq_len(), 1);
        assert_eq!(
            p.syn_options(),
            SynOptions {
                mss: Some(1460),
                wscale: None,
                timestamps: true
            }
        );
        assert_eq!(p.timestamps(), Some((5, 6)));
        assert!(p.checksum_ok(
            Ipv4Addr::new(198, 18, 0, 2).into(),
            Ipv4Addr::new(198, 19, 0, 2).into()
        ));
        assert!(!p.checksum_ok(
            Ipv4Addr::new(198, 18, 0, 3).into(),
            Ipv4Addr::new(198, 19, 0, 2).into()
        ));
    }

    #[test]
    fn options_parse_and_stop() {
        // NOP, wscale 20 (capped), SACK-permitted, SACK one block, bad-length MSS, END.
        let area = [1, 3, 3, 20, 4, 2, 5, 10, 0, 0, 0, 1, 0, 0, 0, 9, 2, 3, 7, 0];
        let mut s = seg(OptionBytes::new(), TcpFlags::SYN, b"");
        s.splice(20..20, area);
        s[12] = ((20 + area.len()) as u8 / 4) << 4;
        let p = TcpPacket::new_checked(&s).unwrap();
        let opts: Vec<_> = p.options().collect();
        assert_eq!(opts.len(), 4);
        assert_eq!(opts[0], TcpOption::WindowScale(20));
        assert_eq!(opts[1], TcpOption::SackPermitted);
        assert_eq!(
            p.sack_blocks().collect::<Vec<_>>(),
            vec![(SeqNum(1), SeqNum(9))]
        );
        assert_eq!(
            opts[3],
            TcpOption::Unknown {
                kind: 2,
                data: &[7]
            }
        );
        assert_eq!(p.syn_options().wscale, Some(14));
        // a length running past the area ends the walk
        let bad = [2u8, 9, 0, 0];
        assert_eq!(raw_options(&bad).count(), 0);
        // length 0 or 1 is malformed
        assert_eq!(raw_options(&[8u8, 1, 0, 0]).count(), 0);
    }

    #[test]
    fn refuses_short_headers() {
        let s = seg(OptionBytes::new(), TcpFlags::ACK, b"abc");
        assert!(TcpPacket::new_checked(&s[..19]).is_none());
        let mut bad = s.clone();
        bad[12] = 4 << 4;
        assert!(TcpPacket::new_checked(&bad).is_none());
        bad[12] = 15 << 4;
        assert!(TcpPacket::new_checked(&bad).is_none());
        assert_eq!(TcpPacket::new_checked(&s).unwrap().payload(), b"abc");
    }
}
