//! Per-connection BitTorrent state: cutting each direction's byte stream into messages
//! (`stream`), and what the two directions tell about each other (`conn`).

pub mod conn;
pub mod stream;

pub use stream::{Event, ParserLimits, StreamParser};
