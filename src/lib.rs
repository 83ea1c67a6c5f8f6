//! peercache: an ISP-side cache for BitTorrent traffic. See DESIGN.md in the shared folder.
#![deny(unsafe_code)]

pub mod synth;
