//! Web-seed URL paths (`content::layout::locate`) against a multi-file torrent with pad
//! files and names that need percent-encoding: any path text.
//!
//! Checks: no panic; a path that names a file names one that lies inside the torrent, and
//! its percent-decoded segments are exactly the torrent's name and that file's path (no
//! `.`, `..` or empty segment ever gets through).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use peercache::content::layout::locate;
use peercache::swarm::Metainfo;

fn torrent() -> &'static Metainfo {
    static M: OnceLock<Metainfo> = OnceLock::new();
    M.get_or_init(|| {
        let files = "ld6:lengthi1000e4:pathl9:alpha.bineed4:attr1:p6:lengthi24e4:pathl4:.pad2:24eed6:lengthi2000e4:pathl3:sub15:caf\u{e9} notes.txteee";
        let info = format!(
            "d5:files{files}4:name5:multi12:piece lengthi1024e6:pieces60:{}e",
            "x".repeat(60)
        );
        Metainfo::from_info(info.as_bytes()).expect("the target's torrent")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let m = torrent();
    let Ok(span) = locate(m, path) else { return };
    assert!(span.offset + span.length <= m.total_length);
    let segs: Vec<String> = path
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
        .collect();
    assert_eq!(segs[0], m.name);
    assert_eq!(segs[1..], m.files[span.index].path[..]);
    assert!(segs.iter().all(|s| !s.is_empty() && s != "." && s != ".."));
});
