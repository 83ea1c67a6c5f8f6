use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha1::{Digest, Sha1};

use super::cli::{run_to, CacheArgs, CacheCmd};
use super::policy::PolicySpec;
use super::*;
use crate::swarm::Metainfo;

const PL: usize = 16384;

/// A real single-file torrent over deterministic content: its metainfo and its pieces.
fn torrent(name: &str, seed: u8, len: usize) -> (Metainfo, Vec<Vec<u8>>) {
    let content: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i / 251) as u8)
        .collect();
    let pieces: Vec<Vec<u8>> = content.chunks(PL).map(<[u8]>::to_vec).collect();
    let mut info = format!(
        "d6:lengthi{len}e4:name{}:{name}12:piece lengthi{PL}e6:pieces{}:",
        name.len(),
        20 * pieces.len()
    )
    .into_bytes();
    for p in &pieces {
        info.extend_from_slice(&Sha1::digest(p));
    }
    info.push(b'e');
    (Metainfo::from_info(&info).expect("test info dict"), pieces)
}

fn key(m: &Metainfo, index: u32) -> PieceKey {
    PieceKey {
        info_hash: m.info_hash,
        index,
    }
}

/// A store under LRU (the tests that read `lru_order`), whatever the default is.
fn open_lru(dir: &Path, cap: u64) -> PieceStore {
    PieceStore::open_with(dir, cap, &PolicySpec::Lru).unwrap()
}

/// A store (LRU) holding swarm `m` with all of `pieces` inserted, in order.
fn filled(dir: &Path, cap: u64, m: &Metainfo, pieces: &[Vec<u8>]) -> PieceStore {
    let s = open_lru(dir, cap);
    s.put_metainfo(m).unwrap();
    for (i, p) in pieces.iter().enumerate() {
        assert!(s.insert(key(m, i as u32), p).unwrap());
    }
    s
}

fn set_mtime(path: &Path, secs: u64) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x40;
    fs::write(path, b).unwrap();
}

/// (bytes, files) actually under v1/*/pieces.
fn on_disk(dir: &Path) -> (u64, u64) {
    let mut t = (0, 0);
    for s in fs::read_dir(dir.join("v1")).unwrap() {
        for p in fs::read_dir(s.unwrap().path().join("pieces")).unwrap() {
            t.0 += p.unwrap().metadata().unwrap().len();
            t.1 += 1;
        }
    }
    t
}

#[test]
fn store_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<PieceStore>();
}

#[test]
fn insert_admits_only_verified_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 1, 3 * PL + 100);
    let s = PieceStore::open(dir.path(), u64::MAX).unwrap();

    // No metainfo: nothing can be verified, so nothing is admitted.
    assert!(!s.insert(key(&m, 0), &p[0]).unwrap());
    s.put_metainfo(&m).unwrap();
    s.put_metainfo(&m).unwrap(); // idempotent
    assert!(s.insert(key(&m, 0), &p[0]).unwrap());
    assert!(s.insert(key(&m, 0), &p[0]).unwrap()); // already there
    assert!(s.insert(key(&m, 3), &p[3]).unwrap()); // short last piece

    let mut wrong = p[1].clone();
    wrong[7] ^= 1;
    assert!(!s.insert(key(&m, 1), &wrong).unwrap());
    assert!(!s.insert(key(&m, 1), &p[2]).unwrap()); // right bytes, wrong index
    assert!(!s.insert(key(&m, 1), &p[1][..PL - 1]).unwrap());
    assert!(!s.insert(key(&m, 4), &p[3]).unwrap()); // past the end
    let (other, op) = torrent("b.bin", 2, PL);
    assert!(!s.insert(key(&other, 0), &op[0]).unwrap());

    assert_eq!(s.get(&key(&m, 0)).unwrap().as_deref(), Some(&p[0][..]));
    assert_eq!(s.get(&key(&m, 3)).unwrap().as_deref(), Some(&p[3][..]));
    assert_eq!(s.get(&key(&m, 1)).unwrap(), None);
    assert!(s.contains(&key(&m, 0)) && !s.contains(&key(&m, 1)));
    assert_eq!(s.pieces(&m.info_hash), vec![0, 3]);
    assert_eq!(s.metainfo(&m.info_hash).unwrap().info, m.info);
    assert_eq!(
        s.swarms(),
        vec![SwarmEntry {
            info_hash: m.info_hash,
            name: "a.bin".into(),
            piece_length: PL as u64,
            pieces: 4,
            pieces_cached: 2,
            bytes: PL as u64 + 100,
        }]
    );
    let c = s.counters();
    assert_eq!((c.stored_pieces, c.stored_bytes), (2, PL as u64 + 100));
    assert_eq!((c.inserted_pieces, c.refused_pieces), (2, 6));
    assert_eq!(on_disk(dir.path()), (PL as u64 + 100, 2));
}

