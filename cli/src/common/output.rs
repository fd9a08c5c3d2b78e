//! Output: one JSON object on stdout with `--json`, text otherwise; colours only on a
//! terminal (never with `--json` or `NO_COLOR`); progress bars only on a terminal; the
//! exit codes; the one stdout handle every answer goes through ([`outln!`], [`out!`]).

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What became of a command, and its process exit code (docs/cli.md): 0 done or clean,
/// 1 the answer is no, 2 it could not be done. The two kinds of "could not" share exit
/// code 2; the message (and `--json`'s error code) says which, and whether retrying may
/// help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done (or clean).
    Ok,
    /// Done, and the answer is "no": a policy denial, a contract revert (not the owner, a
    /// defeated proposal, …), a refusal, findings, evidence that does not verify.
    Denied,
    /// Could not do it because of the input: a missing or malformed flag, file or profile
    /// key, the wrong chain id, no contract at an address, an unknown CVM. Nothing was
    /// sent; retrying as is will not help.
    Usage,
    /// Could not do it because the chain, a KMS, the VMM or the gateway could not be
    /// reached or did not answer in time (or answered with a server error); retrying may
    /// help.
    Unavailable,
}

impl Exit {
    /// The process exit code: 0, 1 or 2.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Denied => 1,
            Exit::Usage | Exit::Unavailable => 2,
        }
    }

    /// The error code `--json` prints (`{"error":{"code",…}}`).
    pub fn name(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Denied => "denied",
            Exit::Usage => "usage",
            Exit::Unavailable => "unavailable",
        }
    }

    /// What the user learns beyond the error itself: whether retrying may help.
    pub fn hint(self) -> Option<&'static str> {
        match self {
            Exit::Ok | Exit::Denied => None,
            Exit::Usage => Some("could not do it; retrying as is will not help"),
            Exit::Unavailable => Some("could not do it; retrying may help"),
        }
    }

    /// An error of this kind with `msg` (for [`Exit::Ok`] and [`Exit::Usage`]: a
    /// usage error).
    pub fn error(self, msg: impl Into<String>) -> anyhow::Error {
        match self {
            Exit::Denied => refuse(msg),
            Exit::Unavailable => unavailable(msg),
            Exit::Ok | Exit::Usage => fail(msg),
        }
    }

    /// The kind of a failed HTTP answer from a Cairn service (VMM, gateway admin): a
    /// denial or conflict is "no", a server error or an overloaded service may pass, the
    /// rest (bad request, unknown name, missing token, too large) is the input's fault.
    pub fn of_status(status: u16) -> Exit {
        match status {
            403 | 409 => Exit::Denied,
            408 | 429 | 500..=599 => Exit::Unavailable,
            _ => Exit::Usage,
        }
    }
}

/// Error types that are one message, told apart by their type (their exit code).
macro_rules! message_errors {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $name(pub String);

            impl std::fmt::Display for $name {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str(&self.0)
                }
            }

            impl std::error::Error for $name {}
        )*
    };
}

message_errors! {
    /// A usage or configuration error (exit 2) with a message naming what to fix.
    UsageError;
    /// A refusal (exit 1) that is not a chain error: a proposal in the wrong state, no voting
    /// power. The message names what to do.
    Refused;
    /// Findings (exit 1) of a command that has already printed its answer (with `--json`,
    /// its one JSON object): `main` prints the message on stderr only.
    Findings;
    /// Something this run depends on is unreachable or too slow (exit 2, retrying may help).
    Unavailable;
}

/// A [`Refused`] as an `anyhow::Error`.
pub fn refuse(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused(msg.into()))
}

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
        if let Some(c) = cause.downcast_ref::<cairn_vmm::ClientError>() {
            use cairn_vmm::ClientError as E;
            return match c {
                E::Endpoint(_) => Exit::Usage,
                E::Connect { .. } | E::Http(_) | E::Timeout(_) | E::Decode { .. } => {
                    Exit::Unavailable
                }
                E::Api { status, .. } => Exit::of_status(status.as_u16()),
                _ => Exit::Usage,
            };
        }
    }
    Exit::Usage
}

/// Writes `args` to stdout: the one handle every command's answer goes through (by
/// [`outln!`] and [`out!`]). A reader that has gone (`cairn vm logs | head`) ends the
/// run at once, quietly, with exit 0: it has read all it wanted, and a command that
/// follows a stream must not keep running for nobody. Any other write error (a full
/// disk) ends the run with exit 2 and says so on stderr.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let result = std::io::stdout().lock().write_fmt(args);
    if let Err(e) = result {
        stdout_failed(&e)
    }
}

/// [`write_stdout`] for bytes (a generated completion script).
pub fn write_stdout_bytes(bytes: &[u8]) {
    let result = std::io::stdout().lock().write_all(bytes);
    if let Err(e) = result {
        stdout_failed(&e)
    }
}

/// Writes a failed run's JSON error line to stdout, ignoring a reader that has gone: the
/// exit code and the stderr line still say what failed, so a closed stdout must not turn
/// the failure into exit 0.
pub fn write_stdout_report(line: &str) {
    // Ignored on purpose: stderr and the exit code carry the failure.
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(i32::from(Exit::Ok.code()));
    }
    eprintln!("error: cannot write the answer to stdout: {e}");
    std::process::exit(i32::from(Exit::Unavailable.code()))
}

/// `println!` through [`write_stdout`]: one line of a command's answer on stdout.
macro_rules! outln {
    () => {
        $crate::common::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::common::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write_stdout`]: part of a command's answer on stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::common::write_stdout(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

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
        outln!("{}", serde_json::to_string_pretty(value)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_kind_has_one_of_three_codes() {
        assert_eq!(Exit::Ok.code(), 0);
        assert_eq!(Exit::Denied.code(), 1);
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::Unavailable.code(), 2);
        assert_eq!(exit_code_of(&fail("no --rpc-url")), Exit::Usage);
        assert_eq!(exit_code_of(&refuse("not the owner")), Exit::Denied);
        assert_eq!(exit_code_of(&unavailable("the chain")), Exit::Unavailable);
        // The innermost kind wins even under added context.
        let e = unavailable("the chain").context("app status");
        assert_eq!(exit_code_of(&e), Exit::Unavailable);
        assert!(Exit::Unavailable
            .hint()
            .unwrap()
            .contains("retrying may help"));
        assert!(Exit::Usage.hint().unwrap().contains("will not help"));
    }

    #[test]
    fn vmm_and_gateway_answers_are_classified_by_status() {
        assert_eq!(Exit::of_status(403), Exit::Denied);
        assert_eq!(Exit::of_status(409), Exit::Denied);
        for s in [400, 401, 404, 413, 415] {
            assert_eq!(Exit::of_status(s), Exit::Usage, "{s}");
        }
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(Exit::of_status(s), Exit::Unavailable, "{s}");
        }
        use cairn_vmm::ClientError as E;
        let e = anyhow::Error::new(E::Timeout(Duration::from_secs(1)));
        assert_eq!(exit_code_of(&e), Exit::Unavailable);
        let e = anyhow::Error::new(E::Endpoint("ftp://x".into()));
        assert_eq!(exit_code_of(&e), Exit::Usage);
    }
}
