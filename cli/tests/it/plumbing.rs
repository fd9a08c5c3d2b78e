//! The shared plumbing without a chain: `--help` lists the groups with examples and exit
//! codes, completions are generated, usage errors exit 2.

fn cairn(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env_remove("CAIRN_CONFIG")
        .env_remove("CAIRN_PROFILE")
        .output()
        .expect("run cairn")
}

#[test]
fn help_lists_the_groups_examples_and_exit_codes() {
    let out = cairn(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for group in [
        "app",
        "dao",
        "kms",
        "attest",
        "vm",
        "gateway",
        "completions",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(group)),
            "{group} missing from --help:\n{text}"
        );
    }
    assert!(
        text.contains("Exit codes: 0 ok, 1 denied or findings, 2 usage"),
        "{text}"
    );
    let app = String::from_utf8_lossy(&cairn(&["app", "--help"]).stdout).into_owned();
    assert!(
        app.contains("Examples:") && app.contains("cairn app compose-hash"),
        "{app}"
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = cairn(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("compose-hash") && script.contains("cairn"),
            "{shell}"
        );
    }
    let out = cairn(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(cairn(&["app", "no-such-command"]).status.code(), Some(2));
    let out = cairn(&["--json", "dao", "status", "allow", "0x00"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--governor"),
        "{v}"
    );
}

#[test]
fn a_dao_call_must_be_an_appauth_function() {
    let one = "0x0000000000000000000000000000000000000001";
    let propose_call = |calldata: &str| {
        cairn(&[
            "dao",
            "propose",
            "--governor",
            one,
            "--app",
            one,
            "call",
            "--calldata",
            calldata,
        ])
    };
    let out = propose_call("0xdeadbeef");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("selector 0xdeadbeef is not an AppAuth function"),
        "{err}"
    );
    let out = propose_call("0x12");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than a 4-byte selector"));
}

/// `cairn … | head`: a reader that has gone before `cairn` writes ends an answer quietly
/// with exit 0 (no panic), while a failure keeps its exit code.
#[test]
fn a_closed_stdout_ends_an_answer_quietly_and_keeps_a_failures_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let compose = dir.path().join("app-compose.json");
    std::fs::write(&compose, super::app::COMPOSE).unwrap();
    let compose = compose.to_str().unwrap();
    let cases: [(&str, &[&str], i32); 3] = [
        ("a completion script (bytes)", &["completions", "bash"], 0),
        ("a text answer", &["app", "compose-hash", compose], 0),
        (
            "a --json usage error",
            &["--json", "dao", "status", "allow", "0x00"],
            2,
        ),
    ];
    for (name, args, code) in cases {
        // The read end is closed before the child starts: its first write meets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env_remove("CAIRN_CONFIG")
            .env_remove("CAIRN_PROFILE")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run cairn");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        if code == 0 {
            assert!(stderr.is_empty(), "{name}: not quiet: {stderr}");
        }
    }
}
