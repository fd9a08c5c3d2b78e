//! The disk under the log fills up (a small tmpfs mounted at the node's `log/`
//! directory, then a filler file that takes every free byte), then space returns.
//!
//! While the disk refuses writes, releases are refused with a clear error
//! (`503 unavailable.log`, the message naming the storage failure), `/healthz` says the
//! same, and nothing that was not made durable is acknowledged: every release a caller
//! got before and during the fill is in the log after a restart of the node from disk.
//! When space returns the node reopens its log in the background and releases resume —
//! no restart, no operator.
//!
//! Mounting needs root (CI runs as root); without it the test fails, naming the cause.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::faults::{audit_node, PHASE_DEADLINE};
use crate::release::app_key;
use crate::world::{pki, World};

/// The tmpfs under the log: room for sled's files and some releases, little else.
const TMPFS_SIZE: &str = "8m";

/// A tmpfs mounted at a directory, unmounted when dropped (lazily if still busy).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (this test needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Write zeros to `path` until the filesystem refuses (ENOSPC); returns bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // What fits in the last partial page.
    for _ in 0..64 {
        if f.write(&chunk[..1]).is_err() {
            break;
        }
        written += 1;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_log_refuses_releases_clearly_acknowledges_nothing_undurable_and_recovers(
) {
    let w = World::new().await;
    let (opts, dir) = w.prepare(0xF1, &pki()).await;
    let mount = Tmpfs::mount(&dir.path().join(cairn_kms::LOG_DIR), TMPFS_SIZE);
    let kms = w.serve(opts, dir.clone()).await;
    let guest = w.guest(0x91);
    let mut conn = kms.client(Some(&guest.cert())).await;
    let mut held = vec![
        app_key(&mut conn)
            .await
            .expect("a release with space")
            .receipt,
    ];

    // The disk fills up. sled may still have room in a segment it already holds, so a
    // few releases can succeed first: each of them must be durable.
    let filler = mount.0.join("filler");
    let filled = fill(&filler);
    let refusal = loop {
        match app_key(&mut conn).await {
            Ok(r) => held.push(r.receipt),
            Err(e) => break e,
        }
        assert!(held.len() < 10_000, "the log never hit the full disk");
    };
    refusal.assert_code(StatusCode::SERVICE_UNAVAILABLE, "unavailable.log");
    assert_eq!(
        refusal.body.error.message,
        "the transparency log could not make the release durable (no space left on the \
         log's disk); nothing was released"
    );
    let size = kms.node.log().size();
    assert_eq!(
        size,
        held.len() as u64,
        "every entry is an acknowledged release"
    );
    // Further releases are refused at once, and the node says why it is not ready.
    for _ in 0..3 {
        let e = app_key(&mut conn).await.unwrap_err();
        assert_eq!(e.body.error.code, "unavailable.log", "{e:?}");
    }
    match kms.node.readiness() {
        Err(e) => assert_eq!(e.code(), "unavailable.log"),
        Ok(()) => panic!("ready with a log that takes no entries"),
    }
    assert!(kms
        .node
        .render_metrics()
        .contains("\ncairn_kms_log_writable 0\n"));
    assert_eq!(kms.node.log().size(), size, "nothing logged while refusing");

    // Space returns: the node reopens its log by itself and releases resume.
    std::fs::remove_file(&filler).expect("free the space");
    let back = Instant::now();
    let deadline = back + PHASE_DEADLINE;
    let resumed = loop {
        match app_key(&mut conn).await {
            Ok(r) => {
                held.push(r.receipt);
                break back.elapsed();
            }
            Err(e) => assert_eq!(e.body.error.code, "unavailable.log", "{e:?}"),
        }
        assert!(Instant::now() < deadline, "releases never resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    kms.node.readiness().expect("ready again");
    assert!(kms.node.metrics().log_recoveries() >= 1);
    let recovered_size = kms.node.log().size();
    assert!(recovered_size >= held.len() as u64);

    // Durable means on disk: a node restarted from the directory holds every release a
    // caller got, and the light client proves each receipt.
    let address = kms.node.address();
    let dir = kms.stop().await;
    let opts = w.options(dir.path(), 0xF1, &pki());
    let kms = w.serve(opts, dir).await;
    assert!(kms.node.log().size() >= recovered_size);
    let receipts: Vec<_> = held.iter().collect();
    let mut source = kms.client(None).await;
    audit_node(&w, &mut source, address, &receipts).await;
    eprintln!(
        "disk full: {filled} filler bytes; {} releases acknowledged, refused with \
         {:?}: {:?}; resumed {resumed:?} after space returned",
        held.len(),
        refusal.body.error.code,
        refusal.body.error.message
    );
    kms.stop().await;
    drop(mount);
}
