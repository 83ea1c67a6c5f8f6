//! L2-L4 decoding of one captured frame, for every link type.
//!
//! Input: `[link][flags][proto][frame ...]`
//! - `link % 5` picks the LinkType (0 Ethernet, 1 LinuxSll, 2 LinuxSll2, 3 RawIp, 4 Null);
//! - `flags % 4` picks orig_len: 0 = frame length (normal), 1 = shorter (snaplen larger than
//!   the frame; legal), 2 = one more (truncated capture), 3 = u32::MAX;
//! - `proto` is the IP protocol given to `transport_from_payload`, which is also run over
//!   the frame bytes directly (as the defragmenter would hand them over).
//!
//! Checks: no panic; a truncated frame is refused as `Truncated`; every borrowed payload is a
//! sub-slice of the input (the views are zero-copy).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::wire::link::{self, DecodeError, Decoded, LinkType, Transport};

const LINKS: [LinkType; 5] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Null,
];

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fn check_transport(outer: &[u8], t: &Transport<'_>) {
    match t {
        Transport::Tcp(s) => assert!(within(outer, s.payload), "tcp payload outside frame"),
        Transport::Udp(u) => assert!(within(outer, u.payload), "udp payload outside frame"),
        Transport::Other(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let link = LINKS[data[0] as usize % LINKS.len()];
    let frame = &data[3..];
    let len = frame.len() as u32;
    let orig_len = match data[1] % 4 {
        0 => len,
        1 => len / 2,
        2 => len.saturating_add(1),
        _ => u32::MAX,
    };
    let res = link::decode(link, frame, orig_len);
    if (frame.len() as u64) < orig_len as u64 {
        assert_eq!(res.err(), Some(DecodeError::Truncated));
    }
    match res {
        Ok(Decoded::Packet(p)) => {
            check_transport(frame, &p.transport);
            let _ = (p.src, p.dst, p.vlan);
        }
        Ok(Decoded::Fragment(f)) => {
            assert!(within(frame, f.data), "fragment data outside frame");
            // A first fragment carries the transport header: read it as reassembly would.
            if f.offset == 0 {
                if let Ok(t) = link::transport_from_payload(f.protocol, f.data) {
                    check_transport(f.data, &t);
                }
            }
        }
        Ok(Decoded::NonIp) => {}
        Err(e) => {
            let _ = e.as_str();
        }
    }
    for proto in [data[2], 6, 17] {
        if let Ok(t) = link::transport_from_payload(proto, frame) {
            check_transport(frame, &t);
        }
    }
});
