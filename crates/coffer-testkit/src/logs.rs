//! Worker logs in a test's captured output.
//!
//! Libtest shows what a test printed only when it fails, so every test gets the code's logs
//! for free: [`init`] installs one process-wide subscriber that writes through libtest's
//! capture (`coffer` matches every `coffer_*` crate by prefix). Threads inherit the capture of the test that spawned them, so each failing test
//! shows the logs of its own runtime. `COFFER_TEST_LOG` overrides the filter.

use std::sync::Once;
use tracing_subscriber::EnvFilter;

/// The filter when `COFFER_TEST_LOG` is unset: what an operator would read first.
const DEFAULT_FILTER: &str = "warn,coffer=info";

/// Installs the subscriber once; later calls do nothing.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = EnvFilter::try_from_env("COFFER_TEST_LOG")
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
        // Another subscriber (a test binary's own) wins; that is fine.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    });
}
