//! Per info-hash knowledge: the metainfo (from the wire or from .torrent files), piece
//! assembly from blocks, and verification against the hashes that chain to the info-hash.

pub mod metainfo;
pub mod pieces;

pub use metainfo::{Metainfo, MetainfoError};
