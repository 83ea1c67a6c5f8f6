//! Policy rules: what the cache may hold and serve. A YAML file (see `rules/default.yaml`)
//! is parsed into [`Rules`]; [`Rules::decide`] gives the action for one verified piece.
//! [`RulesSink`] applies the decisions in front of the engine's piece sink, so the engine's
//! per-packet path is unchanged: rules cost something only when a piece verifies and when a
//! subscriber sends a REQUEST.
//!
//! Evaluation order, first hit wins: the blocklist, the allowlist (when present, swarms not
//! on it are refused), then `rules` in file order, then `default`.

mod glob;
pub mod sink;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use sink::{AuditLog, Reload, RuleCounters, RuleLimits, RulesSink};

// Parsed while deserialising, so a bad info-hash is reported with its line and column.
use crate::wire::infohash::InfoHash;

/// Rule names used for the built-in steps; a rule of the file may not take them.
pub const BLOCKLIST: &str = "blocklist";
pub const ALLOWLIST: &str = "allowlist";
pub const DEFAULT: &str = "default";

/// Largest `min_subscribers`: the tracker keeps that many addresses per swarm at most.
pub const MAX_MIN_SUBSCRIBERS: u32 = 1024;

#[derive(Debug, Error)]
pub enum RulesError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Parse { path: PathBuf, msg: String },
    #[error("audit log {}: {source}", path.display())]
    Audit {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What happens to a piece (and, later, to the requests for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Store verified pieces (inline mode does not serve them).
    Cache,
    /// Store, and serve inline (`peercache inline` answers requests for it).
    Serve,
    /// Count only: never stored. Refusals are audited.
    Observe,
    /// Never stored nor served (takedowns); refusals are audited.
    Block,
    /// Not stored, not audited: traffic the operator does not want to hear about.
    Ignore,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Cache => "cache",
            Action::Serve => "serve",
            Action::Observe => "observe",
            Action::Block => "block",
            Action::Ignore => "ignore",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    /// JSON lines: one per refusal and per purge.
    #[serde(default)]
    audit_log: Option<PathBuf>,
    #[serde(default)]
    blocklist: Vec<InfoHash>,
    #[serde(default)]
    allowlist: Option<Vec<InfoHash>>,
    #[serde(default = "default_action")]
    default: Action,
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

fn default_action() -> Action {
    Action::Cache
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default, rename = "match")]
    when: Match,
    action: Action,
    /// Refuse the swarm's pieces until this many distinct subscriber addresses requested
    /// blocks of it (popularity admission); 0 = at once.
    #[serde(default)]
    min_subscribers: u32,
}

/// Conditions of a rule; all that are given must hold (an empty match matches everything).
/// Lists match when any element does.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    info_hashes: Vec<InfoHash>,
    /// Glob on the metainfo name (`*`, `?`; ASCII case ignored). No metainfo: no match.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subscriber_nets: Vec<IpNet>,
    #[serde(default)]
    upstream_nets: Vec<IpNet>,
    #[serde(default)]
    subscriber_ports: Vec<u16>,
    #[serde(default)]
    upstream_ports: Vec<u16>,
    #[serde(default)]
    vlans: Vec<u16>,
    #[serde(default)]
    min_piece_length: Option<u64>,
    #[serde(default)]
    max_piece_length: Option<u64>,
    #[serde(default)]
    min_total_length: Option<u64>,
    #[serde(default)]
    max_total_length: Option<u64>,
    /// Holds when a peer involved has been proven to send at least this many bad bytes
    /// (block copies differing from their verified piece, over all swarms): for a piece,
    /// any peer whose copies make it up; for serving a REQUEST, the peer it was sent to.
    #[serde(default)]
    min_peer_proven_bad_bytes: Option<u64>,
}

