//! Popularity order of swarms, shared by the metrics (top-N gauges) and the JSON API, so
//! both name the same swarms.

use crate::report::{Report, SwarmReport};

/// Most REQUEST messages first (what subscribers ask for is what a cache would serve);
/// ties by info-hash so the order is stable between scrapes.
pub fn top_swarms(r: &Report, limit: usize) -> Vec<&SwarmReport> {
    let mut v: Vec<&SwarmReport> = r.swarms.iter().collect();
    v.sort_by(|a, b| {
        b.request_messages
            .cmp(&a.request_messages)
            .then_with(|| a.info_hash.cmp(&b.info_hash))
    });
    v.truncate(limit);
    v
}
