//! S's acknowledgement of a uTP connection (its `ack_nr` and selective-ack bitmask, in S's
//! numbering) carried back into R's numbering, pure.
//!
//! BEP 29: `ack_nr` is the last packet received in order; bit `i` of the mask (bytes in
//! order, least significant bit first) says packet `ack_nr + 2 + i` was received. Packets
//! the box inserted are not R's: their bits leave the mask and the rest close up. When S's
//! only holes are inserted packets, R's view of the ack moves on over the R packets S does
//! have (R must not see a hole that is not its own), so the cumulative ack is recomputed
//! while walking the mask. The mask keeps its length: nothing toward R changes length.

use crate::serve::seqmap::{Back, SeqMap, SeqSpace, UtpSeq};

/// S's ack and mask in R's numbering, and which of the inserted packets S reports having.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// R's last packet S has, with all before it.
    pub ack: UtpSeq,
    /// The mask relative to `ack` (same length as S's; empty when S sent none).
    pub mask: Vec<u8>,
    /// Inserted packets S's mask says it received (S's numbering).
    pub inserted_received: Vec<UtpSeq>,
}

fn bit(mask: &[u8], i: usize) -> bool {
    mask.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Map S's `ack` (S's numbering) and selective-ack `mask` (empty: none) into R's numbering.
/// `floor`: the highest ack already passed to R. The mapped ack never falls below it: once
/// the walk over the mask told R that S has its packets to some point, that stays true,
/// while a later mask (which covers only so many packets past S's cumulative ack) may no
/// longer reach them. A uTP sender drops a packet whose ack is more than a few packets
/// behind the highest it has seen (libtorrent: 3), with the data it carries.
pub fn map_ack(map: &SeqMap<UtpSeq>, ack: UtpSeq, mask: &[u8], floor: Option<UtpSeq>) -> Mapped {
    let mut r_ack = map.back_last(ack);
    if let Some(f) = floor {
        if f.dist(r_ack) > 0 {
            r_ack = f;
        }
    }
    let bits = mask.len() * 8;
    // R packets S received past the cumulative ack, and inserted ones.
    let mut received: Vec<UtpSeq> = Vec::new();
    let mut inserted_received = Vec::new();
    // While everything so far is either received or inserted, the cumulative ack moves on.
    let mut contiguous = true;
    for i in 0..bits {
        let s = ack.plus(2 + i as u32);
        let got = bit(mask, i);
        match map.classify(s) {
            Back::Inserted { .. } => {
                if got {
                    inserted_received.push(s);
                }
            }
            Back::Original(r) => {
                if r.dist(r_ack) <= 0 {
                    // At or below the floor: R knows S has it.
                } else if contiguous && got && r == r_ack.plus(1) {
                    r_ack = r;
                } else {
                    contiguous = false;
                    if got {
                        received.push(r);
                    }
                }
            }
        }
    }
    // (S's packet ack+1 is missing by definition; when it is R's, the first R packet in
    // the mask is past r_ack+1 and the walk stops at once.)
    let mut out = vec![0u8; mask.len()];
    for r in received {
        let d = r.dist(r_ack.plus(2));
        if d >= 0 && (d as usize) < bits {
            let d = d as usize;
            out[d / 8] |= 1 << (d % 8);
        }
    }
    Mapped {
        ack: r_ack,
        mask: out,
        inserted_received,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u16) -> UtpSeq {
        UtpSeq(n)
    }

    #[test]
    fn identity_without_insertions() {
        let m = SeqMap::new();
        let r = map_ack(&m, u(10), &[0b0000_0101, 0, 0, 0], None);
        assert_eq!(r.ack, u(10));
        assert_eq!(r.mask, vec![0b0000_0101, 0, 0, 0]);
        assert!(r.inserted_received.is_empty());
    }

    #[test]
    fn acks_inside_inserted_packets_map_to_the_last_r_packet_before_them() {
        // 3 packets inserted in front of R's packet 100: S numbers them 100, 101, 102, and
        // R's 100 is S's 103.
        let mut m = SeqMap::new();
        m.insert(u(100), 3);
        for (s, r) in [
            (99, 99),
            (100, 99),
            (101, 99),
            (102, 99),
            (103, 100),
            (104, 101),
        ] {
            assert_eq!(map_ack(&m, u(s), &[], None).ack, u(r), "S acks {s}");
        }
    }

    #[test]
    fn inserted_bits_leave_the_mask_and_the_rest_close_up() {
        let mut m = SeqMap::new();
        m.insert(u(100), 3);
        // S has R's 98 and before (ack 98); S's 100 is missing (R's 99); it has S's 101
        // (inserted, 2nd), 103 (R's 100) and 105 (R's 102). Bits: i=0 -> S 100.
        let mask = [0b0010_1010u8, 0, 0, 0];
        let r = map_ack(&m, u(98), &mask, None);
        assert_eq!(r.ack, u(98));
        // R numbering relative to 98: R 100 is bit 0, R 102 is bit 2.
        assert_eq!(r.mask, vec![0b0000_0101, 0, 0, 0]);
        assert_eq!(r.inserted_received, vec![u(101)]);
    }

    #[test]
    fn holes_that_are_only_inserted_packets_do_not_hold_r_back() {
        let mut m = SeqMap::new();
        m.insert(u(100), 3);
        // S acked 99 (R's 99); inserted 100 missing; has inserted 101, 102 and R's 100, 101.
        let r = map_ack(&m, u(99), &[0b0000_1111], None);
        // R's view: S has everything to R's 101.
        assert_eq!(r.ack, u(101));
        assert_eq!(r.mask, vec![0]);
        assert_eq!(r.inserted_received, vec![u(101), u(102)]);
    }

    #[test]
    fn never_below_what_r_was_told() {
        let mut m = SeqMap::new();
        m.insert(u(100), 3);
        // Earlier the walk told R that S has R's 101; now S's mask no longer reaches that
        // far (ack 99, nothing set): R still hears 101, and bits at or below it are gone.
        let r = map_ack(&m, u(99), &[0], Some(u(101)));
        assert_eq!((r.ack, r.mask), (u(101), vec![0]));
        // R's 103 (S's 106, bit 5) is reported relative to 101: bit 0.
        let r = map_ack(&m, u(99), &[0b0010_0000], Some(u(101)));
        assert_eq!((r.ack, r.mask), (u(101), vec![0b0000_0001]));
        // a floor below the mapped ack changes nothing
        assert_eq!(map_ack(&m, u(105), &[], Some(u(50))).ack, u(102));
    }

    #[test]
    fn wraps_around_zero() {
        let mut m = SeqMap::new();
        m.insert(u(65534), 4); // S: 65534, 65535, 0, 1 inserted; R's 65534 is S's 2
        assert_eq!(map_ack(&m, u(0), &[], None).ack, u(65533));
        assert_eq!(map_ack(&m, u(2), &[], None).ack, u(65534));
        assert_eq!(map_ack(&m, u(3), &[], None).ack, u(65535));
        // acked R's 65533 (S's 65533); has S's 2 and 4 (R's 65534, 0)
        let r = map_ack(&m, u(65533), &[0b0010_0010], None);
        // bits: i=0 -> S 65535 (inserted, not got), i=1 -> S 0 (inserted, got)... S's 2 is
        // i=3. Set bits are i=1 (inserted) and i=5 (S 4 = R 0).
        assert_eq!(r.inserted_received, vec![u(0)]);
        assert_eq!(r.ack, u(65533));
        // R 0 relative to R 65533 + 2 = 65535: bit 1
        assert_eq!(r.mask, vec![0b0000_0010]);
    }
}
