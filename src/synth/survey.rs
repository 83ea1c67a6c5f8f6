//! The dry run: what a session's script amounts to (bytes and segments each way, segments
//! eligible for impairment) before any frame is built, so initial sequence numbers and the
//! impairment plan can be chosen up front.

use super::script::Script;
use super::torrent::Torrent;

/// What the dry run learns about a session before any frame is made.
pub(super) struct Survey {
    pub(super) c2s_bytes: u64,
    pub(super) s2c_bytes: u64,
    pub(super) c2s_segments: u64,
    pub(super) s2c_segments: u64,
    /// Eligible segments for the given bounds (second pass only).
    pub(super) eligible: u64,
}

/// Walks the script without building content; `bounds` = (lo, hi) inclusive eligibility
/// range of s2c segment indices.
pub(super) fn survey(
    script: &Script,
    t: &Torrent,
    unit: usize,
    bounds: Option<(u64, u64)>,
) -> Survey {
    let mut s = script.clone();
    let mut out = Survey {
        c2s_bytes: 0,
        s2c_bytes: 0,
        c2s_segments: 0,
        s2c_segments: 0,
        eligible: 0,
    };
    while let Some(w) = s.next_write(t) {
        let len: u64 = w.msgs.iter().map(|m| m.encoded_len(t)).sum();
        if w.from_leecher {
            out.c2s_bytes += len;
            out.c2s_segments += len.div_ceil(unit as u64);
            continue;
        }
        out.s2c_bytes += len;
        let nseg = len.div_ceil(unit as u64);
        let first = out.s2c_segments;
        out.s2c_segments += nseg;
        if let Some((lo, hi)) = bounds {
            // Segments first..first+nseg-1, the last one of the write is not eligible.
            let a = first.max(lo);
            let b = (first + nseg).saturating_sub(2).min(hi);
            if nseg >= 2 && a <= b {
                out.eligible += b - a + 1;
            }
        }
    }
    out
}

/// Distance below 2^32 of the ISN of flow 0: the sequence space wraps `back - 1` bytes into
/// the stream, i.e. mid-transfer for any stream longer than 2 bytes.
pub(super) fn wrap_back(total: u64, cap: u64) -> u32 {
    (total / 2).clamp(1, cap) as u32
}
