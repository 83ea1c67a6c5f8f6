//! Stateless, zero-copy views over bytes from the wire, and the emitters that write them.
//! Nothing here keeps state between calls except the peer-wire framing core, which is fed
//! a stream; every view's constructor checks lengths first so accessors cannot panic
//! afterwards (`new_checked`, smoltcp-style), and every header the program builds is
//! written here (`*Repr::emit`, `peerwire::emit`).

pub mod bencode;
pub mod checksum;
pub mod entropy;
pub mod ether;
pub mod infohash;
pub mod ip;
pub mod link;
pub mod peerwire;
pub mod seq;
pub mod tcp;
pub mod tcpframe;
pub mod udp;
pub mod udpframe;
pub mod utp;
