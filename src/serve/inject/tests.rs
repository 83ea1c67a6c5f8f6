//! The injector alone: queue accounting, window, segmenting, acks, retransmission timing,
//! giving up, and the deadline that replaces a fixed tick.

use etherparse::PacketBuilder;

use super::*;
use crate::wire::tcpframe::TcpFrame;

fn template() -> Template<Vec<u8>> {
    let b = PacketBuilder::ethernet2([3; 6], [2; 6])
        .ipv4([198, 19, 0, 2], [198, 18, 0, 2], 64)
        .tcp(6881, 50_000, 5000, 1000)
        .ack(1000);
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    TcpFrame::new_checked(&f).unwrap().template().to_owned()
}

fn toward(template: &Template<Vec<u8>>) -> Toward<'_> {
    Toward {
        template,
        ack: SeqNum(1000),
        window: 1000,
        ts: None,
    }
}

fn block(i: u32, len: u32) -> BlockRef {
    BlockRef {
        index: i,
        begin: 0,
        length: len,
    }
}

/// Sequence numbers and payload lengths of the frames in `out` (drained).
fn sent(out: &mut Vec<Emit>) -> Vec<(u32, usize)> {
    out.drain(..)
        .map(|e| match e {
            Emit::Frame(Port::Subscriber, f) => {
                let t = TcpFrame::new_checked(&f).unwrap();
                assert!(t.checksum_ok());
                (t.tcp().seq().0, t.payload().len())
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn queue_accounting_answer_cancel_and_evict() {
    let (mut inj, mut all, mut c) = (Injector::default(), 0usize, ServeCounters::default());
    inj.answer(block(1, 100), vec![1; 100], 2, &mut all, &mut c);
    inj.answer(block(2, 50), vec![2; 50], 2, &mut all, &mut c);
    assert_eq!((inj.queued(), all, c.answered_evicted), (150, 150, 0));
    // a third answered block pushes the first out of the remembered ones (counted)
    inj.answer(block(3, 10), vec![3; 10], 2, &mut all, &mut c);
    assert_eq!(c.answered_evicted, 1);
    // so a CANCEL of it is not ours; one of block 2 is, and drops it from the queue
    assert!(!inj.cancel(block(1, 100), &mut all));
    assert!(inj.cancel(block(2, 50), &mut all));
    assert_eq!((inj.queued(), all), (110, 110));
    all += 1000; // another connection's
    inj.release(&mut all);
    assert_eq!((inj.queued(), all), (0, 1000));
}

#[test]
fn window_segments_acks_and_retransmission() {
    let tmpl = template();
    let to = toward(&tmpl);
    let (mut inj, mut all, mut c) = (Injector::default(), 0usize, ServeCounters::default());
    let mut out = Vec::new();
    // no ack from S yet: no window, nothing fits
    inj.answer(block(0, 1000), vec![7; 1000], 8, &mut all, &mut c);
    inj.answer(block(1, 1000), vec![8; 1000], 8, &mut all, &mut c);
    assert!(!inj.room_at(SeqNum(5000)));
    inj.on_ack(
        0,
        SeqNum(5000),
        1500,
        true,
        Some(&to),
        3,
        &mut all,
        &mut c,
        &mut out,
    );
    assert!(inj.room_at(SeqNum(5000)));
    // only the first PIECE (13 + 1000 bytes) fits in 1500
    let (bytes, blocks, payload) = inj.take_fitting(SeqNum(5000), &mut all);
    assert_eq!((bytes.len(), blocks, payload), (1013, 1, 1000));
    assert_eq!(&bytes[..5], &[0, 0, 3, 241, 7]);
    assert_eq!(all, 2013, "the header is charged too");
    assert!(!inj.room_at(SeqNum(5000 + 1013)));
    assert_eq!(inj.deadline(), None);
    inj.send(10, SeqNum(5000), &bytes, 600, 200, &to, &mut c, &mut out);
    assert_eq!(sent(&mut out), vec![(5000, 600), (5600, 413)]);
    assert_eq!(c.injected_segments, 2);
    assert_eq!(inj.deadline(), Some(200_010));
    // S acks the first segment: it is released, the second still due at 200 ms
    inj.on_ack(
        50,
        SeqNum(5600),
        1500,
        true,
        Some(&to),
        3,
        &mut all,
        &mut c,
        &mut out,
    );
    assert_eq!(all, 2013 - 600);
    inj.retransmit_due(200_009, Some(&to), 3, &mut all, &mut c, &mut out);
    assert!(out.is_empty());
    inj.retransmit_due(200_010, Some(&to), 3, &mut all, &mut c, &mut out);
    assert_eq!(sent(&mut out), vec![(5600, 413)]);
    // the timeout doubled from the retransmission
    assert_eq!(inj.deadline(), Some(200_010 + 400_000));
    assert_eq!((c.retransmitted_segments, c.retransmitted_bytes), (1, 413));
    // three duplicate acks: sent again at once (its send time set to 0: due once the clock
    // is past the timeout)
    for _ in 0..3 {
        inj.on_ack(
            1_000_000,
            SeqNum(5600),
            1500,
            true,
            Some(&to),
            3,
            &mut all,
            &mut c,
            &mut out,
        );
    }
    assert_eq!(sent(&mut out), vec![(5600, 413)]);
    // all acked: nothing left to do
    inj.on_ack(
        1_000_100,
        SeqNum(6013),
        1500,
        true,
        Some(&to),
        3,
        &mut all,
        &mut c,
        &mut out,
    );
    assert!(inj.all_acked());
    assert_eq!((inj.deadline(), all), (None, 1000));
}

#[test]
fn gives_up_after_max_retransmits() {
    let tmpl = template();
    let to = toward(&tmpl);
    let (mut inj, mut all, mut c) = (Injector::default(), 0usize, ServeCounters::default());
    let mut out = Vec::new();
    inj.answer(block(0, 100), vec![7; 100], 8, &mut all, &mut c);
    inj.on_ack(
        0,
        SeqNum(5000),
        65_535,
        true,
        Some(&to),
        1,
        &mut all,
        &mut c,
        &mut out,
    );
    let (bytes, _, _) = inj.take_fitting(SeqNum(5000), &mut all);
    inj.send(0, SeqNum(5000), &bytes, 1460, 200, &to, &mut c, &mut out);
    out.clear();
    // without headers to build from, nothing is sent and nothing given up
    inj.retransmit_due(10_000_000, None, 1, &mut all, &mut c, &mut out);
    assert!(out.is_empty());
    assert_eq!(inj.deadline(), Some(200_000));
    // one retransmission allowed: at 200 ms; at 600 ms it is given up and freed
    let mut now = 0;
    while let Some(at) = inj.deadline() {
        assert!(at > now, "the deadline moves on after each timeout");
        now = at;
        inj.retransmit_due(now, Some(&to), 1, &mut all, &mut c, &mut out);
    }
    assert_eq!(now, 600_000);
    assert_eq!((c.retransmitted_segments, c.retransmits_abandoned), (1, 1));
    assert_eq!((inj.queued(), all), (0, 0));
}
