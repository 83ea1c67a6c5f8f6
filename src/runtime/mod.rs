//! What the modes (replay, tap, inline) share: the wiring context handed to every engine
//! ([`Shared`]), the flags signal handlers set ([`Control`]), snapshots for the metrics
//! service, and SIGHUP's rules reload. The modes depend on this module and never on each
//! other; this module depends on no mode and on no engine.

mod control;
pub mod preflight;
mod reload;
pub mod requests;
mod shared;
mod snapshot;
mod watch;

pub use crate::clock::{now_unix, Clock};
pub use control::Control;
pub use reload::{log_reload, reload_rules, ReloadLine};
pub use requests::{RequestLog, SeenRequest};
pub use shared::{install_rules, load_metainfo, open_shared, start_fetch, RuntimeError, Shared};
pub use snapshot::{annotate, snapshot};
pub use watch::{watch_metainfo, MetainfoWatch};
