//! `cairn devnet up` → `status --json` parsed (anvil, the KMS, the VMM, the gateway's and
//! the demo app's CVMs; the demo app reached through the gateway with the printed curl)
//! → `down` leaves no process behind (the recorded pids and every process working in the
//! devnet's directory are checked), on free ports in a temporary directory.
//! While it runs, `devnet.env` has what `cairn dao` needs and `cairn dao status` reads the
//! devnet's DAO, whose timelock owns the demo app (the README walkthrough's upgrade by vote).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::Value;

/// Run `cairn devnet --dir <dir> <args…>`: (exit code, stdout, stderr).
async fn devnet(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("devnet")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("CAIRN_DEVNET_EXIT")
        .env_remove("CAIRN_DEVNET_DIR")
        // Never recompile the workspace under the other tests (the script builds the
        // binaries only when they are missing).
        .env("CAIRN_DEVNET_BUILD", "0")
        .output()
        .await
        .expect("run cairn");
    (
        out.status.code().expect("cairn exited by a signal"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `export K=V` lines of a devnet.env.
fn read_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `cairn --json <args…>` with exactly the devnet.env's variables: (exit code, stdout JSON).
async fn cairn_with_env(env: &HashMap<String, String>, args: &[&str]) -> (i32, Value) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CAIRN_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .arg("--json")
        .args(args)
        .envs(env)
        .output()
        .await
        .expect("run cairn");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("cairn exited by a signal"), json)
}

/// A live, non-zombie process.
fn alive(pid: u64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_ascii_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// Live processes whose working directory is inside `dir`.
fn working_in(dir: &Path) -> Vec<u64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .filter(|pid| {
            alive(*pid)
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(dir))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_up_status_down_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let port = cairn_e2e::free_port().to_string();
    let kms_port = cairn_e2e::free_port().to_string();

    // Not up yet: status says so (exit 1), down has nothing to do.
    let (code, stdout, _) = devnet(dir.path(), &["--json", "status"]).await;
    assert_eq!(code, 1);
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["running"], false);

    let (code, stdout, stderr) = devnet(
        dir.path(),
        &["--json", "up", "--port", &port, "--kms-port", &kms_port],
    )
    .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let up: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(up["rpc_url"], format!("http://127.0.0.1:{port}"));
    assert_eq!(up["kms_urls"][0], format!("https://127.0.0.1:{kms_port}"));

    let (code, stdout, stderr) = devnet(dir.path(), &["--json", "status"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["running"], true);
    let procs = s["processes"].as_array().unwrap();
    let names: Vec<&str> = procs.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "anvil",
            "cairn-kms",
            "cairn-vmm",
            "cairn-guest (CVM gateway)",
            "cairn-guest (CVM demo)"
        ],
        "{s:#}"
    );
    assert!(procs.iter().all(|p| p["alive"] == true), "{s:#}");
    assert!(
        procs
            .iter()
            .filter(|p| !p["listening"].is_null())
            .all(|p| p["listening"] == true),
        "{s:#}"
    );
    let mut pids: Vec<u64> = procs.iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    pids.push(s["state"]["script_pid"].as_u64().unwrap());
    assert!(pids.iter().all(|p| alive(*p)));
    // The apps of the CVMs (the gateway, the echo app) run in the devnet's directory.
    let dir_canon = dir.path().canonicalize().unwrap();
    let in_dir = working_in(&dir_canon);
    assert!(
        in_dir.len() >= 4,
        "guests and their apps in {dir_canon:?}: {in_dir:?}"
    );
    let vmm = s["state"]["vmm_url"].as_str().unwrap();
    assert!(vmm.starts_with("http://127.0.0.1:"), "{s:#}");

    // The printed curl reaches the demo app through the gateway: its answer names the
    // instance the guest agent reports.
    let curl: Vec<&str> = s["state"]["curl"]
        .as_str()
        .unwrap()
        .split_ascii_whitespace()
        .collect();
    assert_eq!(curl[..2], ["curl", "--cacert"], "{curl:?}");
    let run_curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run_curl(&curl[1..]);
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{curl:?}: {answer} {out:?}");
    assert!(
        answer.starts_with("echo ") && answer.trim_end().ends_with(" /"),
        "{answer}"
    );
    // Without the devnet's CA the gateway's certificate is not trusted (curl: exit 60).
    let untrusted = run_curl(&curl[3..]);
    assert_eq!(untrusted.status.code(), Some(60), "{untrusted:?}");

    // A CVM a user deploys through the devnet's VMM (the demo app's allowed compose again)
    // is stopped by `down` too.
    let extra = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--json", "vm", "--vmm"])
        .arg(format!(
            "unix:{}",
            s["state"]["vmm_socket"].as_str().unwrap()
        ))
        .args(["deploy", "--name", "extra", "--port", "8080", "--compose"])
        .arg(dir_canon.join("app/app-compose.json"))
        .args(["--app-id", s["state"]["app_id"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(extra.status.success(), "{extra:?}");
    let extra: Value = serde_json::from_slice(&extra.stdout).unwrap();
    let extra_pid = extra["pid"].as_u64().unwrap();
    assert!(alive(extra_pid));
    pids.push(extra_pid);

    // The DAO: devnet.env names what `cairn dao` reads, the voter's key file is 0600,
    // the Governor answers (an unknown proposal is `Unknown`) and its timelock owns the
    // demo app.
    let env = read_env(&dir.path().join("devnet.env"));
    for k in [
        "CAIRN_GOVERNOR",
        "CAIRN_APP",
        "CAIRN_PRIVATE_KEY_FILE",
        "CAIRN_DAO_TIMELOCK",
        "CAIRN_DAO_TOKEN",
    ] {
        assert!(env.contains_key(k), "devnet.env lacks {k}: {env:#?}");
    }
    assert_eq!(env["CAIRN_APP"], env["CAIRN_APP_ID"]);
    let mode = std::fs::metadata(&env["CAIRN_PRIVATE_KEY_FILE"])
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (code, dao) = cairn_with_env(
        &env,
        &["dao", "status", "allow", &env["CAIRN_COMPOSE_HASH"]],
    )
    .await;
    assert_eq!(code, 0, "{dao:#}");
    assert_eq!(dao["state"], "Unknown", "{dao:#}");
    assert_eq!(dao["governor"], env["CAIRN_GOVERNOR"].as_str());
    assert_eq!(dao["timelock"], env["CAIRN_DAO_TIMELOCK"].as_str());
    let (code, app) = cairn_with_env(&env, &["app", "status", &env["CAIRN_APP"]]).await;
    assert_eq!(code, 0, "{app:#}");
    assert_eq!(app["owner"], env["CAIRN_DAO_TIMELOCK"].as_str());
    assert_eq!(
        app["compose_hashes"][0]["compose_hash"],
        env["CAIRN_COMPOSE_HASH"].as_str()
    );

    // A second up in the same directory is refused while the first runs.
    let (code, _, stderr) = devnet(dir.path(), &["up", "--port", &port]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("already runs"), "{stderr}");

    let (code, stdout, stderr) = devnet(dir.path(), &["--json", "down"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let down: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(down["running"], false);
    assert_eq!(down["stopped"].as_array().unwrap().len(), 5);
    let left: Vec<u64> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert_eq!(left, Vec::<u64>::new(), "processes left after down");
    assert_eq!(
        working_in(&dir_canon),
        Vec::<u64>::new(),
        "CVM processes left after down"
    );
    assert!(!dir.path().join("state.json").exists());
    let (code, _, _) = devnet(dir.path(), &["status"]).await;
    assert_eq!(code, 1);
}
