//! Response bodies made of verified pieces. A body is planned first (its parts and exact
//! length, so the headers can say Content-Length before any piece is read), then streamed
//! piece by piece: a piece in memory costs no I/O, one on disk is read and hashed again on
//! a blocking thread. A piece that fails its hash, has gone, or that a reloaded policy no
//! longer serves ends the body early (the client sees a short answer, never a wrong one).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::cache::PieceKey;
use crate::serve::ledger::{Route, ServedLedger};
use crate::serve::source::{Policy, StoreBlocks};
use crate::swarm::Metainfo;

/// One stretch of a body.
pub(super) enum Part {
    /// Multipart framing: not content, not counted as served.
    Head(Bytes),
    /// Verified bytes already at hand (a piece read before answering).
    Bytes(Bytes),
    /// Torrent bytes `start..end` (offsets in the torrent's concatenated files).
    Torrent { start: u64, end: u64 },
    /// A pad file's zeros (BEP 47): never stored, known without reading.
    Zeros(u64),
}

/// A verified piece as the owner of `Bytes` slices cut from it: no copy on the way out.
struct PieceBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for PieceBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

pub(super) fn piece_bytes(p: Arc<Vec<u8>>) -> Bytes {
    Bytes::from_owner(PieceBytes(p))
}

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Why a body ended early.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Cut(&'static str);

struct Streaming {
    parts: VecDeque<Part>,
    src: Arc<StoreBlocks>,
    meta: Arc<Metainfo>,
    ledger: Arc<ServedLedger>,
    /// Where the verified bytes sent are counted; None for HEAD (nothing is sent).
    route: Option<Route>,
}

/// The body that yields `parts` in order, counting the cache's bytes on `route` as they
/// go out.
pub(super) fn body(
    parts: Vec<Part>,
    src: Arc<StoreBlocks>,
    meta: Arc<Metainfo>,
    route: Option<Route>,
) -> axum::body::Body {
    let ledger = src.ledger().clone();
    let st = Streaming {
        parts: parts.into(),
        src,
        meta,
        ledger,
        route,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        let (chunk, counted) = match next_chunk(&mut st).await? {
            Ok((b, counted)) => (Ok(b), counted),
            Err(e) => (Err(e), false),
        };
        match &chunk {
            Ok(b) if counted => {
                if let Some(r) = st.route {
                    st.ledger.sent(&st.meta.info_hash, r, b.len() as u64);
                }
            }
            Ok(_) => {}
            Err(_) => {
                st.ledger.content(|c| c.bodies_cut += 1);
                // Nothing after a cut: the stream ends with it.
                st.parts.clear();
            }
        }
        Some((chunk, st))
    });
    axum::body::Body::from_stream(stream)
}

/// The next chunk, and whether it is the cache's content (counted as served).
async fn next_chunk(st: &mut Streaming) -> Option<Result<(Bytes, bool), Cut>> {
    loop {
        let part = st.parts.pop_front()?;
        match part {
            Part::Head(b) | Part::Bytes(b) if b.is_empty() => continue,
            Part::Head(b) => return Some(Ok((b, false))),
            Part::Bytes(b) => return Some(Ok((b, true))),
            Part::Zeros(0) => continue,
            Part::Zeros(n) => {
                let k = n.min(ZEROS.len() as u64);
                if n > k {
                    st.parts.push_front(Part::Zeros(n - k));
                }
                return Some(Ok((Bytes::from_static(&ZEROS[..k as usize]), false)));
            }
            Part::Torrent { start, end } if start >= end => continue,
            Part::Torrent { start, end } => {
                let plen = st.meta.piece_length;
                let index = u32::try_from(start / plen).ok()?;
                let piece_start = u64::from(index) * plen;
                let to = end.min(piece_start + plen);
                if to < end {
                    st.parts.push_front(Part::Torrent { start: to, end });
                }
                let piece = match piece(st, index).await {
                    Ok(p) => p,
                    Err(e) => return Some(Err(e)),
                };
                let (a, b) = ((start - piece_start) as usize, (to - piece_start) as usize);
                if b > piece.len() {
                    return Some(Err(Cut("piece shorter than its metainfo says")));
                }
                return Some(Ok((piece_bytes(piece).slice(a..b), true)));
            }
        }
    }
}

async fn piece(st: &Streaming, index: u32) -> Result<Arc<Vec<u8>>, Cut> {
    let ih = st.meta.info_hash;
    if st.src.policy(&ih, index, None) != Policy::Serve {
        return Err(Cut("the policy no longer serves this swarm"));
    }
    let key = PieceKey {
        info_hash: ih,
        index,
    };
    if let Some(p) = st.src.piece_in_memory(&key) {
        // A use for the cache policy (a read from disk counts itself).
        st.src.store().touch(&key);
        return Ok(p);
    }
    let src = st.src.clone();
    match tokio::task::spawn_blocking(move || src.piece(key)).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Cut("piece gone or failed its hash when read")),
        Err(_) => Err(Cut("piece read failed")),
    }
}