#[test]
fn put_metainfo_rederives_from_raw_info() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = torrent("a.bin", 1, PL);
    // A caller's Metainfo whose fields disagree with its raw info.
    let mut flipped: [u8; 20] = m.info_hash.into();
    flipped[0] ^= 1;
    m.info_hash = flipped.into();
    let s = PieceStore::open(dir.path(), u64::MAX).unwrap();
    assert!(matches!(
        s.put_metainfo(&m),
        Err(CacheError::Metainfo { .. })
    ));
    assert!(s.swarms().is_empty());
}

#[test]
fn reopen_restores_index_metainfo_and_lru_order_by_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 3, 4 * PL);
    let s = filled(dir.path(), u64::MAX, &m, &p);
    // Written in order 0..4, but aged so that 2 is oldest, then 0, 3, 1.
    for (i, age) in [(2, 100), (0, 200), (3, 300), (1, 400)] {
        set_mtime(&s.piece_path(&key(&m, i)), age);
    }
    drop(s);

    let s = open_lru(dir.path(), u64::MAX);
    let r = s.open_report();
    assert_eq!((r.restored_pieces, r.restored_bytes), (4, 4 * PL as u64));
    assert_eq!(s.metainfo(&m.info_hash).unwrap().info_hash, m.info_hash);
    let order: Vec<u32> = s.lru_order().iter().map(|k| k.index).collect();
    assert_eq!(order, [2, 0, 3, 1]);
    // A read refreshes the mtime, so it also counts as use across a restart.
    assert_eq!(s.get(&key(&m, 2)).unwrap().as_deref(), Some(&p[2][..]));
    drop(s);

    // Reopened with room for three pieces: the least recently used (0) goes.
    let s = open_lru(dir.path(), 3 * PL as u64);
    let order: Vec<u32> = s.lru_order().iter().map(|k| k.index).collect();
    assert_eq!(order, [3, 1, 2]);
    assert_eq!(s.counters().evicted_pieces, 1);
    assert!(!s.piece_path(&key(&m, 0)).exists());
}

#[test]
fn eviction_is_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 4, 3 * PL + PL / 2);
    let s = open_lru(dir.path(), 2 * PL as u64 + 100);
    s.put_metainfo(&m).unwrap();
    let k = |i| key(&m, i);

    assert!(s.insert(k(0), &p[0]).unwrap());
    assert!(s.insert(k(1), &p[1]).unwrap());
    s.touch(&k(0)); // 1 is now the LRU
    assert!(s.insert(k(2), &p[2]).unwrap());
    assert!(s.contains(&k(0)) && !s.contains(&k(1)) && s.contains(&k(2)));
    assert!(!s.piece_path(&k(1)).exists());

    assert!(s.get(&k(0)).unwrap().is_some()); // 2 is now the LRU
    assert!(s.insert(k(3), &p[3]).unwrap());
    assert_eq!(s.pieces(&m.info_hash), vec![0, 3]);

    let c = s.counters();
    assert_eq!((c.evicted_pieces, c.evicted_bytes), (2, 2 * PL as u64));
    assert_eq!(
        (c.stored_bytes, c.stored_pieces),
        (PL as u64 + PL as u64 / 2, 2)
    );
    assert_eq!(on_disk(dir.path()), (c.stored_bytes, 2));

    // A piece that could never fit is refused, not allowed to flush the whole cache.
    let tiny_dir = tempfile::tempdir().unwrap();
    let tiny = PieceStore::open(tiny_dir.path(), 1000).unwrap();
    tiny.put_metainfo(&m).unwrap();
    assert!(!tiny.insert(k(0), &p[0]).unwrap());
}

