//! Magnet links as an operator posts them (`fetch::magnet::parse`): any text.
//!
//! Checks: no panic; a link that parses has at most `MAX_PEERS` peers, and its info-hash
//! written back as 40 hex digits parses to the same swarm with the same peers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::fetch::magnet::{parse, MAX_PEERS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = parse(text) else { return };
    assert!(m.peers.len() <= MAX_PEERS);
    let mut again = format!("magnet:?xt=urn:btih:{}", m.info_hash);
    for p in &m.peers {
        again.push_str(&format!("&x.pe={p}"));
    }
    let m2 = parse(&again).expect("a link we wrote parses");
    assert_eq!((m2.info_hash, &m2.peers), (m.info_hash, &m.peers));
});
