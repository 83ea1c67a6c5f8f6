//! Property tests of TCP reassembly: any split, reordering and duplication of a byte stream
//! (with sequence numbers anywhere in the 32-bit space, wrapping included) reassembles to
//! exactly that stream; capture loss proven by ACKs becomes counted gaps of exact size.

use peercache::flow::tcp::{
    Budget, Chunk, ReasmCounters, ReasmLimits, Reassembler, SEGMENT_OVERHEAD,
};
use peercache::wire::seq::SeqNum;
use proptest::prelude::*;

struct Out {
    data: Vec<u8>,
    gaps: Vec<u64>,
}

#[allow(clippy::too_many_arguments)]
fn feed(
    r: &mut Reassembler,
    lim: &ReasmLimits,
    c: &mut ReasmCounters,
    b: &mut Budget,
    out: &mut Out,
    seq: u32,
    syn: bool,
    payload: &[u8],
) {
    r.segment(
        SeqNum(seq),
        syn,
        false,
        payload,
        lim,
        c,
        b,
        &mut |ch| match ch {
            Chunk::Data(d) => out.data.extend_from_slice(d),
            Chunk::Gap(n) => out.gaps.push(n),
            Chunk::Lost => unreachable!("TCP gaps have a length"),
        },
    );
}

/// Segments as (offset, len) covering the stream, from cut points.
fn segments(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut pts: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    pts.push(0);
    pts.push(len);
    pts.sort();
    pts.dedup();
    pts.windows(2).map(|w| (w[0], w[1] - w[0])).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_split_order_and_duplication_reassembles(
        stream in proptest::collection::vec(any::<u8>(), 1..4000),
        cuts in proptest::collection::vec(any::<usize>(), 0..60),
        order in proptest::collection::vec(any::<u32>(), 0..200),
        dups in proptest::collection::vec(any::<usize>(), 0..20),
        isn in prop_oneof![any::<u32>(), (u32::MAX - 3000)..=u32::MAX],
    ) {
        let lim = ReasmLimits::default();
        let mut c = ReasmCounters::default();
        let mut b = Budget::new(1 << 30);
        let mut r = Reassembler::default();
        let mut out = Out { data: Vec::new(), gaps: Vec::new() };
        let mut segs = segments(stream.len(), &cuts);
        // Duplicates, anywhere in the sequence of arrivals.
        for d in &dups {
            let s = segs[d % segs.len()];
            segs.push(s);
        }
        // A permutation driven by `order` (Fisher-Yates with the given randomness).
        for i in (1..segs.len()).rev() {
            let j = order.get(i % order.len().max(1)).copied().unwrap_or(0) as usize % (i + 1);
            segs.swap(i, j);
        }
        feed(&mut r, &lim, &mut c, &mut b, &mut out, isn, true, &[]);
        for (off, len) in &segs {
            let seq = isn.wrapping_add(1).wrapping_add(*off as u32);
            feed(&mut r, &lim, &mut c, &mut b, &mut out, seq, false, &stream[*off..off + len]);
        }
        r.flush(&mut c, &mut b, &mut |ch| match ch {
            Chunk::Data(d) => out.data.extend_from_slice(d),
            Chunk::Gap(n) => out.gaps.push(n),
        Chunk::Lost => unreachable!("TCP gaps have a length"),
        });
        prop_assert_eq!(&out.data, &stream);
        prop_assert!(out.gaps.is_empty());
        prop_assert_eq!(c.gaps, 0);
        prop_assert_eq!(c.conflicting_overlaps, 0);
        prop_assert_eq!(b.used, 0, "budget returned");
    }

    #[test]
    fn lost_segments_become_exact_gaps(
        stream in proptest::collection::vec(any::<u8>(), 200..3000),
        cuts in proptest::collection::vec(any::<usize>(), 4..40),
        lose in any::<prop::sample::Index>(),
        isn in any::<u32>(),
    ) {
        let lim = ReasmLimits::default();
        let mut c = ReasmCounters::default();
        let mut b = Budget::new(1 << 30);
        let mut r = Reassembler::default();
        let mut out = Out { data: Vec::new(), gaps: Vec::new() };
        let segs = segments(stream.len(), &cuts);
        prop_assume!(segs.len() >= 3);
        // Never the last segment: a hole at the very end has nothing after it to prove it.
        let lost = lose.index(segs.len() - 1);
        feed(&mut r, &lim, &mut c, &mut b, &mut out, isn, true, &[]);
        for (i, (off, len)) in segs.iter().enumerate() {
            let end_seq = isn.wrapping_add(1).wrapping_add((off + len) as u32);
            if i != lost {
                feed(&mut r, &lim, &mut c, &mut b, &mut out, isn.wrapping_add(1).wrapping_add(*off as u32), false, &stream[*off..off + len]);
            }
            // The receiver got everything: it acks each segment.
            r.on_ack(SeqNum(end_seq), &lim, &mut c, &mut b, &mut |ch| match ch {
                Chunk::Data(d) => out.data.extend_from_slice(d),
                Chunk::Gap(n) => out.gaps.push(n),
        Chunk::Lost => unreachable!("TCP gaps have a length"),
            });
        }
        let (loff, llen) = segs[lost];
        let mut expected = stream[..loff].to_vec();
        expected.extend_from_slice(&stream[loff + llen..]);
        prop_assert_eq!(&out.data, &expected);
        prop_assert_eq!(&out.gaps, &vec![llen as u64]);
        prop_assert_eq!((c.gaps, c.gap_bytes), (1, llen as u64));
    }
}