#[test]
fn corrupt_piece_is_dropped_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 5, 2 * PL);
    let s = filled(dir.path(), u64::MAX, &m, &p);
    let path = s.piece_path(&key(&m, 1));
    flip_byte(&path, 1234);

    assert_eq!(s.get(&key(&m, 1)).unwrap(), None);
    assert!(!path.exists() && !s.contains(&key(&m, 1)));
    let c = s.counters();
    assert_eq!(
        (c.read_failures, c.stored_pieces, c.stored_bytes),
        (1, 1, PL as u64)
    );
    assert_eq!(s.get(&key(&m, 1)).unwrap(), None);
    assert_eq!(s.counters().read_failures, 1); // absent now, not failing again
    assert!(s.get(&key(&m, 0)).unwrap().is_some());
}

#[test]
fn open_cleans_up_torn_and_invalid_state() {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 6, 3 * PL);
    let (bad, bp) = torrent("b.bin", 7, PL);
    let (orphan, _) = torrent("c.bin", 8, PL);
    let s = filled(dir.path(), u64::MAX, &m, &p);
    s.put_metainfo(&bad).unwrap();
    assert!(s.insert(key(&bad, 0), &bp[0]).unwrap());
    s.put_metainfo(&orphan).unwrap();

    // Truncated piece; piece file past the torrent's end (right length, so only the index
    // is wrong); interrupted writes in tmp/.
    let torn = s.piece_path(&key(&m, 1));
    fs::write(&torn, &p[1][..100]).unwrap();
    fs::write(s.piece_path(&key(&m, 7)), &p[0]).unwrap();
    fs::write(dir.path().join("tmp/123-4.part"), b"half a piece").unwrap();
    fs::create_dir(dir.path().join("tmp/abc.removing")).unwrap();
    // Swarm b's info file replaced by a's (valid, but not hashing to b's name); swarm c's
    // info file lost; things that are not ours.
    let bdir = dir.path().join("v1").join(bad.info_hash.to_string());
    fs::write(bdir.join("info"), &m.info).unwrap();
    let cdir = dir.path().join("v1").join(orphan.info_hash.to_string());
    fs::remove_file(cdir.join("info")).unwrap();
    fs::write(dir.path().join("v1/README"), b"hello").unwrap();
    fs::write(s.piece_path(&key(&m, 0)).with_file_name("notes"), b"x").unwrap();
    drop(s);

    let s = PieceStore::open(dir.path(), u64::MAX).unwrap();
    let r = s.open_report();
    assert_eq!(
        r,
        OpenReport {
            restored_pieces: 2,
            restored_bytes: 2 * PL as u64,
            removed_invalid: 2,
            dropped_pieces: 2,
            removed_tmp: 2,
        }
    );
    assert_eq!(s.pieces(&m.info_hash), vec![0, 2]);
    assert!(!torn.exists() && !bdir.exists() && !cdir.exists());
    assert!(s.metainfo(&bad.info_hash).is_none());
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert!(dir.path().join("v1/README").exists());
    assert_eq!(s.verify_all().removed, 0);
}

