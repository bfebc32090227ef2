//! Default locations, following the XDG base directory conventions.

use std::{env, path::PathBuf};

/// File name of the daemon's Unix socket inside its runtime directory.
const SOCKET_NAME: &str = "outpostd.sock";

/// Returns `$NAME` as a path if it is set to an absolute path.
fn absolute_var(name: &str) -> Option<PathBuf> {
    env::var_os(name)
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
}

/// Returns `$XDG_<kind>_HOME`, else `$HOME/<fallback>`.
fn xdg_home(var: &str, fallback: &str) -> Option<PathBuf> {
    absolute_var(var).or_else(|| absolute_var("HOME").map(|home| home.join(fallback)))
}

/// The default data directory: `$XDG_STATE_HOME/outpost`, else
/// `~/.local/state/outpost`.
pub fn default_data_dir() -> Option<PathBuf> {
    xdg_home("XDG_STATE_HOME", ".local/state").map(|dir| dir.join("outpost"))
}

/// The default socket: `$XDG_RUNTIME_DIR/outpost/outpostd.sock`, else
/// `~/.local/state/outpost/outpostd.sock`.
pub fn default_socket_path() -> Option<PathBuf> {
    absolute_var("XDG_RUNTIME_DIR")
        .map(|dir| dir.join("outpost"))
        .or_else(default_data_dir)
        .map(|dir| dir.join(SOCKET_NAME))
}

/// The default workspaces directory: `$XDG_CONFIG_HOME/outpost/workspaces`,
/// else `~/.config/outpost/workspaces`.
pub fn default_workspaces_dir() -> Option<PathBuf> {
    xdg_home("XDG_CONFIG_HOME", ".config").map(|dir| dir.join("outpost").join("workspaces"))
}

/// The client's contexts (named daemons): `$XDG_CONFIG_HOME/outpost/contexts.toml`,
/// else `~/.config/outpost/contexts.toml`.
pub fn default_contexts_file() -> Option<PathBuf> {
    xdg_home("XDG_CONFIG_HOME", ".config").map(|dir| dir.join("outpost").join("contexts.toml"))
}

/// Where systemd looks for a user's own units: `$XDG_CONFIG_HOME/systemd/user`,
/// else `~/.config/systemd/user`.
pub fn user_unit_dir() -> Option<PathBuf> {
    xdg_home("XDG_CONFIG_HOME", ".config").map(|dir| dir.join("systemd").join("user"))
}

/// Where `outpostctl trust` pins daemons' certificates:
/// `$XDG_CONFIG_HOME/outpost/known_hosts`, else `~/.config/outpost/known_hosts`.
pub fn default_known_hosts() -> Option<PathBuf> {
    xdg_home("XDG_CONFIG_HOME", ".config").map(|dir| dir.join("outpost").join("known_hosts"))
}
