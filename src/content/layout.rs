//! The web seed's view of a swarm (BEP 19): which file a URL names, where that file lies in
//! the torrent's bytes, and the .torrent the box hands out with itself as the web seed.
//! Names are matched exactly against the metainfo; nothing from a URL ever reaches a
//! filesystem path.

use crate::swarm::Metainfo;

/// A file of the torrent: where its bytes lie among the torrent's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Index in the metainfo's file list (part of the file's ETag).
    pub index: usize,
    pub offset: u64,
    pub length: u64,
    /// A BEP 47 pad file: zeros.
    pub pad: bool,
}

/// Why a web-seed path names no file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// `.`, `..`, an empty segment, an encoded `/` or NUL, or not UTF-8: refused (400)
    /// without looking further.
    Unsafe,
    /// Well-formed, but not a file of this torrent (404).
    NoSuchFile,
}

/// Percent-decode one URL path segment; refuse what could mean anything but a name.
fn segment(raw: &str) -> Result<String, PathError> {
    let s = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::Unsafe)?;
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']) {
        return Err(PathError::Unsafe);
    }
    Ok(s.into_owned())
}

/// The file `raw_path` names (the URL path after `/ws/{info-hash}/`, still
/// percent-encoded): `name` for a single-file torrent, `name/dir/.../file` otherwise.
pub fn locate(m: &Metainfo, raw_path: &str) -> Result<FileSpan, PathError> {
    let segs = raw_path
        .split('/')
        .map(segment)
        .collect::<Result<Vec<_>, _>>()?;
    let Some((first, rest)) = segs.split_first() else {
        return Err(PathError::NoSuchFile);
    };
    if *first != m.name {
        return Err(PathError::NoSuchFile);
    }
    let mut offset = 0u64;
    for (index, f) in m.files.iter().enumerate() {
        let hit = if m.single_file {
            rest.is_empty()
        } else {
            f.path.as_slice() == rest
        };
        if hit {
            return Ok(FileSpan {
                index,
                offset,
                length: f.length,
                pad: f.pad,
            });
        }
        offset += f.length;
    }
    Err(PathError::NoSuchFile)
}

/// The pieces that hold torrent bytes `start..end` (end exclusive, non-empty).
pub fn pieces_of(m: &Metainfo, start: u64, end: u64) -> std::ops::RangeInclusive<u32> {
    let first = (start / m.piece_length) as u32;
    let last = ((end.max(start + 1) - 1) / m.piece_length) as u32;
    first..=last
}

/// A .torrent for the swarm naming `web_seed` (the URL of `/ws/{info-hash}/`) as its only
/// source: the info dictionary byte for byte (so the info-hash is the same) and `url-list`.
pub fn torrent_with_web_seed(m: &Metainfo, web_seed: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(m.info.len() + web_seed.len() + 40);
    // Keys in sorted order, as bencoding requires: "info" < "url-list".
    t.extend_from_slice(b"d4:info");
    t.extend_from_slice(&m.info);
    t.extend_from_slice(b"8:url-listl");
    t.extend_from_slice(format!("{}:", web_seed.len()).as_bytes());
    t.extend_from_slice(web_seed.as_bytes());
    t.extend_from_slice(b"ee");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// name "d", files a (1000 bytes), .pad/24 (24, pad), sub/b c (2000 bytes); piece
    /// length 1024, so 3 pieces.
    fn multi() -> Metainfo {
        let files = "ld6:lengthi1000e4:pathl1:aeed4:attr1:p6:lengthi24e4:pathl4:.pad2:24eed6:lengthi2000e4:pathl3:sub3:b ceee";
        let info = format!(
            "d5:files{files}4:name1:d12:piece lengthi1024e6:pieces60:{}e",
            "x".repeat(60)
        );
        Metainfo::from_info(info.as_bytes()).unwrap()
    }

    #[test]
    fn finds_files_exactly_and_refuses_unsafe_paths() {
        let m = multi();
        assert!(!m.single_file);
        assert_eq!(
            locate(&m, "d/a"),
            Ok(FileSpan {
                index: 0,
                offset: 0,
                length: 1000,
                pad: false
            })
        );
        assert_eq!(
            locate(&m, "d/.pad/24"),
            Ok(FileSpan {
                index: 1,
                offset: 1000,
                length: 24,
                pad: true
            })
        );
        assert_eq!(
            locate(&m, "d/sub/b%20c"),
            Ok(FileSpan {
                index: 2,
                offset: 1024,
                length: 2000,
                pad: false
            })
        );
        for p in ["d", "d/b", "e/a", "d/sub", "d/sub/b c/x", "D/a"] {
            assert_eq!(locate(&m, p), Err(PathError::NoSuchFile), "{p}");
        }
        for p in [
            "d/../a",
            "d/./a",
            "d//a",
            "d/sub%2Fb%20c",
            "d/a%00",
            "d/%FF",
            "../etc/passwd",
            "d/sub/..%2F",
        ] {
            assert_eq!(locate(&m, p), Err(PathError::Unsafe), "{p}");
        }
        assert_eq!(pieces_of(&m, 0, 1024), 0..=0);
        assert_eq!(pieces_of(&m, 1023, 1025), 0..=1);
        assert_eq!(pieces_of(&m, 1024, 3024), 1..=2);
    }

    #[test]
    fn torrent_keeps_the_info_hash() {
        let m = multi();
        let t = torrent_with_web_seed(&m, "http://198.18.0.1:8080/ws/abc/");
        let back = Metainfo::from_torrent(&t).unwrap();
        assert_eq!(back.info_hash, m.info_hash);
        assert!(
            String::from_utf8_lossy(&t).contains("8:url-listl30:http://198.18.0.1:8080/ws/abc/e")
        );
    }
}