#[test]
fn verify_all_removes_corrupt_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 9, 3 * PL);
    let s = filled(dir.path(), u64::MAX, &m, &p);
    flip_byte(&s.piece_path(&key(&m, 2)), 0);
    let order_before = s.lru_order();

    let r = s.verify_all();
    assert_eq!((r.checked, r.ok, r.removed, r.errors), (3, 2, 1, 0));
    assert_eq!(s.pieces(&m.info_hash), vec![0, 1]);
    assert_eq!(s.lru_order(), order_before[..2]); // checking is not use
    assert_eq!(s.counters().read_failures, 1);
    let r = s.verify_all();
    assert_eq!((r.checked, r.ok, r.removed), (2, 2, 0));
}

#[test]
fn remove_piece_and_swarm() {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 10, 3 * PL);
    let s = filled(dir.path(), u64::MAX, &m, &p);

    assert!(s.remove(&key(&m, 1)).unwrap());
    assert!(!s.remove(&key(&m, 1)).unwrap());
    assert!(!s.piece_path(&key(&m, 1)).exists());
    assert_eq!(s.remove_swarm(&m.info_hash).unwrap(), 2 * PL as u64);
    assert_eq!(s.remove_swarm(&m.info_hash).unwrap(), 0);
    assert!(s.swarms().is_empty() && s.metainfo(&m.info_hash).is_none());
    assert_eq!(s.counters().stored_bytes, 0);
    assert!(!s.insert(key(&m, 0), &p[0]).unwrap()); // metainfo gone with it
    assert_eq!(on_disk(dir.path()), (0, 0));
    drop(s);
    let s = PieceStore::open(dir.path(), u64::MAX).unwrap();
    assert!(s.swarms().is_empty());
    assert_eq!(s.open_report().removed_tmp, 0);
}

