//! Output: one JSON object on stdout with `--json`, text otherwise; colours only on a
//! terminal (never with `--json` or `NO_COLOR`); progress bars only on a terminal; the
//! exit codes.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The process exit codes (docs/cli.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Done, and the answer is "no": a policy denial, a contract revert (not the owner, a
    /// defeated proposal, …), verification findings.
    Denied = 1,
    /// Bad usage or configuration: a missing or malformed flag, file or profile key, the
    /// wrong chain id, no contract at an address. Nothing was sent.
    Usage = 2,
    /// The chain or the KMS could not be reached or did not answer in time; retrying may
    /// help.
    Unavailable = 3,
}

/// A usage or configuration error (exit 2) with a message naming what to fix.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A refusal (exit 1) that is not a chain error: a proposal in the wrong state, no voting
/// power. The message names what to do.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Findings (exit 1) of a command that has already printed its answer (with `--json`,
/// its one JSON object): `main` prints the message on stderr only.
#[derive(Debug)]
pub struct Findings(pub String);

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Findings {}

/// A [`Refused`] as an `anyhow::Error`.
pub fn refuse(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused(msg.into()))
}

/// Something this run depends on is unreachable (exit 3).
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// An [`Unavailable`] as an `anyhow::Error`.
pub fn unavailable(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Unavailable(msg.into()))
}

/// A [`UsageError`] as an `anyhow::Error`.
pub fn fail(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code of an error: the first error in its chain that says which kind it is.
pub fn exit_code_of(e: &anyhow::Error) -> Exit {
    for cause in e.chain() {
        if cause.is::<UsageError>() {
            return Exit::Usage;
        }
        if cause.is::<Unavailable>() {
            return Exit::Unavailable;
        }
        if cause.is::<Refused>() || cause.is::<Findings>() {
            return Exit::Denied;
        }
        if let Some(c) = cause.downcast_ref::<cairn_onchain::Error>() {
            use cairn_onchain::Error as E;
            return match c.cause() {
                e if e.is_retryable() => Exit::Unavailable,
                E::Denied { .. } | E::Revert { .. } | E::TransactionFailed { .. } => Exit::Denied,
                _ => Exit::Usage,
            };
        }
        if let Some(c) = cause.downcast_ref::<cairn_attestation::Error>() {
            return if c.is_retryable() {
                Exit::Unavailable
            } else {
                Exit::Denied
            };
        }
        if let Some(c) = cause.downcast_ref::<cairn_kms_client::Error>() {
            return if c.is_retryable() {
                Exit::Unavailable
            } else {
                Exit::Denied
            };
        }
    }
    Exit::Usage
}

/// How to print: JSON or text, with or without colour.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    /// `--json`.
    pub json: bool,
    colour: bool,
    terminal: bool,
}

impl Out {
    /// Decide from `--json`, `NO_COLOR` and whether stdout/stderr are terminals.
    pub fn new(json: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let colour = !json
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Out {
            json,
            colour,
            terminal,
        }
    }

    /// Print `value` as the command's one JSON object.
    pub fn json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }

    /// `text` in green (a good answer), when colours are on.
    pub fn good(&self, text: &str) -> String {
        self.paint("32", text)
    }

    /// `text` in red (a bad answer), when colours are on.
    pub fn bad(&self, text: &str) -> String {
        self.paint("31", text)
    }

    /// `text` in yellow (pending), when colours are on.
    pub fn warn(&self, text: &str) -> String {
        self.paint("33", text)
    }

    /// `text` in bold, when colours are on.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A progress bar or spinner on stderr, drawn only when stderr is a terminal (and never
    /// in `--json` mode).
    pub fn progress(&self, len: Option<u64>, message: impl Into<String>) -> Progress {
        let bar = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {wide_msg:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(if self.terminal && !self.json {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        bar.set_message(message.into());
        if len.is_none() {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Progress(bar)
    }
}

/// A progress bar ([`Out::progress`]); cleared when dropped.
pub struct Progress(ProgressBar);

impl Progress {
    /// Set the position.
    pub fn set(&self, pos: u64) {
        self.0.set_position(pos);
    }

    /// Set the message.
    pub fn message(&self, msg: impl Into<String>) {
        self.0.set_message(msg.into());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
