//! The dashboard's command table and keymap.
//!
//! One table ([`Command::info`]) says, for every command: its id, label and help text, its
//! default keys, the views and layers where it applies, what it needs of the selected row
//! (so a command that does not fit is not offered, and says why when pressed anyway), and
//! whether it changes something (so `--readonly` is one check, [`CommandInfo::allowed`]).
//! Key dispatch, the footer, the help overlay, the `:` palette and the keymap file
//! (`legion keymap --defaults`) are all generated from it ([`offer`]).
//!
//! The files: `command` (the table), `offer` (availability and what each surface lists),
//! `key` (key specs and their text form), `file` (the bindings and the user's keymap file).
//!
//! It is plain data and pure functions: it never touches the terminal and never performs a
//! command. Confirmation dialogs and the commands' effects belong to the app.
//!
//! Safety rule: no command that changes something (start, stop, reboot, retry, reinstall,
//! add, edit, remove, the plan overlay's apply, shell) may be bound to a Ctrl or Alt combination, because tmux and vim
//! users press those out of habit. The defaults follow the rule and a user file that breaks
//! it is rejected.

mod command;
mod file;
mod key;
pub(crate) mod offer;
#[cfg(test)]
mod tests;

pub use command::{
    Arg, Command, CommandInfo, Footer, Group, Layer, Needs, Palette, UnknownCommand,
};
pub use file::{Keymap, KeymapError, KeymapParseError, KeymapProblem};
pub use key::{KeySpec, KeySpecError};
pub use offer::{Context, Unavailable};

/// The usual name of the keymap file inside the Legion home.
pub const FILE_NAME: &str = "keymap.toml";
