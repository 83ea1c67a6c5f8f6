//! A flow key that is the same for both directions of a connection, so both halves land in
//! one table entry and on one worker.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub proto: u8,
    pub vlan: Option<u16>,
    /// The lower of the two endpoints.
    pub lo: SocketAddr,
    pub hi: SocketAddr,
}

/// Direction of a packet relative to the key: `LoToHi` when sent by `key.lo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    LoToHi = 0,
    HiToLo = 1,
}

impl Dir {
    pub fn idx(self) -> usize {
        self as usize
    }
    pub fn rev(self) -> Dir {
        match self {
            Dir::LoToHi => Dir::HiToLo,
            Dir::HiToLo => Dir::LoToHi,
        }
    }
}

impl FlowKey {
    pub fn new(proto: u8, vlan: Option<u16>, src: SocketAddr, dst: SocketAddr) -> (FlowKey, Dir) {
        if src <= dst {
            (
                FlowKey {
                    proto,
                    vlan,
                    lo: src,
                    hi: dst,
                },
                Dir::LoToHi,
            )
        } else {
            (
                FlowKey {
                    proto,
                    vlan,
                    lo: dst,
                    hi: src,
                },
                Dir::HiToLo,
            )
        }
    }

    /// The sender of packets travelling in `dir`.
    pub fn src(&self, dir: Dir) -> SocketAddr {
        match dir {
            Dir::LoToHi => self.lo,
            Dir::HiToLo => self.hi,
        }
    }

    /// Worker index for sharding. Both directions give the same value because the key is
    /// normalised; fragments are reassembled before this is asked.
    pub fn shard(&self, shards: usize) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash_fields(&mut h);
        (h.finish() % shards.max(1) as u64) as usize
    }

    /// Field by field, as `#[derive(Hash)]` did: what sharding has always used, so a flow
    /// lands on the worker it always did whatever the table's hashing does.
    fn hash_fields<H: Hasher>(&self, h: &mut H) {
        self.proto.hash(h);
        self.vlan.hash(h);
        self.lo.hash(h);
        self.hi.hash(h);
    }
}

/// The flow tables hash every key up to three times per new flow (lookup, insert, the
/// evicted one's removal), and field by field `SocketAddr` hashing is a dozen hasher calls:
/// an IPv4 key goes in as two words instead. Equal keys still hash equally (the words are
/// a function of the fields `Eq` compares); other keys hash field by field.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match (self.lo, self.hi) {
            (SocketAddr::V4(lo), SocketAddr::V4(hi)) => {
                let vlan = self.vlan.map_or(0, |v| 1 << 16 | v as u64);
                h.write_u64((u32::from(*lo.ip()) as u64) << 32 | u32::from(*hi.ip()) as u64);
                h.write_u64(
                    (lo.port() as u64) << 48
                        | (hi.port() as u64) << 32
                        | vlan << 8
                        | self.proto as u64,
                );
            }
            _ => self.hash_fields(h),
        }
    }
}

/// Symmetric shard for an IP pair only (used where ports are not known).
pub fn ip_pair_shard(a: IpAddr, b: IpAddr, shards: usize) -> usize {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (lo, hi).hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric() {
        let a: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let b: SocketAddr = "198.19.0.2:6881".parse().unwrap();
        let (k1, d1) = FlowKey::new(6, None, a, b);
        let (k2, d2) = FlowKey::new(6, None, b, a);
        assert_eq!(k1, k2);
        assert_ne!(d1, d2);
        assert_eq!(k1.shard(7), k2.shard(7));
        assert_eq!(k1.src(d1), a);
    }

    /// Sharding must not move when the table hashing changes: these values are what the
    /// derived `Hash` gave.
    #[test]
    fn shard_is_field_hash() {
        let a: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let b: SocketAddr = "198.19.0.2:6881".parse().unwrap();
        let (k, _) = FlowKey::new(6, Some(7), a, b);
        #[derive(Hash)]
        struct Derived {
            proto: u8,
            vlan: Option<u16>,
            lo: SocketAddr,
            hi: SocketAddr,
        }
        let d = Derived {
            proto: k.proto,
            vlan: k.vlan,
            lo: k.lo,
            hi: k.hi,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        d.hash(&mut h);
        for n in [2, 3, 7, 16] {
            assert_eq!(k.shard(n), (h.finish() % n as u64) as usize);
        }
    }
}
