//! [`RulesSink`]: the rules applied in front of the engine's piece sink. Admission is gated
//! here, so the store and the engine know nothing of policy. It also tracks popularity
//! (distinct subscriber addresses per swarm, fed by REQUESTs), counts decisions per rule,
//! and writes the audit log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use super::{Action, Context, Rules, RulesError, BLOCKLIST};
use crate::clock::{now_unix, Clock};
use crate::stats::PolicyCounters;
use crate::swarm::{FlowContext, PurgeError};
use crate::swarm::{Metainfo, PieceSink, VerifiedPiece};
use crate::wire::infohash::InfoHash;

/// Per rule, in the replay report (`rules`) and in /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleCounters {
    /// Verified pieces this rule decided.
    pub matched: u64,
    /// Of those, admitted to the cache.
    pub cached: u64,
    /// Of those, refused (block, observe, allowlist, waiting for popularity). `ignore`
    /// decisions are neither cached nor refused.
    pub refused: u64,
    /// Bytes removed from the cache by this rule (blocklist purges).
    pub purged_bytes: u64,
}

/// Caps of the rules' bookkeeping (config section `policy`); each hit is counted in
/// [`PolicyCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleLimits {
    /// Swarms whose requesters (popularity) are tracked at once, and swarms remembered as
    /// waiting for popularity; past it the table is cleared (popularity restarts from zero,
    /// which only delays admission).
    pub max_tracked_swarms: usize,
    /// Refusals remembered to write one audit line per (swarm, rule, piece); past it the
    /// set is cleared and a repeated refusal may be written again.
    pub max_audit_seen: usize,
    /// Peers whose proven-bad bytes are tracked for `min_peer_proven_bad_bytes`; past it
    /// the table is cleared (a liar must be proven again).
    pub max_tracked_peers: usize,
}

impl Default for RuleLimits {
    fn default() -> Self {
        RuleLimits {
            max_tracked_swarms: 65_536,
            max_audit_seen: 1 << 20,
            max_tracked_peers: 65_536,
        }
    }
}

#[derive(Default)]
struct Requesters {
    addrs: HashSet<IpAddr>,
    last: Option<FlowContext>,
}

/// The audit log: JSON lines, appended. Writes are best effort: a full disk must not stop
/// the capture, so failures are counted (`audit_write_errors`) rather than returned.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    seen: HashSet<(InfoHash, String, u32)>,
}

/// A peer crossed a rule's `min_peer_proven_bad_bytes`: from now on that rule matches what
/// it sends (and REQUESTs sent to it, inline).
#[derive(Serialize)]
struct LiarLine<'a> {
    time: f64,
    peer: SocketAddr,
    rule: &'a str,
    /// "peer_proven_bad".
    action: &'a str,
    /// Bad bytes proven against it so far, over all swarms.
    bytes: u64,
}

#[derive(Serialize)]
struct AuditLine<'a> {
    time: f64,
    info_hash: InfoHash,
    rule: &'a str,
    /// "refuse" or "purge".
    action: &'a str,
    /// The rule's action (block, observe, cache while waiting for popularity, ...).
    decision: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    bytes: u64,
}

impl AuditLog {
    pub fn open(path: &Path) -> Result<AuditLog, RulesError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RulesError::Audit {
                path: path.to_owned(),
                source,
            })?;
        Ok(AuditLog {
            path: path.to_owned(),
            file,
            seen: HashSet::new(),
        })
    }

    fn write(&mut self, line: &impl Serialize, c: &mut PolicyCounters) {
        let Ok(mut s) = serde_json::to_string(line) else {
            c.audit_write_errors += 1;
            return;
        };
        s.push('\n');
        // One write per line with O_APPEND: lines never interleave.
        if self.file.write_all(s.as_bytes()).is_err() {
            c.audit_write_errors += 1;
        }
    }

    /// One line per (swarm, rule, piece) refused, stamped `now`; at most `max_seen`
    /// refusals are remembered (past it the memory starts over, counted).
    #[allow(clippy::too_many_arguments)]
    fn refusal(
        &mut self,
        now: f64,
        ih: InfoHash,
        rule: &str,
        decision: &str,
        index: u32,
        bytes: u64,
        max_seen: usize,
        c: &mut PolicyCounters,
    ) {
        if self.seen.len() >= max_seen {
            self.seen.clear();
            c.audit_seen_resets += 1;
        }
        if !self.seen.insert((ih, rule.to_owned(), index)) {
            return;
        }
        self.write(
            &AuditLine {
                time: now,
                info_hash: ih,
                rule,
                action: "refuse",
                decision,
                index: Some(index),
                bytes,
            },
            c,
        );
    }
}

