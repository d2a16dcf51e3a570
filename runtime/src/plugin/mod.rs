//! PJRT plugin discovery (being written). Placeholder: honours VIDLOWER_PJRT_PLUGIN only.

use std::path::PathBuf;

/// The plugin path named by `VIDLOWER_PJRT_PLUGIN`, if set.
pub fn from_env() -> Option<PathBuf> {
    std::env::var_os("VIDLOWER_PJRT_PLUGIN").map(PathBuf::from)
}
