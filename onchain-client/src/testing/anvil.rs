//! Spawning the project's pinned anvil.

use std::path::{Path, PathBuf};

use alloy::node_bindings::{Anvil, AnvilInstance};

/// Environment variable that overrides the anvil binary path.
pub const ANVIL_ENV: &str = "CAIRN_ANVIL";

/// Where npm installs the pinned anvil, relative to a directory holding `node_modules`.
pub const NPM_ANVIL_PATH: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// Finds anvil: `$CAIRN_ANVIL`, else the npm binary in the nearest `node_modules` walking
/// up from `start` (tests pass `env!("CARGO_MANIFEST_DIR")`). `None` if neither exists.
pub fn find_anvil(start: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ANVIL_ENV) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    start
        .ancestors()
        .map(|dir| dir.join(NPM_ANVIL_PATH))
        .find(|p| p.is_file())
}

/// Spawns anvil on a free port (anvil binds port 0 and reports the port it got).
///
/// # Panics
///
/// When anvil cannot be found or started: tests that need a chain must fail loudly,
/// never skip. Run `scripts/setup.sh` (npm ci) or set `CAIRN_ANVIL`.
pub fn spawn_anvil(start: &Path) -> AnvilInstance {
    spawn_anvil_with(start, Anvil::new())
}

/// [`spawn_anvil`] with a customised builder (e.g. `.chain_id(..)`, `.block_time(..)`).
///
/// # Panics
///
/// As [`spawn_anvil`].
pub fn spawn_anvil_with(start: &Path, builder: Anvil) -> AnvilInstance {
    let Some(path) = find_anvil(start) else {
        panic!(
            "anvil not found: set {ANVIL_ENV} or run scripts/setup.sh so that {NPM_ANVIL_PATH} \
             exists in a parent of {}",
            start.display()
        );
    };
    let mut anvil = match builder.path(&path).port(0u16).keep_stdout().try_spawn() {
        Ok(anvil) => anvil,
        Err(e) => panic!("failed to spawn anvil at {}: {e}", path.display()),
    };
    // Anvil logs every request to stdout. Closing the pipe would kill it with EPIPE on
    // its next log line, and leaving it unread would block it once the pipe fills, so
    // drain it until anvil exits.
    if let Some(mut stdout) = anvil.child_mut().stdout.take() {
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    }
    anvil
}
