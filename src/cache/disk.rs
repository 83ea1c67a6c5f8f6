//! The piece store's files on disk, below the index: canonical names, loading a swarm's
//! info dictionary and pieces when the store opens, clearing directories, and the writes
//! and syncs that make a piece durable (O_DIRECT when the piece fits, fsync of file and
//! directory). Free functions over paths: the store's locking and LRU stay in `store.rs`.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use std::time::SystemTime;

use super::{CacheError, OpenReport, PieceKey};
use crate::swarm::metainfo::MAX_INFO_LEN;
use crate::swarm::Metainfo;
use crate::wire::infohash::InfoHash;

/// The info-hash a swarm directory name stands for, if it is in canonical form.
pub(super) fn canonical_info_hash(name: &OsStr) -> Option<InfoHash> {
    let s = name.to_str()?;
    s.parse::<InfoHash>().ok().filter(|ih| ih.to_string() == s)
}

/// The piece index a piece file name stands for, if it is in canonical form.
pub(super) fn canonical_index(name: &OsStr) -> Option<u32> {
    let s = name.to_str()?;
    let canonical = s.len() == 8 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    canonical.then(|| u32::from_str_radix(s, 16).ok()).flatten()
}

/// The metainfo of a swarm directory, or None when its info file is missing, too large,
/// unparsable or does not hash to the directory name.
pub(super) fn load_info(sdir: &Path, ih: &InfoHash) -> Result<Option<Metainfo>, CacheError> {
    let path = sdir.join("info");
    let raw = match File::open(&path) {
        Ok(f) => {
            let mut raw = Vec::new();
            f.take(MAX_INFO_LEN as u64 + 1)
                .read_to_end(&mut raw)
                .map_err(CacheError::io("reading", &path))?;
            raw
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CacheError::io("opening", &path)(e)),
    };
    Ok(Metainfo::from_info_checked(&raw, ih).ok())
}

/// Collects the well-formed piece files of a swarm; drops those with the wrong length.
pub(super) fn restore_pieces(
    m: &Metainfo,
    pdir: &Path,
    found: &mut Vec<(SystemTime, PieceKey, u32)>,
    opened: &mut OpenReport,
) -> Result<(), CacheError> {
    fs::create_dir_all(pdir).map_err(CacheError::io("creating directory", pdir))?;
    for entry in read_dir(pdir)? {
        let entry = entry.map_err(CacheError::io("reading directory", pdir))?;
        let Some(index) = canonical_index(&entry.file_name()) else {
            continue;
        };
        let path = entry.path();
        let meta = entry
            .metadata()
            .map_err(CacheError::io("inspecting", &path))?;
        if !meta.is_file() {
            continue;
        }
        match m.piece_len(index) {
            Some(len) if u64::from(len) == meta.len() => {
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let key = PieceKey {
                    info_hash: m.info_hash,
                    index,
                };
                found.push((mtime, key, len));
            }
            _ => {
                remove_file_if_exists(&path)?;
                opened.dropped_pieces += 1;
            }
        }
    }
    Ok(())
}

/// Empties `dir`; returns how many entries it removed.
pub(super) fn clear_dir(dir: &Path) -> Result<u64, CacheError> {
    let mut n = 0;
    for entry in read_dir(dir)? {
        let path = entry
            .map_err(CacheError::io("reading directory", dir))?
            .path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(CacheError::io("removing leftover", &path))?;
        n += 1;
    }
    Ok(n)
}

pub(super) fn read_dir(dir: &Path) -> Result<fs::ReadDir, CacheError> {
    fs::read_dir(dir).map_err(CacheError::io("reading directory", dir))
}

/// O_DIRECT needs the buffer address, the length and the file offset aligned to the device's
/// logical block; 4 KiB covers 512-byte and 4 KiB devices. `Pieces` builds pieces at such an
/// address ([`crate::swarm::PIECE_ALIGN`]); a last piece of odd length is written buffered.
pub(super) fn direct_io_fits(data: &[u8]) -> bool {
    const A: usize = crate::swarm::PIECE_ALIGN;
    !data.is_empty() && data.len().is_multiple_of(A) && data.as_ptr().align_offset(A) == 0
}

#[cfg(target_os = "linux")]
pub(super) fn write_direct(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)?
        .write_all(data)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn write_direct(_: &Path, _: &[u8]) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Durable contents of one closed temp file (the fallback when `syncfs` is unavailable).
pub(super) fn sync_file(path: &Path) -> io::Result<()> {
    fs::OpenOptions::new().write(true).open(path)?.sync_all()
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), CacheError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CacheError::io("syncing directory", dir))
}

pub(super) fn remove_file_if_exists(path: &Path) -> Result<(), CacheError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CacheError::io("removing", path)(e)),
        _ => Ok(()),
    }
}
