//! `peercache cache ...`: inspect and maintain a cache directory no daemon is using.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{CacheError, PieceKey, PieceStore, SwarmEntry};
use crate::swarm::Metainfo;
use crate::wire::infohash::InfoHash;

#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    /// The cache directory (else the cache.dir of --config).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A configuration file whose cache.dir is the cache (the package's is
    /// /etc/peercache/peercache.yaml); --cache-dir wins when both are given.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: CacheCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum CacheCmd {
    /// List swarms in the cache
    Ls {
        /// JSON on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Write the verified piece to stdout (exit 1 when absent)
    Get {
        /// The swarm (40 hex digits).
        info_hash: String,
        /// The piece index.
        piece: u32,
    },
    /// Re-check every stored piece against its hash; remove bad ones (exit 1 when any were
    /// bad or unreadable)
    Verify {
        /// JSON on stdout instead of the one-line count.
        #[arg(long)]
        json: bool,
    },
    /// Put a torrent's content into the cache from files on disk: every piece is checked
    /// against the torrent's hashes first, and only those that match are stored (exit 1
    /// when any piece is missing or wrong). Pre-positions content the operator holds.
    Import {
        /// The .torrent file.
        torrent: PathBuf,
        /// The directory holding the torrent's content under its name, as a client's save
        /// directory does: DATA/NAME for a single file, DATA/NAME/PATH... for several.
        data: PathBuf,
    },
    /// Remove one piece, or a whole swarm when PIECE is omitted (exit 1 when absent)
    Evict {
        /// The swarm (40 hex digits).
        info_hash: String,
        /// The piece index; without it, the whole swarm.
        piece: Option<u32>,
    },
}

pub fn run(args: &CacheArgs) -> Result<ExitCode, CacheError> {
    run_to(args, &mut std::io::stdout().lock())
}

