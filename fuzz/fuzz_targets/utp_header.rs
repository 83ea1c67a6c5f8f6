//! BEP 29 uTP header view: `wire::utp::UtpPacket::new_checked` on a raw UDP payload.
//!
//! Input: the UDP payload itself.
//!
//! Checks: no panic; when a packet is returned, the input is at least `HEADER_LEN` (20)
//! bytes, the payload is a suffix of the input (it ends where the input ends and starts at
//! or after byte 20), the selective-ack mask (if any) is a non-empty sub-slice lying between
//! the header and the payload, the fields are the bytes at their offsets, packets that never
//! carry data (STATE, SYN, RESET) have none, and version/type come from byte 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::wire::utp::{UtpPacket, UtpType, HEADER_LEN};

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fuzz_target!(|data: &[u8]| {
    let Some(p) = UtpPacket::new_checked(data) else {
        return;
    };
    assert!(data.len() >= HEADER_LEN, "accepted a {}-byte packet", data.len());
    assert!(within(data, p.payload), "payload is not inside the input");
    let start = p.payload.as_ptr() as usize - data.as_ptr() as usize;
    assert_eq!(start + p.payload.len(), data.len(), "payload is not a suffix");
    assert!(start >= HEADER_LEN, "payload overlaps the header");
    assert_eq!(p.payload, &data[start..]);
    if let Some(s) = p.sack {
        assert!(!s.is_empty(), "empty selective ack accepted");
        assert!(within(&data[HEADER_LEN..start], s), "sack outside the extensions");
    }
    assert_eq!(data[0] & 0x0f, 1, "version");
    let t = match p.kind {
        UtpType::Data => 0,
        UtpType::Fin => 1,
        UtpType::State => 2,
        UtpType::Reset => 3,
        UtpType::Syn => 4,
    };
    assert_eq!(data[0] >> 4, t, "type");
    if matches!(p.kind, UtpType::State | UtpType::Syn | UtpType::Reset) {
        assert!(p.payload.is_empty(), "{:?} with a payload", p.kind);
    }
    assert_eq!(p.conn_id, u16::from_be_bytes([data[2], data[3]]));
    assert_eq!(p.wnd, u32::from_be_bytes([data[12], data[13], data[14], data[15]]));
    assert_eq!(p.seq, u16::from_be_bytes([data[16], data[17]]));
    assert_eq!(p.ack, u16::from_be_bytes([data[18], data[19]]));
    // Extension chain: walking it again must end exactly at the payload.
    let (mut ext, mut at, mut n) = (data[1], HEADER_LEN, 0);
    while ext != 0 {
        n += 1;
        assert!(n <= 4 && ext <= 4, "extension chain not bounded");
        let len = data[at + 1] as usize;
        ext = data[at];
        at += 2 + len;
    }
    assert_eq!(at, start, "extension chain does not end at the payload");
});
