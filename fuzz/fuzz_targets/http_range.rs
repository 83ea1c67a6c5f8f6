//! The content listener's Range header parser (`content::range::parse`): any header text,
//! any representation length, any cap on the number of ranges.
//!
//! Input: 8 bytes of length (little-endian), 1 byte of `max_ranges`, then the header.
//! Checks: no panic; every range returned lies inside the representation with start <=
//! end; never more ranges than the cap; an error only as the parser documents it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::content::range::{parse, RangeError};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[8] & 0x3f);
    let max = usize::from(data[8] >> 6) * 8 + 1;
    let Ok(header) = std::str::from_utf8(&data[9..]) else {
        return;
    };
    match parse(header, len, max) {
        Ok(ranges) => {
            assert!(!ranges.is_empty() && ranges.len() <= max);
            for r in ranges {
                assert!(r.start <= r.end && r.end < len);
            }
        }
        Err(RangeError::TooMany(m)) => assert_eq!(m, max),
        Err(RangeError::Unsatisfiable(l)) => assert_eq!(l, len),
        Err(RangeError::Malformed | RangeError::OtherUnit) => {}
    }
});