#[test]
fn concurrent_inserts_and_gets_keep_counters_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let swarms: Vec<(Metainfo, Vec<Vec<u8>>)> = (0..2)
        .map(|i| torrent(&format!("s{i}"), 20 + i, 12 * PL + 999))
        .collect();
    // Room for about a third of the pieces: eviction runs all the time.
    let s = Arc::new(PieceStore::open(dir.path(), 9 * PL as u64).unwrap());
    for (m, _) in &swarms {
        s.put_metainfo(m).unwrap();
    }
    let swarms = Arc::new(swarms);
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let (s, swarms) = (Arc::clone(&s), Arc::clone(&swarms));
            std::thread::spawn(move || {
                for round in 0..60u32 {
                    let (m, p) = &swarms[((t + round) % 2) as usize];
                    let i = (round * 7 + t * 3) % p.len() as u32;
                    assert!(s.insert(key(m, i), &p[i as usize]).unwrap());
                    let j = (round * 5 + t) % p.len() as u32;
                    if let Some(d) = s.get(&key(m, j)).unwrap() {
                        assert_eq!(d, p[j as usize]);
                    }
                    if round % 10 == t {
                        s.remove(&key(m, j)).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    let c = s.counters();
    assert_eq!(on_disk(dir.path()), (c.stored_bytes, c.stored_pieces));
    assert!(c.stored_bytes <= s.capacity());
    assert_eq!(
        (c.read_failures, c.write_errors, c.refused_pieces),
        (0, 0, 0)
    );
    let listed: u64 = s.swarms().iter().map(|e| e.bytes).sum();
    assert_eq!(listed, c.stored_bytes);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    let r = s.verify_all();
    assert_eq!((r.checked, r.removed), (c.stored_pieces, 0));
}

#[test]
fn info_hash_parsing() {
    // The CLI's parse: `InfoHash::from_str`, its error mapped to `BadInfoHash`.
    let parse = |s: &str| s.parse::<InfoHash>().map_err(CacheError::from);
    let ih = InfoHash::from([0xab; 20]);
    assert_eq!(parse(&ih.to_string()).unwrap(), ih);
    assert_eq!(parse(&ih.to_string().to_uppercase()).unwrap(), ih);
    for bad in [
        "",
        "abc",
        &"+f".repeat(20),
        &"g".repeat(40),
        &"a".repeat(41),
    ] {
        assert!(matches!(
            parse(bad),
            Err(CacheError::BadInfoHash(s)) if s == bad
        ));
    }
}

#[test]
fn cli_commands() {
    use clap::{CommandFactory, Parser};
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cache: CacheArgs,
    }
    Cli::command().debug_assert();
    let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.cache);

    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 11, 2 * PL);
    drop(filled(dir.path(), u64::MAX, &m, &p));
    let d = dir.path().to_str().unwrap();
    let ih = m.info_hash.to_string();

    let a = parse(&["t", "evict", "--cache-dir", d, &ih]).unwrap();
    assert!(matches!(a.cmd, CacheCmd::Evict { piece: None, .. }));
    assert!(parse(&["t", "get", "--cache-dir", d, &ih]).is_err()); // PIECE is required

    // (exit code, stdout)
    let run = |args: &[&str]| {
        let mut out = Vec::new();
        run_to(&parse(args).unwrap(), &mut out).map(|c| (format!("{c:?}"), out))
    };
    let ok = format!("{:?}", std::process::ExitCode::SUCCESS);
    let fail = format!("{:?}", std::process::ExitCode::FAILURE);

    let (code, out) = run(&["t", "ls", "--cache-dir", d, "--json"]).unwrap();
    assert_eq!(code, ok);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["info_hash"], ih.as_str());
    assert_eq!(v[0]["pieces_cached"], 2);
    let (_, out) = run(&["t", "ls", "--cache-dir", d]).unwrap();
    let table = String::from_utf8(out).unwrap();
    for cell in [ih.as_str(), "2/2", "32768", "a.bin"] {
        assert!(table.contains(cell), "{cell} not in {table}");
    }

    assert_eq!(
        run(&["t", "get", "--cache-dir", d, &ih, "1"]).unwrap(),
        (ok.clone(), p[1].clone())
    );
    assert_eq!(run(&["t", "verify", "--cache-dir", d]).unwrap().0, ok);
    assert_eq!(
        run(&["t", "evict", "--cache-dir", d, &ih, "1"]).unwrap().0,
        ok
    );
    assert_eq!(
        run(&["t", "evict", "--cache-dir", d, &ih, "1"]).unwrap().0,
        fail
    );
    assert_eq!(
        run(&["t", "get", "--cache-dir", d, &ih, "1"]).unwrap(),
        (fail.clone(), vec![])
    );
    assert_eq!(run(&["t", "evict", "--cache-dir", d, &ih]).unwrap().0, ok);
    assert_eq!(
        run(&["t", "ls", "--cache-dir", d, "--json"]).unwrap().1,
        b"[]\n"
    );

    let missing = dir.path().join("nope");
    let err = run(&["t", "ls", "--cache-dir", missing.to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(!missing.exists()); // looking never creates a cache
    let err = run(&["t", "get", "--cache-dir", d, "xyz", "0"]).unwrap_err();
    assert!(matches!(err, CacheError::BadInfoHash(_)));
    let not_cache = tempfile::tempdir().unwrap();
    let err = run(&[
        "t",
        "verify",
        "--cache-dir",
        not_cache.path().to_str().unwrap(),
    ]);
    assert!(matches!(err, Err(CacheError::NotACache { .. })));
}

#[test]
fn verified_pieces_need_the_stores_own_metainfo() {
    let dir = tempfile::tempdir().unwrap();
    let (m, pieces) = torrent("v", 9, 3 * PL + 100);
    let store = PieceStore::open(dir.path(), u64::MAX).unwrap();
    let v = crate::swarm::VerifiedPiece::verify(&m, 1, pieces[1].clone()).unwrap();
    // Without the info dictionary the store cannot check the hash the piece matched.
    assert!(!store.insert_verified(&v).unwrap());
    store.put_metainfo(&m).unwrap();
    assert!(store.insert_verified(&v).unwrap());
    assert_eq!(
        store.get(&key(&m, 1)).unwrap().as_deref(),
        Some(&pieces[1][..])
    );
    // Wrong bytes never become a VerifiedPiece in the first place.
    let mut bad = pieces[2].clone();
    bad[0] ^= 1;
    assert!(crate::swarm::VerifiedPiece::verify(&m, 2, bad).is_err());
}

#[test]
fn writer_counts_queued_pieces_as_cached_and_flushes_them() {
    use crate::swarm::PieceSink;
    let dir = tempfile::tempdir().unwrap();
    let (m, pieces) = torrent("w", 4, 8 * PL);
    let store = Arc::new(PieceStore::open(dir.path(), u64::MAX).unwrap());
    let policy = super::CommitPolicy {
        bytes: 3 * PL as u64,
        interval: std::time::Duration::from_secs(3600),
    };
    let w = super::StoreWriter::new(store.clone(), 2, policy);
    for (i, p) in pieces.iter().enumerate() {
        let v = crate::swarm::VerifiedPiece::verify(&m, i as u32, p.clone()).unwrap();
        assert!(w.admit(&m, v));
        assert!(
            w.contains(&m.info_hash, i as u32),
            "queued counts as cached"
        );
    }
    w.flush();
    assert_eq!(store.pieces(&m.info_hash).len(), pieces.len());
    let v = store.verify_all();
    assert_eq!((v.ok, v.removed), (pieces.len() as u64, 0));
}

#[test]
fn staged_pieces_are_indexed_only_by_their_batch_commit() {
    use super::store::Staging;
    let dir = tempfile::tempdir().unwrap();
    let (m, pieces) = torrent("b", 5, 6 * PL);
    let (other, op) = torrent("o", 6, 2 * PL);
    let store = PieceStore::open(dir.path(), u64::MAX).unwrap();
    store.put_metainfo(&m).unwrap();
    store.put_metainfo(&other).unwrap();
    let stage = |m: &Metainfo, i: u32, p: &[u8]| {
        let v = crate::swarm::VerifiedPiece::verify(m, i, p.to_vec()).unwrap();
        match store.stage_verified(&v).unwrap() {
            Staging::Staged(s) => s,
            _ => panic!("piece {i} not staged"),
        }
    };
    let mut batch: Vec<_> = (0..4u32)
        .map(|i| stage(&m, i, &pieces[i as usize]))
        .collect();
    batch.push(stage(&m, 1, &pieces[1])); // the same piece twice in one batch
    batch.push(stage(&other, 0, &op[0])); // another swarm's directory
    batch.push(stage(&other, 1, &op[1]));
    // Staged is neither listed nor served: only the temp files exist.
    assert!(store.pieces(&m.info_hash).is_empty());
    assert_eq!(store.get(&key(&m, 0)).unwrap(), None);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 7);
    // A swarm removed between staging and commit gets none of its pieces back.
    store.remove_swarm(&other.info_hash).unwrap();
    assert_eq!(store.commit(batch).unwrap(), 5);
    assert_eq!(store.pieces(&m.info_hash), vec![0, 1, 2, 3]);
    assert!(store.pieces(&other.info_hash).is_empty());
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    let c = store.counters();
    assert_eq!((c.inserted_pieces, c.write_errors), (4, 0));
    drop(store);
    let again = PieceStore::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(again.pieces(&m.info_hash), vec![0, 1, 2, 3]);
    let v = again.verify_all();
    assert_eq!((v.ok, v.removed), (4, 0));
}

