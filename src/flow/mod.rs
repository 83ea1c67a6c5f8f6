//! Flow tracking: symmetric keys, a bounded table with expiry by packet time, TCP
//! reassembly and IP fragment reassembly. All memory here is capped by `crate::config`.

pub mod ipfrag;
pub mod key;
pub mod table;
pub mod tcp;
pub mod utp;

pub use key::{Dir, FlowKey};
