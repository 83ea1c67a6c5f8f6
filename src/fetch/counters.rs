//! What the metadata fetcher counts: one struct, exported in the report (`metainfo_fetch`)
//! and on `/metrics` from its declaration.

crate::counter::counters! {
    /// The box's own metadata fetches (BEP 9), over all swarms.
    pub struct FetchCounters {
        attempts: counter "metainfo_fetch_attempts_total"
            "Fetch connections the box opened to peers (one per attempt).",
        successes: counter "metainfo_fetch_results_total" [result = "success"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        hash_mismatches: counter "metainfo_fetch_results_total" [result = "hash_mismatch"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        timeouts: counter "metainfo_fetch_results_total" [result = "timeout"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        connect_failures: counter "metainfo_fetch_results_total" [result = "connect_failed"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        peer_errors: counter "metainfo_fetch_results_total" [result = "peer_error"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        unusable: counter "metainfo_fetch_results_total" [result = "unusable"]
            "How fetch attempts ended: success (metadata hashed to the info-hash), hash_mismatch (the peer is marked bad for the swarm), timeout, connect_failed, peer_error (no ut_metadata, reject, wrong info-hash, protocol error, closed, over the size cap), unusable (hashes right, but not a torrent the box can use).",
        refused_by_policy: counter "metainfo_fetch_policy_refusals_total"
            "Swarms the policy rules did not allow to be fetched (blocklist, allowlist).",
        metadata_bytes: counter "metainfo_fetch_metadata_bytes_total"
            "Bytes of verified info dictionaries fetched.",
        received_bytes: counter "metainfo_fetch_received_bytes_total"
            "Bytes received on fetch connections (all peers, all messages).",
        swarms_given_up: counter "metainfo_fetch_swarms_given_up_total"
            "Swarms given up: metainfo_fetch.max_attempts_per_swarm reached, or their metadata is unusable.",
        dropped: counter "metainfo_fetch_dropped_total"
            "Offers of swarms or peers not taken: metainfo_fetch.max_swarms reached, or the fetcher's queue full.",
        in_flight: gauge "metainfo_fetch_in_flight"
            "Fetch connections open now.",
    }
}