/// What a (re)load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reload {
    pub rules: usize,
    /// Swarms purged, and their bytes.
    pub purged_swarms: usize,
    pub purged_bytes: u64,
    /// Purges that failed (the swarm may still be held; retried at the next reload).
    pub purge_errors: Vec<String>,
}

impl std::fmt::Display for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rules; purged {} swarms, {} bytes",
            self.rules, self.purged_swarms, self.purged_bytes
        )?;
        for e in &self.purge_errors {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

pub struct RulesSink {
    inner: Arc<dyn PieceSink + Send + Sync>,
    rules: RwLock<Arc<Rules>>,
    counters: Mutex<BTreeMap<String, RuleCounters>>,
    requesters: Mutex<HashMap<InfoHash, Requesters>>,
    /// Swarms whose last decision was "waiting for popularity": their refused pieces are
    /// offered again by assembly (`retry_later`).
    waiting: Mutex<HashSet<InfoHash>>,
    audit: Mutex<Option<AuditLog>>,
    /// Stamps audit lines: the rules read no clock of their own.
    clock: Clock,
    limits: RuleLimits,
    policy: Mutex<PolicyCounters>,
    /// Bad bytes proven per peer, over all swarms (`policy.max_tracked_peers`), and the
    /// liar thresholds each has crossed (written to the audit log once).
    liars: Mutex<HashMap<SocketAddr, Liar>>,
}

#[derive(Default)]
struct Liar {
    bytes: u64,
    /// Thresholds (of `Rules::liar_thresholds`) already audited for this peer.
    audited: u64,
}

impl RulesSink {
    /// Load `path` in front of `inner`, purging what the blocklist names; audit lines are
    /// stamped with the wall clock.
    pub fn new(
        inner: Arc<dyn PieceSink + Send + Sync>,
        path: &Path,
    ) -> Result<(RulesSink, Reload), RulesError> {
        Self::with_limits(inner, path, RuleLimits::default(), now_unix)
    }

    /// [`RulesSink::new`] with the caps of the configuration's `policy` section, and audit
    /// lines stamped by `clock`.
    pub fn with_limits(
        inner: Arc<dyn PieceSink + Send + Sync>,
        path: &Path,
        limits: RuleLimits,
        clock: Clock,
    ) -> Result<(RulesSink, Reload), RulesError> {
        let rules = Rules::load(path)?;
        let audit = rules.audit_log().map(AuditLog::open).transpose()?;
        let sink = RulesSink {
            inner,
            rules: RwLock::new(Arc::new(rules_empty(path))),
            counters: Mutex::new(BTreeMap::new()),
            requesters: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashSet::new()),
            audit: Mutex::new(None),
            clock,
            limits,
            policy: Mutex::new(PolicyCounters::default()),
            liars: Mutex::new(HashMap::new()),
        };
        let r = sink.install(rules, audit);
        Ok((sink, r))
    }

    /// Re-read `path` (SIGHUP). A bad file changes nothing: the rules in force stay.
    pub fn reload(&self, path: &Path) -> Result<Reload, RulesError> {
        let rules = Rules::load(path)?;
        let same_log = {
            let a = self.audit.lock().ok();
            let cur = a.as_ref().and_then(|a| a.as_ref().map(|l| l.path.clone()));
            cur.as_deref() == rules.audit_log()
        };
        // Open the new log before anything changes, so a bad path refuses the whole file.
        let audit = if same_log {
            None
        } else {
            rules.audit_log().map(AuditLog::open).transpose()?
        };
        if same_log {
            let cur = self.audit.lock().ok().and_then(|mut a| a.take());
            return Ok(self.install(rules, cur));
        }
        Ok(self.install(rules, audit))
    }

    fn install(&self, rules: Rules, audit: Option<AuditLog>) -> Reload {
        if let Ok(mut c) = self.counters.lock() {
            for n in rules.names() {
                c.entry(n.to_owned()).or_default();
            }
        }
        if let Ok(mut a) = self.audit.lock() {
            *a = audit;
        }
        let rules = Arc::new(rules);
        if let Ok(mut r) = self.rules.write() {
            *r = rules.clone();
        }
        let mut out = Reload {
            rules: rules.names().len(),
            ..Reload::default()
        };
        let mut blocked: Vec<InfoHash> = rules.blocklist().copied().collect();
        blocked.sort();
        for ih in blocked {
            match self.inner.purge(&ih) {
                Ok(0) => {}
                Ok(bytes) => {
                    out.purged_swarms += 1;
                    out.purged_bytes += bytes;
                    self.count(BLOCKLIST, |c| c.purged_bytes += bytes);
                    if let Ok(mut a) = self.audit.lock() {
                        if let Some(a) = a.as_mut() {
                            let line = AuditLine {
                                time: (self.clock)(),
                                info_hash: ih,
                                rule: BLOCKLIST,
                                action: "purge",
                                decision: Action::Block.as_str(),
                                index: None,
                                bytes,
                            };
                            self.count_policy(|c| a.write(&line, c));
                        }
                    }
                }
                Err(PurgeError(e)) => out.purge_errors.push(format!("{ih}: {e}")),
            }
        }
        out
    }

    pub fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(r) => r.clone(),
            // A panic elsewhere poisoned the lock; the value itself is still whole.
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn counters(&self) -> BTreeMap<String, RuleCounters> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The bookkeeping's own counters (audit log errors, caps hit) since the start.
    pub fn policy_counters(&self) -> PolicyCounters {
        self.policy.lock().map(|c| *c).unwrap_or_default()
    }

    fn count_policy(&self, f: impl FnOnce(&mut PolicyCounters)) {
        if let Ok(mut c) = self.policy.lock() {
            f(&mut c);
        }
    }

    fn count(&self, rule: &str, f: impl FnOnce(&mut RuleCounters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(c.entry(rule.to_owned()).or_default());
        }
    }
}