#[test]
fn conflicting_retransmission_keeps_first_copy_and_is_counted() {
    let lim = ReasmLimits::default();
    let mut c = ReasmCounters::default();
    let mut b = Budget::new(1 << 20);
    let mut r = Reassembler::default();
    let mut out = Out {
        data: Vec::new(),
        gaps: Vec::new(),
    };
    feed(&mut r, &lim, &mut c, &mut b, &mut out, 100, true, &[]);
    feed(
        &mut r, &lim, &mut c, &mut b, &mut out, 101, false, b"hello ",
    );
    feed(&mut r, &lim, &mut c, &mut b, &mut out, 113, false, b"!!"); // out of order
    feed(&mut r, &lim, &mut c, &mut b, &mut out, 113, false, b"??"); // conflicts with held
    feed(
        &mut r, &lim, &mut c, &mut b, &mut out, 101, false, b"HELLO ",
    ); // conflicts with delivered
    feed(
        &mut r, &lim, &mut c, &mut b, &mut out, 107, false, b"world!",
    );
    feed(
        &mut r, &lim, &mut c, &mut b, &mut out, 101, false, b"hello ",
    ); // same bytes
    assert_eq!(out.data, b"hello world!!!");
    // Overlaps: "??", "HELLO ", the last "hello ". Out of order: "!!" and "??" (both start
    // beyond the next expected byte).
    assert_eq!(
        (c.overlaps, c.conflicting_overlaps, c.out_of_order),
        (3, 2, 2)
    );
}

#[test]
fn caps_bound_memory_and_count_evictions() {
    let lim = ReasmLimits {
        max_ooo_bytes: 2000,
        max_ooo_segments: 8,
        ..Default::default()
    };
    let mut c = ReasmCounters::default();
    let mut b = Budget::new(1 << 20);
    let mut r = Reassembler::default();
    let mut out = Out {
        data: Vec::new(),
        gaps: Vec::new(),
    };
    feed(&mut r, &lim, &mut c, &mut b, &mut out, 0, true, &[]);
    // A hole at offset 0..100, then one-byte segments with holes between them (no
    // coalescing possible): the segment cap forces the holes to be given up.
    for i in 0..50u32 {
        feed(
            &mut r,
            &lim,
            &mut c,
            &mut b,
            &mut out,
            1 + 100 + 2 * i,
            false,
            &[i as u8],
        );
        assert!(r.buffered() <= 2000);
        assert!(b.used <= 2000);
    }
    // The segment cap (8) binds long before the byte cap (30 one-byte segments at 65 bytes
    // each): segments 0..8 are held, and each of the 42 later ones forces one eviction that
    // gives up the hole in front of the oldest held byte and delivers that byte.
    assert_eq!(c.evictions, 42);
    assert_eq!(c.gaps, 42, "the 100-byte hole, then 41 one-byte holes");
    assert_eq!(out.data.len(), 42);
    assert_eq!(r.buffered(), 8 * (1 + SEGMENT_OVERHEAD));
    r.flush(&mut c, &mut b, &mut |ch| match ch {
        Chunk::Data(d) => out.data.extend_from_slice(d),
        Chunk::Gap(n) => out.gaps.push(n),
        Chunk::Lost => unreachable!("TCP gaps have a length"),
    });
    // Flush delivers the 8 held bytes behind the 8 holes still in front of them.
    assert_eq!(
        out.data,
        (0..50u8).collect::<Vec<_>>(),
        "every byte that arrived is delivered once, in order"
    );
    assert_eq!(out.gaps.len(), 50);
    assert_eq!(c.gaps, 50);
    assert_eq!(out.gaps.iter().sum::<u64>(), 100 + 49);
    assert_eq!(r.buffered(), 0);
    assert_eq!(b.used, 0);
}
