//! The library's tokio runtime, created on first use and shared by every
//! handle. Blocking calls run their future on it from the caller's thread.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::error::{Failure, MicrobotStatus};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime (built on first call).
pub(crate) fn runtime() -> Result<&'static Runtime, Failure> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("microbot-runtime")
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                MicrobotStatus::State,
                format!("cannot start the runtime: {e}"),
            )
        })?;
    // Another thread may have won the race; its runtime is kept, ours dropped.
    Ok(RUNTIME.get_or_init(|| built))
}

/// Runs `future` to completion on the runtime, blocking this thread.
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, Failure> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Failure::new(
            MicrobotStatus::State,
            "a blocking microbot function was called from inside an async runtime",
        ));
    }
    Ok(runtime()?.block_on(future))
}
