//! One exit-code convention for every command (docs/cli.md "Exit codes"): 0 done, 1 the
//! answer is no, 2 could not do it — usage and configuration ("retrying as is will not
//! help") as well as an unreachable chain, VMM or gateway ("retrying may help"). The
//! answers that are "no" (a revert, a denial, findings) are asserted per command in
//! `app`, `dao`, `kms` and `audit`; here the VMM's denial, and every "could not".

use cairn_e2e::vmm::{sleeper_compose, VmmNode};
use cairn_e2e::Devnet;
use cairn_protocol::api::ErrorBody;

/// A command's exit code, stdout and stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Exit 2 with one stderr line containing `needle`, saying whether retrying helps.
    fn could_not(&self, needle: &str, retry_may_help: bool) {
        assert_eq!(self.code, 2, "{}\n{}", self.stdout, self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", self.stderr);
        assert!(self.stderr.contains(needle), "{}", self.stderr);
        let hint = if retry_may_help {
            "retrying may help"
        } else {
            "retrying as is will not help"
        };
        assert!(self.stderr.contains(hint), "{}", self.stderr);
    }
}

/// Runs `cairn` with none of the developer's `CAIRN_*` settings, plus `envs`.
async fn cairn(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CAIRN_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .await
        .expect("run cairn");
    Run {
        code: out.status.code().expect("cairn exited by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A loopback URL nothing listens on.
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn an_unreachable_chain_vmm_or_gateway_exits_2_and_says_retrying_may_help() {
    let closed = closed_url();
    let dir = tempfile::tempdir().unwrap();

    // The chain (was exit 3).
    let chain = [
        ("CAIRN_RPC_URL", closed.as_str()),
        ("CAIRN_CHAIN_ID", "31337"),
        (
            "CAIRN_KMS_AUTH",
            "0x5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        ),
        ("CAIRN_RPC_TIMEOUT", "5"),
    ];
    let app = "0x6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";
    let r = cairn(&["app", "status", "--app", app], &chain).await;
    r.could_not("", true);
    let r = cairn(&["--json", "app", "status", "--app", app], &chain).await;
    assert_eq!(r.code, 2);
    let body: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{}", r.stdout);

    // The VMM (was exit 1).
    let socket = dir.path().join("no-vmm.sock");
    let vmm = format!("unix:{}", socket.display());
    cairn(&["vm", "--vmm", &vmm, "list"], &[])
        .await
        .could_not("cannot connect to the VMM", true);
    cairn(&["vm", "--vmm", &closed, "list"], &[])
        .await
        .could_not("cannot connect to the VMM", true);

    // The gateway's admin endpoint (was exit 1).
    cairn(&["gateway", "--admin", &closed, "status"], &[])
        .await
        .could_not("the gateway at", true);
    let r = cairn(&["--json", "gateway", "--admin", &closed, "status"], &[]).await;
    assert_eq!(r.code, 2);
    let body: ErrorBody = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        body.error.message.contains("the gateway at"),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn bad_configuration_of_vm_and_gateway_exits_2_and_says_retrying_will_not_help() {
    cairn(&["vm", "--vmm", "ftp://example.org", "list"], &[])
        .await
        .could_not("not a VMM endpoint", false);
    cairn(
        &["gateway", "--admin", "https://127.0.0.1:1", "status"],
        &[],
    )
    .await
    .could_not("plain HTTP", false);
    let missing = "/nonexistent/cairn-admin-token";
    cairn(
        &[
            "gateway",
            "--admin",
            "http://127.0.0.1:1",
            "--token-file",
            missing,
            "status",
        ],
        &[],
    )
    .await
    .could_not(missing, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vmm_denial_exits_1_and_an_unknown_cvm_exits_2() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let vmm = VmmNode::start(&net, &kms, "").await;
    let dir = tempfile::tempdir().unwrap();
    let compose = dir.path().join("app.json");
    std::fs::write(&compose, sleeper_compose("v1")).unwrap();
    let endpoint = format!("unix:{}", vmm.socket.display());
    let stranger = format!("0x{}", "5a".repeat(20));

    // The chain says no: exit 1, the contract's reason on one line.
    let r = cairn(
        &[
            "vm",
            "--vmm",
            &endpoint,
            "deploy",
            "--name",
            "x",
            "--compose",
            compose.to_str().unwrap(),
            "--app-id",
            &stranger,
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("App not registered"), "{}", r.stderr);
    assert!(!r.stderr.contains("retrying"), "{}", r.stderr);

    // No such CVM: the input's fault.
    cairn(&["vm", "--vmm", &endpoint, "status", "no-such-cvm"], &[])
        .await
        .could_not("404", false);
    kms.stop().await;
}
