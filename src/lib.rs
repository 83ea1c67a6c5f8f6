//! peercache: an ISP-side cache for BitTorrent traffic. Design notes: docs/design.md.
#![deny(unsafe_code)]

pub mod cache;
pub mod capture;
pub mod clock;
pub mod config;
pub mod content;
pub mod counter;
pub mod engine;
pub mod fetch;
pub mod flow;
pub mod http;
pub mod inline;
pub mod metrics;
pub mod peerwire;
pub mod replay;
pub mod report;
pub mod rules;
pub mod runtime;
pub mod serve;
pub mod sim;
pub mod size;
pub mod stats;
pub mod swarm;
pub mod synth;
pub mod tap;
pub mod wire;
