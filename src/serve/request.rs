//! A complete REQUEST from a subscriber, on either transport: may it be answered from the
//! cache (the connection serves its swarm, the box is not overloaded, the queues have
//! room), and with which bytes. The transports differ only in what they do with the
//! answer (segments or packets), so the decision and its counting live here once.

use super::{BlockSource, Bypass, Lookup, Splicer};
use crate::swarm::pieces::FlowContext;
use crate::wire::peerwire::BlockRef;

/// Which transport a REQUEST came on, for the uTP share of the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    Tcp,
    Utp,
}

/// Where a connection stands, as far as answering one more REQUEST goes.
pub(super) struct Asking {
    /// The swarm the connection is served for, or why it is not.
    pub serving: Result<[u8; 20], Bypass>,
    /// Bytes the connection holds against the per-connection cap.
    pub queued: usize,
    /// Insertion points its number mapping holds.
    pub points: usize,
    pub flow: FlowContext,
    pub transport: Transport,
}

impl<S: BlockSource> Splicer<S> {
    fn request_bypassed(&mut self, why: Bypass, t: Transport) {
        match t {
            Transport::Tcp => self.counters.bypass(why),
            Transport::Utp => self.counters.utp_bypass(why),
        }
    }

    /// The block's bytes if this REQUEST is answered from the cache; every outcome counted
    /// (requests, bypass reasons, misses, read failures).
    pub(super) fn answer_request(&mut self, a: Asking, block: BlockRef) -> Option<Vec<u8>> {
        let t = a.transport;
        self.counters.requests += 1;
        if t == Transport::Utp {
            self.counters.utp.requests += 1;
        }
        let ih = match a.serving {
            Ok(ih) => ih,
            Err(b) => {
                self.request_bypassed(b, t);
                return None;
            }
        };
        if self.overloaded {
            self.request_bypassed(Bypass::Overload, t);
            return None;
        }
        let len = block.length as usize;
        let points_full = a.points >= self.cfg.max_insertion_points;
        if a.queued + len > self.cfg.max_queued_bytes_per_connection
            || self.queued_bytes + len > self.cfg.max_queued_bytes
            || points_full
        {
            if points_full {
                self.counters.insertion_points_full += 1;
            }
            self.request_bypassed(Bypass::QueueFull, t);
            return None;
        }
        match self.source.lookup(&ih, block, &a.flow) {
            Lookup::Hit(data) if data.len() == len => Some(data),
            Lookup::Hit(_) => {
                self.counters.read_failures += 1;
                None
            }
            Lookup::Miss => {
                self.counters.misses += 1;
                self.counters.miss_bytes += u64::from(block.length);
                if t == Transport::Utp {
                    self.counters.utp.misses += 1;
                }
                None
            }
            Lookup::Refused => {
                self.request_bypassed(Bypass::Policy, t);
                None
            }
        }
    }
}