/// A rule set with nothing in it (only used before the first install).
fn rules_empty(path: &Path) -> Rules {
    Rules {
        path: path.to_owned(),
        audit_log: None,
        blocked: HashSet::new(),
        allowed: None,
        rules: Vec::new(),
        default: Action::Cache,
    }
}

impl PieceSink for RulesSink {
    /// A blocked swarm is never served, even if a piece of it is still on disk.
    fn contains(&self, info_hash: &InfoHash, index: u32) -> bool {
        !self.rules().is_blocked(info_hash) && self.inner.contains(info_hash, index)
    }

    fn admit(&self, m: &Metainfo, piece: VerifiedPiece) -> bool {
        let rules = self.rules();
        let ih = m.info_hash;
        let (subscribers, flow) = self
            .requesters
            .lock()
            .ok()
            .and_then(|t| t.get(&ih).map(|r| (r.addrs.len() as u32, r.last)))
            .unwrap_or((0, None));
        let index = piece.index();
        let bytes = piece.data().len() as u64;
        let liar = piece
            .senders()
            .iter()
            .map(|p| self.peer_proven_bad_bytes(p))
            .max()
            .unwrap_or(0);
        let d = rules.decide(&Context {
            peer_proven_bad_bytes: liar,
            info_hash: &m.info_hash,
            name: Some(&m.name),
            piece_length: m.piece_length,
            total_length: m.total_length,
            index,
            flow: flow.as_ref(),
            subscribers,
        });
        if let Ok(mut w) = self.waiting.lock() {
            if d.waiting {
                if w.len() >= self.limits.max_tracked_swarms {
                    w.clear();
                    self.count_policy(|c| c.waiting_resets += 1);
                }
                w.insert(ih);
            } else {
                w.remove(&ih);
            }
        }
        if d.caches() {
            let ok = self.inner.admit(m, piece);
            self.count(d.rule, |c| {
                c.matched += 1;
                c.cached += u64::from(ok);
            });
            return ok;
        }
        let ignored = d.action == Action::Ignore && !d.waiting;
        self.count(d.rule, |c| {
            c.matched += 1;
            c.refused += u64::from(!ignored);
        });
        if !ignored {
            if let Ok(mut a) = self.audit.lock() {
                if let Some(a) = a.as_mut() {
                    let decision = if d.waiting {
                        "wait_popularity"
                    } else {
                        d.action.as_str()
                    };
                    let (now, max_seen) = ((self.clock)(), self.limits.max_audit_seen);
                    self.count_policy(|c| {
                        a.refusal(now, ih, d.rule, decision, index, bytes, max_seen, c)
                    });
                }
            }
        }
        false
    }

    fn touch(&self, info_hash: &InfoHash, index: u32) {
        self.inner.touch(info_hash, index)
    }