impl Match {
    fn needs_flow(&self) -> bool {
        !(self.subscriber_nets.is_empty()
            && self.upstream_nets.is_empty()
            && self.subscriber_ports.is_empty()
            && self.upstream_ports.is_empty()
            && self.vlans.is_empty())
    }

    fn holds(&self, c: &Context<'_>) -> bool {
        let within = |v: u64, lo: Option<u64>, hi: Option<u64>| {
            lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v <= hi)
        };
        if !self.info_hashes.is_empty() && !self.info_hashes.iter().any(|h| h == c.info_hash) {
            return false;
        }
        if let Some(p) = &self.name {
            if !c.name.is_some_and(|n| glob::matches(p, n)) {
                return false;
            }
        }
        if self
            .min_peer_proven_bad_bytes
            .is_some_and(|n| c.peer_proven_bad_bytes < n)
        {
            return false;
        }
        if !within(c.piece_length, self.min_piece_length, self.max_piece_length)
            || !within(c.total_length, self.min_total_length, self.max_total_length)
        {
            return false;
        }
        if !self.needs_flow() {
            return true;
        }
        // Network, port and VLAN conditions need the flow a subscriber requested on.
        let Some(f) = c.flow else { return false };
        let any_net = |nets: &[IpNet], a: SocketAddr| {
            nets.is_empty() || nets.iter().any(|n| n.contains(&a.ip()))
        };
        let any_port = |ports: &[u16], a: SocketAddr| ports.is_empty() || ports.contains(&a.port());
        any_net(&self.subscriber_nets, f.subscriber)
            && any_net(&self.upstream_nets, f.upstream)
            && any_port(&self.subscriber_ports, f.subscriber)
            && any_port(&self.upstream_ports, f.upstream)
            && (self.vlans.is_empty() || f.vlan.is_some_and(|v| self.vlans.contains(&v)))
    }
}

pub use crate::swarm::FlowContext;

/// What a decision is made on.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub info_hash: &'a InfoHash,
    pub name: Option<&'a str>,
    pub piece_length: u64,
    pub total_length: u64,
    pub index: u32,
    /// The most recent subscriber REQUEST's flow for this swarm, if any was seen.
    pub flow: Option<&'a FlowContext>,
    /// Distinct subscriber addresses that requested blocks of the swarm so far.
    pub subscribers: u32,
    /// The most bad bytes proven against a peer involved (see `min_peer_proven_bad_bytes`).
    pub peer_proven_bad_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    pub rule: &'a str,
    pub action: Action,
    /// The rule matched but its `min_subscribers` is not reached yet: refused for now.
    pub waiting: bool,
}

impl Decision<'_> {
    /// Whether the piece goes into the cache.
    pub fn caches(&self) -> bool {
        matches!(self.action, Action::Cache | Action::Serve) && !self.waiting
    }
}

#[derive(Debug)]
struct Rule {
    name: String,
    when: Match,
    action: Action,
    min_subscribers: u32,
}

/// A validated rules file.
#[derive(Debug)]
pub struct Rules {
    path: PathBuf,
    audit_log: Option<PathBuf>,
    blocked: HashSet<InfoHash>,
    allowed: Option<HashSet<InfoHash>>,
    rules: Vec<Rule>,
    default: Action,
}

