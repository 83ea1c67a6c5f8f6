//! Stateless, zero-copy views over bytes from the wire. Nothing here keeps state between
//! calls; every constructor checks lengths first so accessors cannot panic afterwards.

pub mod bencode;
pub mod entropy;
pub mod infohash;
pub mod link;
pub mod peerwire;
pub mod seq;
pub mod utp;
