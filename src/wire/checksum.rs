//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624), for IPv4 headers
//! and the TCP/UDP pseudo-header sums. One place computes it for every header the wire
//! layer builds or rewrites.
//!
//! The sum runs over 16-bit words in the machine's byte order (etherparse's u64 word
//! summing, which is the fast path); a one's-complement sum is byte-order independent
//! (RFC 1071 §2(B)), so a result written back with `to_ne_bytes` lands in network order.
//! Nothing outside this module sees that representation: fields go in and out as bytes.

use std::net::IpAddr;

use etherparse::checksum::u64_16bit_word::{add_slice, ones_complement};

/// IP protocol numbers the pseudo-header carries.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A running one's-complement sum, not yet folded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum(u64);

impl Sum {
    pub fn new() -> Sum {
        Sum(0)
    }

    /// Add `bytes` as 16-bit words; an odd last byte is padded with zero, so only the last
    /// slice of a sum may have odd length.
    pub fn add_bytes(self, bytes: &[u8]) -> Sum {
        Sum(add_slice(self.0, bytes))
    }

    /// The checksum field value for the data summed (its checksum field taken as zero).
    pub fn field(self) -> [u8; 2] {
        ones_complement(self.0).to_ne_bytes()
    }

    /// Whether data summed *with* its checksum field verifies.
    pub fn verifies(self) -> bool {
        ones_complement(self.0) == 0
    }

    /// The folded sum (not complemented), as RFC 1624 uses it.
    fn folded(self) -> u16 {
        !ones_complement(self.0)
    }
}

/// The TCP/UDP pseudo-header sum (RFC 793 / RFC 8200 §8.1) for `len` bytes of transport
/// header and payload. None for mixed address families, or a length no IP packet has.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> Option<Sum> {
    let len = u32::try_from(len).ok()?;
    Some(match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(len).ok()?.to_be_bytes();
            Sum::new()
                .add_bytes(&s.octets())
                .add_bytes(&d.octets())
                .add_bytes(&[0, protocol, len[0], len[1]])
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => Sum::new()
            .add_bytes(&s.octets())
            .add_bytes(&d.octets())
            .add_bytes(&len.to_be_bytes())
            .add_bytes(&[0, 0, 0, protocol]),
        _ => return None,
    })
}

/// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), with m and m' the sums of the whole region
/// before and after a rewrite (both include the old checksum field, which cancels). A
/// region that arrived with a wrong checksum keeps a wrong one.
pub fn update(old_field: [u8; 2], before: &[u8], after: &[u8]) -> [u8; 2] {
    let old_ck = u16::from_ne_bytes(old_field);
    let m = Sum::new().add_bytes(before).folded();
    let m2 = Sum::new().add_bytes(after).folded();
    ones_complement(u64::from(!old_ck) + u64::from(!m) + u64::from(m2)).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded); checksum 220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Sum::new().add_bytes(&data).field(), [0x22, 0x0d]);
        let mut with = data.to_vec();
        with.extend_from_slice(&[0x22, 0x0d]);
        assert!(Sum::new().add_bytes(&with).verifies());
    }

    #[test]
    fn update_matches_full_recompute() {
        let mut a = vec![
            0x45, 0, 0, 40, 1, 2, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let ck = Sum::new().add_bytes(&a).field();
        a[10..12].copy_from_slice(&ck);
        let mut b = a.clone();
        b[4] = 0x99;
        b[15] = 7;
        let ck2 = update(ck, &a, &b);
        b[10..12].copy_from_slice(&ck2);
        assert!(Sum::new().add_bytes(&b).verifies());
    }
}