/// `run`, writing what it prints to `out` (tests read it back).
pub(crate) fn run_to(args: &CacheArgs, out: &mut impl Write) -> Result<ExitCode, CacheError> {
    let mut emit = |bytes: &[u8]| {
        out.write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(CacheError::io("writing", "<stdout>"))
    };
    // Absent is exit 1 with a line saying what was not there (stdout stays for data).
    let found = |yes: bool, what: &dyn Fn() -> String| {
        if yes {
            ExitCode::SUCCESS
        } else {
            tracing::error!("{} is not in the cache", what());
            ExitCode::FAILURE
        }
    };
    let cache_dir = args.cache_dir.as_deref().ok_or(CacheError::NoDirGiven)?;
    match &args.cmd {
        CacheCmd::Ls { json } => {
            let swarms = open_existing(cache_dir)?.swarms();
            let text = if *json {
                serde_json::to_string_pretty(&swarms)? + "\n"
            } else {
                table(&swarms)
            };
            emit(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Get { info_hash, piece } => {
            let key = PieceKey {
                info_hash: info_hash.parse::<InfoHash>()?,
                index: *piece,
            };
            let data = open_existing(cache_dir)?.get(&key)?;
            if let Some(d) = &data {
                emit(d)?;
            }
            Ok(found(data.is_some(), &|| {
                format!("piece {} of {}", key.index, key.info_hash)
            }))
        }
        CacheCmd::Verify { json } => {
            let r = open_existing(cache_dir)?.verify_all();
            let text = if *json {
                serde_json::to_string_pretty(&r)? + "\n"
            } else {
                format!(
                    "checked {}, ok {}, removed {}, errors {}\n",
                    r.checked, r.ok, r.removed, r.errors
                )
            };
            emit(text.as_bytes())?;
            Ok(if r.removed == 0 && r.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        CacheCmd::Import { torrent, data } => {
            let m = Metainfo::from_torrent_file(torrent).map_err(|e| CacheError::Torrent {
                path: torrent.clone(),
                msg: e.to_string(),
            })?;
            let store = PieceStore::open(cache_dir, u64::MAX)?;
            let r = import(&store, &m, data)?;
            let text = format!(
                "{}: imported {} of {} pieces ({} bytes); {} missing, {} wrong\n",
                m.info_hash,
                r.imported,
                m.num_pieces(),
                r.bytes,
                r.missing,
                r.wrong
            );
            emit(text.as_bytes())?;
            Ok(if r.missing == 0 && r.wrong == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        CacheCmd::Evict { info_hash, piece } => {
            let ih = info_hash.parse::<InfoHash>()?;
            let store = open_existing(cache_dir)?;
            let removed = match piece {
                Some(index) => store.remove(&PieceKey {
                    info_hash: ih,
                    index: *index,
                })?,
                // A swarm with metainfo but no pieces is still "present".
                None => {
                    let present = store.metainfo(&ih).is_some();
                    store.remove_swarm(&ih)?;
                    present
                }
            };
            Ok(found(removed, &|| match piece {
                Some(i) => format!("piece {i} of {ih}"),
                None => format!("swarm {ih}"),
            }))
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Imported {
    pub imported: u32,
    pub bytes: u64,
    /// Pieces with a byte in a file that is absent or too short.
    pub missing: u32,
    /// Pieces whose bytes do not hash to the torrent's piece hash.
    pub wrong: u32,
}

/// The files of `m` under `data`, piece by piece, each verified before it is stored.
pub(crate) fn import(
    store: &PieceStore,
    m: &Metainfo,
    data: &Path,
) -> Result<Imported, CacheError> {
    store.put_metainfo(m)?;
    let root = data.join(safe_component(&m.name)?);
    let mut paths = Vec::with_capacity(m.files.len());
    for f in &m.files {
        let p = if m.single_file {
            root.clone()
        } else {
            let mut p = root.clone();
            for c in &f.path {
                p.push(safe_component(c)?);
            }
            p
        };
        paths.push(p);
    }
    let mut r = Imported::default();
    let mut open: Option<(usize, std::fs::File)> = None;
    for index in 0..m.num_pieces() {
        let len = m.piece_len(index).unwrap_or(0) as usize;
        let start = u64::from(index) * m.piece_length;
        let mut piece = vec![0u8; len];
        let mut whole = true;
        let mut off = 0u64;
        for (i, f) in m.files.iter().enumerate() {
            let (fs, fe) = (off, off + f.length);
            off = fe;
            let (a, b) = (fs.max(start), fe.min(start + len as u64));
            if a >= b || f.pad {
                continue;
            }
            if open.as_ref().map(|(k, _)| *k) != Some(i) {
                open = std::fs::File::open(&paths[i]).ok().map(|h| (i, h));
            }
            let dst = &mut piece[(a - start) as usize..(b - start) as usize];
            let ok = open.as_ref().is_some_and(|(_, h)| {
                std::os::unix::fs::FileExt::read_exact_at(h, dst, a - fs).is_ok()
            });
            if !ok {
                whole = false;
                break;
            }
        }
        if !whole {
            r.missing += 1;
            continue;
        }
        match crate::swarm::VerifiedPiece::verify(m, index, piece) {
            Ok(v) => {
                store.insert_verified(&v)?;
                r.imported += 1;
                r.bytes += len as u64;
            }
            Err(_) => r.wrong += 1,
        }
    }
    Ok(r)
}

/// A name from a torrent used as one path component: never a way out of `data`.
fn safe_component(c: &str) -> Result<&str, CacheError> {
    if c.is_empty() || c == "." || c == ".." || c.contains(['/', '\\', '\0']) {
        return Err(CacheError::UnsafeName(c.to_owned()));
    }
    Ok(c)
}

/// Opens a cache that must already exist (these commands never create one), without a
/// capacity: nothing is evicted just for looking.
fn open_existing(dir: &Path) -> Result<PieceStore, CacheError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CacheError::NotADir {
            path: dir.to_owned(),
        });
    }
    if !dir.is_dir() {
        return Err(CacheError::NoCacheDir {
            path: dir.to_owned(),
        });
    }
    if !dir.join("v1").is_dir() {
        return Err(CacheError::NotACache {
            path: dir.to_owned(),
        });
    }
    PieceStore::open(dir, u64::MAX)
}

fn table(swarms: &[SwarmEntry]) -> String {
    let mut out = format!(
        "{:<40}  {:>15}  {:>14}  NAME\n",
        "INFO-HASH", "PIECES", "BYTES"
    );
    for s in swarms {
        let pieces = format!("{}/{}", s.pieces_cached, s.pieces);
        // Names come from torrents, i.e. from strangers: no terminal control sequences.
        let name: String = s
            .name
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        out += &format!(
            "{:<40}  {:>15}  {:>14}  {}\n",
            s.info_hash, pieces, s.bytes, name
        );
    }
    out
}
