//! Bencode decoding and the BEP 9/10/11 parsers built on it.
//!
//! Input: any bytes (an extended-message payload, a .torrent, a DHT/tracker body).
//!
//! Checks: no panic, no unbounded recursion; `decode_prefix` reports a consumed length within
//! the input; a dictionary's `raw` span is exactly the consumed bytes and decodes again to
//! the same value; tighter limits are honoured; ut_metadata `data` is the tail after the
//! dictionary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::wire::bencode::{decode_prefix, BencodeError, Limits, Value};
use peercache::wire::peerwire::{parse_ext_handshake, parse_ut_metadata, pex_added};

fn depth(v: &Value<'_>) -> usize {
    match v {
        Value::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Dict { entries, .. } => 1 + entries.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

fn count(v: &Value<'_>) -> usize {
    match v {
        Value::List(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Dict { entries, .. } => 1 + entries.iter().map(|(_, v)| count(v)).sum::<usize>(),
        _ => 1,
    }
}

fn check_raw(v: &Value<'_>) {
    if let Value::Dict { raw, .. } = v {
        let (again, used) = decode_prefix(raw, Limits::default()).expect("raw span re-decodes");
        assert_eq!(used, raw.len());
        assert_eq!(&again, v);
    }
    match v {
        Value::List(items) => items.iter().for_each(check_raw),
        Value::Dict { entries, .. } => entries.iter().for_each(|(_, v)| check_raw(v)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    match decode_prefix(data, Limits::default()) {
        Ok((v, used)) => {
            assert!(used > 0 && used <= data.len());
            if let Value::Dict { raw, .. } = &v {
                assert_eq!(*raw, &data[..used]);
            }
            assert!(depth(&v) <= Limits::default().max_depth + 1);
            check_raw(&v);
            let _ = (v.get(b"info"), v.entries().len(), v.as_int(), v.as_bytes());
        }
        Err(BencodeError::Invalid(at)) => assert!(at <= data.len()),
        Err(_) => {}
    }
    // Tight limits: whatever decodes stays within them.
    let tight = Limits {
        max_depth: 3,
        max_items: 16,
    };
    if let Ok((v, used)) = decode_prefix(data, tight) {
        assert!(used <= data.len());
        assert!(depth(&v) <= tight.max_depth + 1, "depth limit exceeded");
        assert!(count(&v) <= tight.max_items, "item limit exceeded");
    }

    if let Some(hs) = parse_ext_handshake(data) {
        let _ = (hs.ids.len(), hs.metadata_size, hs.client);
    }
    if let Some(m) = parse_ut_metadata(data) {
        let used = data.len() - m.data.len();
        assert_eq!(m.data, &data[used..]);
        let _ = (m.msg_type, m.piece, m.total_size);
    }
    let _ = pex_added(data);
});
