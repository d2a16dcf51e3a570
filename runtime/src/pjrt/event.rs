//! `PJRT_Event`: completion of asynchronous work (transfers, executions), and its error.

use std::sync::Arc;

use super::error::Result;
use super::ffi::{self, Args};
use super::plugin::Plugin;

/// An owned `PJRT_Event`, destroyed on drop whether or not it was awaited.
///
/// `Send` but not `Sync`: an event is awaited once, by one owner.
pub(crate) struct Event {
    plugin: Arc<Plugin>,
    raw: *mut ffi::Event,
}

// SAFETY: a PJRT event may be awaited and destroyed from any thread.
unsafe impl Send for Event {}

impl Event {
    /// Takes ownership of an event returned by the plugin; `None` for the null the C API uses
    /// when an operation completed without producing one.
    ///
    /// # Safety
    /// `raw` must be null or a live event from `plugin` that nothing else will destroy.
    pub(crate) unsafe fn from_raw(plugin: &Arc<Plugin>, raw: *mut ffi::Event) -> Option<Event> {
        (!raw.is_null()).then(|| Event {
            plugin: plugin.clone(),
            raw,
        })
    }

    /// Blocks until the event is ready and returns the error of the work it tracks, if any.
    /// `call` names that work in the error (the await itself rarely fails).
    pub(crate) fn wait(self, call: &'static str) -> Result<()> {
        let mut args = ffi::Event_Await_Args::new();
        args.event = self.raw;
        let entry = pjrt_entry!(self.plugin, PJRT_Event_Await)?;
        // SAFETY: the args struct is initialized and `self.raw` is live.
        let error = unsafe { entry(&mut args) };
        // Await hands back the *operation's* error, so it is reported under the operation's name.
        self.plugin.check(call, error)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let mut args = ffi::Event_Destroy_Args::new();
        args.event = self.raw;
        // SAFETY: we own the event and destroy it exactly once. A failure to destroy cannot be
        // reported from drop; its error object is still freed by `check`.
        let _ = unsafe { pjrt_call!(self.plugin, PJRT_Event_Destroy, &mut args) };
    }
}