impl Rules {
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path).map_err(|msg| RulesError::Parse {
            path: path.to_owned(),
            msg,
        })
    }

    /// Parse and validate; errors carry line and column where YAML knows them. `path`
    /// only names the file (and anchors a relative `audit_log`).
    pub fn parse(text: &str, path: &Path) -> Result<Rules, String> {
        let f: RulesFile = if text.trim().is_empty() {
            serde_yaml::from_str("{}")
        } else {
            serde_yaml::from_str(text)
        }
        .map_err(|e| {
            let msg = e.to_string();
            match e.location() {
                Some(l) if !msg.contains(" at line ") => {
                    format!("line {} column {}: {msg}", l.line(), l.column())
                }
                _ => msg,
            }
        })?;
        let mut names = HashSet::new();
        for r in &f.rules {
            if r.name.is_empty() || [BLOCKLIST, ALLOWLIST, DEFAULT].contains(&r.name.as_str()) {
                return Err(format!("rule name {:?} is empty or reserved", r.name));
            }
            if !names.insert(r.name.as_str()) {
                return Err(format!("rule name {:?} is used twice", r.name));
            }
            if r.min_subscribers > MAX_MIN_SUBSCRIBERS {
                return Err(format!(
                    "rule {:?}: min_subscribers {} is over {MAX_MIN_SUBSCRIBERS}",
                    r.name, r.min_subscribers
                ));
            }
        }
        // A relative audit log is next to the rules file, not wherever the daemon started.
        let audit_log = f.audit_log.map(|p| match path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        });
        Ok(Rules {
            path: path.to_owned(),
            audit_log,
            blocked: f.blocklist.into_iter().collect(),
            allowed: f.allowlist.map(|l| l.into_iter().collect()),
            rules: f
                .rules
                .into_iter()
                .map(|r| Rule {
                    name: r.name,
                    when: r.when,
                    action: r.action,
                    min_subscribers: r.min_subscribers,
                })
                .collect(),
            default: f.default,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn audit_log(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    pub fn blocklist(&self) -> impl Iterator<Item = &InfoHash> {
        self.blocked.iter()
    }

    pub fn is_blocked(&self, ih: &InfoHash) -> bool {
        self.blocked.contains(ih)
    }

    /// Whether the box may fetch this swarm's metainfo from its peers. Before the metainfo
    /// only the info-hash is known, so the blocklist and the allowlist decide; rules on
    /// names and sizes apply to the pieces once it is known.
    pub fn may_fetch(&self, ih: &InfoHash) -> bool {
        !self.blocked.contains(ih) && self.allowed.as_ref().is_none_or(|a| a.contains(ih))
    }

    /// Every name a decision can carry, in evaluation order (for reports that list all).
    pub fn names(&self) -> Vec<&str> {
        let mut v = vec![BLOCKLIST];
        if self.allowed.is_some() {
            v.push(ALLOWLIST);
        }
        v.extend(self.rules.iter().map(|r| r.name.as_str()));
        v.push(DEFAULT);
        v
    }

    /// Whether requests need to be tracked (popularity, or conditions on the flow).
    pub fn wants_requests(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.min_subscribers > 0 || r.when.needs_flow())
    }

    /// The rules that match on liars, with their thresholds, lowest first: a peer crossing
    /// one is written to the audit log once.
    pub fn liar_thresholds(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self
            .rules
            .iter()
            .filter_map(|r| Some((r.name.as_str(), r.when.min_peer_proven_bad_bytes?)))
            .collect();
        v.sort_by_key(|&(_, n)| n);
        v
    }

    /// Largest `min_subscribers` of any rule: the tracker needs no more addresses.
    pub fn max_min_subscribers(&self) -> u32 {
        self.rules
            .iter()
            .map(|r| r.min_subscribers)
            .max()
            .unwrap_or(0)
    }

    pub fn decide(&self, c: &Context<'_>) -> Decision<'_> {
        let ih = *c.info_hash;
        if self.blocked.contains(&ih) {
            return Decision {
                rule: BLOCKLIST,
                action: Action::Block,
                waiting: false,
            };
        }
        if let Some(a) = &self.allowed {
            if !a.contains(&ih) {
                return Decision {
                    rule: ALLOWLIST,
                    action: Action::Observe,
                    waiting: false,
                };
            }
        }
        for r in &self.rules {
            if r.when.holds(c) {
                return Decision {
                    rule: &r.name,
                    action: r.action,
                    waiting: c.subscribers < r.min_subscribers,
                };
            }
        }
        Decision {
            rule: DEFAULT,
            action: self.default,
            waiting: false,
        }
    }
}

#[cfg(test)]
mod tests;
