//! The bindings' tokio runtime, created on first use.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::MicrobotError;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime (built on first call).
pub(crate) fn runtime() -> Result<&'static Runtime, MicrobotError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("microbot-runtime")
        .enable_all()
        .build()
        .map_err(|e| MicrobotError::state(format!("cannot start the runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| built))
}

/// Runs `future` on the runtime, blocking this thread.
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, MicrobotError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(MicrobotError::state(
            "a blocking microbot method was called from inside an async runtime",
        ));
    }
    Ok(runtime()?.block_on(future))
}
