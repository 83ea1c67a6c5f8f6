//! Flags between the signal handlers and a long-running mode's loop.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Flags the signal handlers set; the capture loop polls them between reads.
#[derive(Clone, Default)]
pub struct Control {
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}