/// Every policy the store runs keeps the same books: bytes held never pass the capacity, the
/// files on disk are exactly the pieces indexed, every piece written is either held, evicted
/// or declined, and a reopen restores exactly what was held.
#[test]
fn every_store_policy_keeps_capacity_disk_and_index_in_step() {
    let (m, p) = torrent("many.bin", 11, 40 * PL);
    for name in ["lru", "fifo", "s3fifo", "tinylfu", "gdsf"] {
        let spec: PolicySpec = name.parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cap = 5 * PL as u64;
        let s = PieceStore::open_with(dir.path(), cap, &spec).unwrap();
        assert_eq!(s.policy(), &spec);
        s.put_metainfo(&m).unwrap();
        // A skewed, repeating sequence (pieces 0-3 often, the rest now and then), asked
        // for before it is inserted, as the engine does (touch on every REQUEST).
        let mut x: u32 = 7;
        let mut written = 0;
        for step in 0..300u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let i = if step % 3 == 0 {
                (x >> 16) % 40
            } else {
                (x >> 16) % 4
            };
            let k = key(&m, i);
            s.touch(&k);
            if !s.contains(&k) {
                let kept = s.insert(k, &p[i as usize]).unwrap();
                written += 1;
                assert_eq!(kept, s.contains(&k), "{name} step {step}");
            }
            let c = s.counters();
            assert!(c.stored_bytes <= cap, "{name} step {step}: {c:?}");
            assert_eq!(
                on_disk(dir.path()),
                (c.stored_bytes, c.stored_pieces),
                "{name} step {step}"
            );
            assert_eq!(
                s.pieces(&m.info_hash).len() as u64,
                c.stored_pieces,
                "{name}"
            );
        }
        let c = s.counters();
        assert_eq!(
            c.inserted_pieces + c.declined_pieces,
            written,
            "{name}: {c:?}"
        );
        assert_eq!(
            c.inserted_pieces,
            c.stored_pieces + c.evicted_pieces,
            "{name}: {c:?}"
        );
        assert!(
            c.evicted_pieces > 0,
            "{name}: the sequence must overflow the capacity"
        );
        // The popular pieces are held (every policy here keeps a piece asked for in two
        // of every three requests).
        assert!(s.contains(&key(&m, 0)) || s.contains(&key(&m, 1)), "{name}");
        let held = s.pieces(&m.info_hash);
        drop(s);

        let s = PieceStore::open_with(dir.path(), cap, &spec).unwrap();
        assert_eq!(s.pieces(&m.info_hash), held, "{name}: reopen");
        assert_eq!(s.open_report().restored_pieces, held.len() as u64, "{name}");
        assert_eq!(s.verify_all().removed, 0, "{name}");
    }
}

