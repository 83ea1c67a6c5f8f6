//! The operator's directory of .torrent files (`--metainfo DIR`): read at start, and looked
//! at again while tap and inline run, so a .torrent dropped in is used without a restart
//! (issue 14's operator intake).
//!
//! A rescan reads only files it has not seen, or that changed (size or modification time),
//! so a bad file is reported once, not on every pass, and a big directory costs one
//! `read_dir` per pass. What it remembers is bounded by the directory: entries of files
//! that are gone are dropped. A file whose metainfo is already known (from the wire, the
//! cache or another file) is not an error: the first source wins, as in the registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Metainfo, Registry, Source};
use crate::wire::infohash::InfoHash;

/// What one pass found.
#[derive(Debug, Default)]
pub struct Scan {
    /// New metainfo, by file: the registry did not know its swarm before.
    pub loaded: Vec<(PathBuf, InfoHash)>,
    /// Files read whose swarm was already known.
    pub known: usize,
    /// One line per bad file (its path and why), each reported once per version of it.
    pub errors: Vec<String>,
}

/// A file as last seen: its length and modification time.
type Stamp = (u64, Option<SystemTime>);

/// The files of one directory already looked at.
#[derive(Debug, Default)]
pub struct TorrentDir {
    seen: HashMap<PathBuf, Stamp>,
}

impl TorrentDir {
    pub fn new() -> TorrentDir {
        TorrentDir::default()
    }

    /// Read the `.torrent` files of `dir` that are new or changed since the last pass into
    /// `registry` (as `Source::File`).
    pub fn scan(&mut self, registry: &Registry, dir: &Path) -> Scan {
        let mut out = Scan::default();
        let stamp = |md: std::fs::Metadata| (md.len(), md.modified().ok());
        // One .torrent file named on its own is taken whatever its name ends with.
        let mut present: Vec<(PathBuf, Stamp)> = match std::fs::metadata(dir) {
            Ok(md) if md.is_file() => vec![(dir.to_owned(), stamp(md))],
            _ => match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "torrent"))
                    .filter_map(|e| {
                        let md = e.metadata().ok()?;
                        md.is_file().then(|| (e.path(), stamp(md)))
                    })
                    .collect(),
                Err(e) => {
                    out.errors.push(format!("{}: {e}", dir.display()));
                    return out;
                }
            },
        };
        present.sort();
        let mut now_seen = HashMap::with_capacity(present.len());
        for (path, stamp) in present {
            if self.seen.get(&path) != Some(&stamp) {
                match Metainfo::from_torrent_file(&path) {
                    Ok(m) => {
                        let ih = m.info_hash;
                        if registry.get(&ih).is_some() {
                            out.known += 1;
                        } else {
                            registry.insert(m, Source::File);
                            out.loaded.push((path.clone(), ih));
                        }
                    }
                    Err(e) => out.errors.push(format!("{}: {e}", path.display())),
                }
            }
            now_seen.insert(path, stamp);
        }
        self.seen = now_seen;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A small valid single-file .torrent (one piece).
    fn torrent(name: &str, content: &[u8]) -> Vec<u8> {
        use sha1::{Digest, Sha1};
        let hash = Sha1::digest(content);
        let mut info = format!(
            "d6:lengthi{}e4:name{}:{}12:piece lengthi16384e6:pieces20:",
            content.len(),
            name.len(),
            name
        )
        .into_bytes();
        info.extend_from_slice(&hash);
        info.push(b'e');
        let mut t = b"d4:info".to_vec();
        t.extend_from_slice(&info);
        t.push(b'e');
        t
    }

    #[test]
    fn new_changed_and_bad_files_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::default();
        let mut w = TorrentDir::new();
        fs::write(dir.path().join("a.torrent"), torrent("a", b"aaaa")).unwrap();
        fs::write(dir.path().join("notes.txt"), b"not a torrent").unwrap();
        let s = w.scan(&reg, dir.path());
        assert_eq!((s.loaded.len(), s.known, s.errors.len()), (1, 0, 0));
        assert_eq!(reg.len(), 1);

        // nothing new: nothing read, nothing reported
        let s = w.scan(&reg, dir.path());
        assert_eq!((s.loaded.len(), s.known, s.errors.len()), (0, 0, 0));

        // a corrupt file: reported once, with its name; a good one beside it is loaded
        fs::write(dir.path().join("bad.torrent"), b"d4:infoi3ee").unwrap();
        fs::write(dir.path().join("b.torrent"), torrent("b", b"bbbb")).unwrap();
        let s = w.scan(&reg, dir.path());
        assert_eq!(s.loaded.len(), 1);
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].contains("bad.torrent"), "{:?}", s.errors);
        assert_eq!(reg.len(), 2);
        let s = w.scan(&reg, dir.path());
        assert!(s.errors.is_empty(), "a bad file is reported once");

        // the bad file fixed (rewritten, another length): read again and loaded
        fs::write(dir.path().join("bad.torrent"), torrent("c", b"cccccc")).unwrap();
        let s = w.scan(&reg, dir.path());
        assert_eq!((s.loaded.len(), s.errors.len()), (1, 0));
        assert_eq!(reg.len(), 3);

        // a copy of a known swarm under another name: known, not an error
        fs::write(dir.path().join("a-copy.torrent"), torrent("a", b"aaaa")).unwrap();
        let s = w.scan(&reg, dir.path());
        assert_eq!((s.loaded.len(), s.known, s.errors.len()), (0, 1, 0));

        // files that went are forgotten (bounded by the directory)
        fs::remove_file(dir.path().join("a-copy.torrent")).unwrap();
        w.scan(&reg, dir.path());
        assert_eq!(w.seen.len(), 3);
    }

    #[test]
    fn a_missing_directory_is_one_error() {
        let reg = Registry::default();
        let mut w = TorrentDir::new();
        let s = w.scan(&reg, Path::new("/nonexistent/peercache-torrents"));
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].contains("/nonexistent/peercache-torrents"));
    }
}