    /// A blocked swarm's info dictionary is not persisted either.
    fn learn(&self, m: &Metainfo) {
        if !self.rules().is_blocked(&m.info_hash) {
            self.inner.learn(m)
        }
    }

    fn cached_pieces(&self, info_hash: &InfoHash) -> u64 {
        self.inner.cached_pieces(info_hash)
    }

    fn store_counters(&self) -> crate::stats::StoreCounters {
        self.inner.store_counters()
    }

    fn flush(&self) {
        self.inner.flush()
    }

    fn requested(&self, info_hash: &InfoHash, flow: &FlowContext) {
        let rules = self.rules();
        if !rules.wants_requests() {
            return;
        }
        let cap = rules.max_min_subscribers() as usize;
        let Ok(mut t) = self.requesters.lock() else {
            return;
        };
        let ih = *info_hash;
        if t.len() >= self.limits.max_tracked_swarms && !t.contains_key(&ih) {
            t.clear();
            self.count_policy(|c| c.requesters_resets += 1);
        }
        let r = t.entry(ih).or_default();
        // Only as many addresses as the strictest rule needs are kept.
        if r.addrs.len() < cap {
            r.addrs.insert(flow.subscriber.ip());
        }
        r.last = Some(*flow);
    }

    fn purge(&self, info_hash: &InfoHash) -> Result<u64, PurgeError> {
        self.inner.purge(info_hash)
    }

    fn watches_requests(&self) -> bool {
        self.rules().wants_requests()
    }

    fn proven_bad(&self, peer: SocketAddr, bytes: u64) {
        let rules = self.rules();
        let thresholds = rules.liar_thresholds();
        let crossed: Vec<(&str, u64)> = {
            let Ok(mut t) = self.liars.lock() else { return };
            if t.len() >= self.limits.max_tracked_peers && !t.contains_key(&peer) {
                t.clear();
                self.count_policy(|c| c.liars_resets += 1);
            }
            let l = t.entry(peer).or_default();
            l.bytes = l.bytes.saturating_add(bytes);
            let total = l.bytes;
            // Bit k: threshold k (lowest first) audited; at most 64 liar rules are.
            let mut out = Vec::new();
            for (k, &(rule, n)) in thresholds.iter().enumerate().take(64) {
                if total >= n && l.audited & (1 << k) == 0 {
                    l.audited |= 1 << k;
                    out.push((rule, total));
                }
            }
            out
        };
        if crossed.is_empty() {
            return;
        }
        if let Ok(mut a) = self.audit.lock() {
            if let Some(a) = a.as_mut() {
                let now = (self.clock)();
                for (rule, total) in crossed {
                    let line = LiarLine {
                        time: now,
                        peer,
                        rule,
                        action: "peer_proven_bad",
                        bytes: total,
                    };
                    self.count_policy(|c| a.write(&line, c));
                }
            }
        }
    }

    fn peer_proven_bad_bytes(&self, peer: &SocketAddr) -> u64 {
        self.liars
            .lock()
            .ok()
            .and_then(|t| t.get(peer).map(|l| l.bytes))
            .unwrap_or(0)
    }

    fn may_fetch(&self, info_hash: &InfoHash) -> bool {
        self.rules().may_fetch(info_hash) && self.inner.may_fetch(info_hash)
    }

    fn retry_later(&self, info_hash: &InfoHash) -> bool {
        self.waiting.lock().is_ok_and(|w| w.contains(info_hash))
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn tracked_swarms_cap_counts_each_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        std::fs::write(
            &path,
            "rules:\n- name: popular\n  match: {}\n  action: cache\n  min_subscribers: 2\n",
        )
        .unwrap();
        let inner = Arc::new(crate::swarm::MemorySink::default());
        let limits = RuleLimits {
            max_tracked_swarms: 2,
            ..RuleLimits::default()
        };
        let (sink, _) = RulesSink::with_limits(inner, &path, limits, now_unix).unwrap();
        let flow = FlowContext {
            subscriber: "10.0.0.1:5000".parse().unwrap(),
            upstream: "192.0.2.1:6881".parse().unwrap(),
            vlan: None,
        };
        for ih in [[1; 20], [2; 20], [1; 20], [3; 20], [4; 20], [5; 20]] {
            sink.requested(&InfoHash::from(ih), &flow);
        }
        // [3] finds two tracked and clears them; [5] finds [3] and [4].
        assert_eq!(sink.policy_counters().requesters_resets, 2);
        assert_eq!(sink.policy_counters().waiting_resets, 0);
    }
}