#[test]
fn p2p_admission_is_refused_by_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let spec: PolicySpec = "p2p-lru".parse().unwrap();
    match PieceStore::open_with(dir.path(), 1 << 20, &spec) {
        Err(e @ CacheError::Policy(_)) => assert!(e.to_string().contains("p2p-lru"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("p2p-lru opened"),
    }
}

/// GDSF, the default, by hand. Equal pieces, so priority = L + uses (in units of 1/size),
/// the lowest goes first, and L rises to each evicted priority (aging).
#[test]
fn gdsf_keeps_the_piece_asked_for_again() {
    let dir = tempfile::tempdir().unwrap();
    let (m, p) = torrent("a.bin", 6, 4 * PL);
    let s = PieceStore::open(dir.path(), 2 * PL as u64).unwrap();
    assert_eq!(s.policy(), &PolicySpec::Gdsf, "the default");
    s.put_metainfo(&m).unwrap();
    let k = |i| key(&m, i);
    assert!(s.insert(k(0), &p[0]).unwrap());
    assert!(s.insert(k(1), &p[1]).unwrap());
    // 0 used three times (3), 1 twice (2) and last: 2 pushes out 1, where LRU would
    // push out 0. L becomes 2.
    s.touch(&k(0));
    s.touch(&k(0));
    s.touch(&k(1));
    assert!(s.insert(k(2), &p[2]).unwrap());
    assert_eq!(s.pieces(&m.info_hash), vec![0, 2]);
    // 2 used once more: L + 2 = 4 outranks 0's 3, so 3 pushes out 0: old popularity fades.
    s.touch(&k(2));
    assert!(s.insert(k(3), &p[3]).unwrap());
    assert_eq!(s.pieces(&m.info_hash), vec![2, 3]);
    assert!(!s.piece_path(&k(0)).exists() && !s.piece_path(&k(1)).exists());
    assert_eq!(s.counters().evicted_pieces, 2);
}
