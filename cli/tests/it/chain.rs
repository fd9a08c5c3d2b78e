//! Running `cairn` against a devnet's chain: the binary, its environment (hermetic: no
//! variable from the developer's shell), exit code and output.

use std::path::Path;

use cairn_e2e::{Devnet, CONFIRMATIONS};
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::alloy::providers::Provider as _;

/// Every variable `cairn` reads; removed before each run.
const CAIRN_VARS: &[&str] = &[
    "CAIRN_PROFILE",
    "CAIRN_CONFIG",
    "CAIRN_RPC_URL",
    "CAIRN_QUORUM",
    "CAIRN_CHAIN_ID",
    "CAIRN_KMS_AUTH",
    "CAIRN_KMS_URL",
    "CAIRN_CONFIRMATIONS",
    "CAIRN_MAX_HEAD_AGE",
    "CAIRN_RPC_TIMEOUT",
    "CAIRN_PRIVATE_KEY",
    "CAIRN_PRIVATE_KEY_FILE",
    "CAIRN_KEYSTORE",
    "CAIRN_PASSWORD_FILE",
    "CAIRN_APP",
    "CAIRN_GOVERNOR",
    "CAIRN_KMS_TRUST",
    "CAIRN_PCCS_URL",
    "CAIRN_SIM_PKI_SEED",
    "CAIRN_VMM",
    "CAIRN_VMM_TOKEN_FILE",
    "CAIRN_GATEWAY_ADMIN",
    "CAIRN_GATEWAY_ADMIN_TOKEN_FILE",
    "NO_COLOR",
];

/// The `cairn` binary as a command with none of the variables it reads (hermetic:
/// nothing from a developer's shell, e.g. a sourced devnet.env).
pub fn hermetic_cairn() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    for v in CAIRN_VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// Runs `cmd` to its end: its exit status, stdout and stderr (lossy UTF-8).
pub async fn run_to_end(
    cmd: &mut tokio::process::Command,
) -> (std::process::ExitStatus, String, String) {
    let out = cmd.output().await.expect("run cairn");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The string `field` of each element of the JSON array `array` (an event's name, a
/// finding's code, a compose hash); panics with the JSON when it is not one.
pub fn field_of_each<'a>(array: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    let Some(items) = array.as_array() else {
        panic!("not an array: {array}");
    };
    items
        .iter()
        .map(|e| {
            e[field]
                .as_str()
                .unwrap_or_else(|| panic!("no string {field:?} in {e}"))
        })
        .collect()
}

/// One run of `cairn`.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON (panics with the output when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// Assert success and return stdout as JSON.
    pub fn ok_json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "cairn failed: {self:#?}");
        self.json()
    }

    /// Assert exit `code` with a one-line error containing `needle`.
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?}: {self:#?}"
        );
    }
}

/// Run `cairn args…` in `dir` with the chain of `net` configured by env (`CAIRN_RPC_URL`,
/// `CAIRN_CHAIN_ID`, `CAIRN_KMS_AUTH`, `CAIRN_CONFIRMATIONS`) plus `envs`.
pub async fn cairn(net: &Devnet, dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = hermetic_cairn();
    cmd.current_dir(dir)
        .env("CAIRN_RPC_URL", net.endpoint().as_str())
        .env("CAIRN_CHAIN_ID", net.chain_id().to_string())
        .env("CAIRN_KMS_AUTH", net.kms_auth().to_string())
        .env("CAIRN_CONFIRMATIONS", CONFIRMATIONS.to_string())
        .env("CAIRN_MAX_HEAD_AGE", "3600");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (status, stdout, stderr) = run_to_end(cmd.args(args)).await;
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    };
    transcript(args, &run);
    run
}

/// [`cairn`] with the chain and the working directory fixed (one per test).
pub struct Cli<'a> {
    net: &'a Devnet,
    dir: &'a Path,
}

impl<'a> Cli<'a> {
    /// `cairn` on `net`'s chain, run in `dir`.
    pub fn new(net: &'a Devnet, dir: &'a Path) -> Cli<'a> {
        Cli { net, dir }
    }

    /// Run `cairn args…` with `envs` added (see [`cairn`]).
    pub async fn run(&self, envs: &[(&str, &str)], args: &[&str]) -> Run {
        cairn(self.net, self.dir, envs, args).await
    }
}

/// With `CAIRN_DOC_TRANSCRIPT=FILE`, append each command and its output to FILE: the
/// docs' command output (docs/dao.md) is copied from such a run.
fn transcript(args: &[&str], run: &Run) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("CAIRN_DOC_TRANSCRIPT") else {
        return;
    };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let _ = writeln!(
        f,
        "$ cairn {}\n{}{}# exit {}\n",
        args.join(" "),
        run.stdout,
        run.stderr,
        run.code
    );
}

/// Anvil account `idx`'s private key, hex.
pub fn key_hex(net: &Devnet, idx: usize) -> String {
    hex::encode(net.signer(idx).to_bytes())
}

/// The number of transactions `who` has sent (its nonce).
pub async fn nonce(net: &Devnet, who: Address) -> u64 {
    net.client
        .connection()
        .provider()
        .get_transaction_count(who)
        .await
        .expect("nonce")
}
