//! The wire layer's TCP-in-Ethernet view and its write side (`wire::tcpframe`): checked
//! construction, option parsing, in-place rewrite with the RFC 1624 checksum update,
//! segment slicing and building from a template.
//!
//! Input: `[ctl x 16][frame ...]`
//! - ctl[0..4] seq, ctl[4..8] ack, ctl[8..10] window for the rewrite; ctl[10..14] a delta
//!   added to every SACK edge (0xffffffff: map every edge to one value, so blocks empty
//!   and the option turns into NOPs); ctl[14] a payload offset and ctl[15] a cut point.
//!
//! Checks (no panic, and):
//! - the view's payload, options area and header lie inside the frame; its layout turns
//!   back into the same view, and a layout cut short of the frame is refused;
//! - a rewrite keeps the frame's length and layout, writes what was set, and keeps a right
//!   checksum right and a wrong one wrong;
//! - a slice of the payload parses, carries those bytes at that sequence number, and has
//!   a right checksum; so does a segment built from the frame's template.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::wire::seq::SeqNum;
use peercache::wire::tcp::{TcpFlags, TcpOption};
use peercache::wire::tcpframe::{Rewrite, SegmentSpec, TcpFrame};

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (ctl, frame) = data.split_at(16);
    let Some(t) = TcpFrame::new_checked(frame) else {
        return;
    };
    let tcp = t.tcp();
    assert!(within(frame, t.payload()) && within(frame, tcp.option_bytes()));
    let at = t.layout();
    assert!(at.l3 < at.l4 && at.l4 + tcp.header_len() == at.data && at.end <= frame.len());
    assert_eq!(t.payload().len(), at.end - at.data);
    let again = TcpFrame::with_layout(frame, at, t.vlan()).expect("own layout");
    assert_eq!(again.payload(), t.payload());
    assert!(TcpFrame::with_layout(&frame[..at.end - 1], at, t.vlan()).is_none());
    for o in tcp.options() {
        if let TcpOption::Unknown { data, .. } = o {
            assert!(within(frame, data));
        }
    }
    let _ = (
        tcp.syn_options(),
        tcp.timestamps(),
        tcp.sack_blocks().count(),
        tcp.seq_len(),
    );
    let good = t.checksum_ok();

    // Rewrite.
    let (seq, ack) = (SeqNum(be32(&ctl[0..])), SeqNum(be32(&ctl[4..])));
    let win = u16::from_be_bytes([ctl[8], ctl[9]]);
    let delta = be32(&ctl[10..]);
    let payload = t.payload();
    let off = usize::from(ctl[14]) % (payload.len() + 1);
    let mut w = Rewrite::new(t);
    w.set_seq(seq);
    w.set_ack(ack);
    w.set_window(win);
    w.set_payload(off, b"\x00\x00\x00\x01\x02");
    w.map_sack(|e| {
        if delta == u32::MAX {
            SeqNum(7)
        } else {
            e + delta
        }
    });
    let out = w.finish();
    assert_eq!(out.len(), frame.len());
    let r = TcpFrame::new_checked(&out).expect("a rewritten frame parses");
    assert_eq!(r.layout(), at);
    let rt = r.tcp();
    assert_eq!((rt.seq(), rt.ack(), rt.window()), (seq, ack, win));
    assert_eq!(rt.flags(), tcp.flags());
    assert_eq!(
        r.checksum_ok(),
        good,
        "the rewrite keeps the checksum's verdict"
    );

    // Slice and build.
    let cut = usize::from(ctl[15]) % (payload.len() + 1);
    if let Some(s) = t.slice_segment(cut..payload.len(), seq) {
        let st = TcpFrame::new_checked(&s).expect("a slice parses");
        assert_eq!(st.payload(), &payload[cut..]);
        assert_eq!(st.tcp().seq(), seq);
        assert!(st.checksum_ok());
        if cut > 0 && cut < payload.len() {
            let head = t.slice_segment(0..cut, seq).expect("a head slice");
            let ht = TcpFrame::new_checked(&head).expect("a head slice parses");
            assert!(!ht.tcp().flags().fin && ht.checksum_ok());
        }
    }
    let tmpl = t.template();
    let b = tmpl.build(&SegmentSpec {
        seq,
        ack,
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window: win,
        ts: (delta & 1 == 1).then_some((delta, be32(&ctl[0..]))),
        payload: &payload[..cut],
    });
    // Empty only when the segment would not fit an IP packet.
    if !b.is_empty() {
        let bt = TcpFrame::new_checked(&b).expect("a built segment parses");
        assert_eq!(bt.payload(), &payload[..cut]);
        assert!(bt.checksum_ok());
        assert_eq!(
            (bt.src(), bt.dst(), bt.vlan()),
            (t.src(), t.dst(), t.vlan())
        );
        assert_eq!(
            bt.tcp().timestamps(),
            (delta & 1 == 1).then_some((delta, be32(&ctl[0..])))
        );
    }
    let owned = tmpl.to_owned().build(&SegmentSpec {
        seq,
        ack,
        flags: TcpFlags::ACK,
        window: 0,
        ts: None,
        payload: b"",
    });
    assert!(TcpFrame::new_checked(&owned).is_some_and(|o| o.checksum_ok()));
});
