//! Running a CLI (`docker`, `docker compose`, `docker-compose`) with a deadline and
//! bounded output: a hung CLI is killed, a chatty one cannot grow the guest's memory.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::RunnerError;

/// What one CLI run produced. Output past the cap was read and dropped.
pub(crate) struct Captured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Some output was dropped because it exceeded the cap.
    pub truncated: bool,
}

/// Run `cmd` to completion within `timeout`, keeping at most `max_output` bytes of each
/// stream. The child is killed on timeout (and if this future is dropped).
pub(crate) async fn run(
    mut cmd: Command,
    what: &'static str,
    timeout: Duration,
    max_output: usize,
) -> Result<Captured, RunnerError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|source| RunnerError::Spawn { program, source })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let done = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout, max_output),
            read_bounded(stderr, max_output),
            child.wait()
        );
        (out, err, status)
    })
    .await;
    let Ok((out, err, status)) = done else {
        // Best effort: the child is also killed when dropped (kill_on_drop).
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(RunnerError::Timeout {
            what,
            after: timeout,
        });
    };
    let status = status.map_err(|source| RunnerError::Io { what, source })?;
    let (stdout, t1) = out.map_err(|source| RunnerError::Io { what, source })?;
    let (stderr, t2) = err.map_err(|source| RunnerError::Io { what, source })?;
    Ok(Captured {
        status,
        stdout,
        stderr,
        truncated: t1 || t2,
    })
}

/// Read a stream to its end, keeping the first `max` bytes (the rest is drained so the
/// writer never blocks on a full pipe).
async fn read_bounded<R: AsyncRead + Unpin>(
    stream: Option<R>,
    max: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut stream) = stream else {
        return Ok((Vec::new(), false));
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = max.saturating_sub(kept.len());
        if n > room {
            truncated = true;
        }
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[tokio::test]
    async fn output_beyond_the_cap_is_dropped_and_flagged() {
        let c = run(
            sh("head -c 100000 /dev/zero; echo err >&2"),
            "test",
            Duration::from_secs(10),
            1000,
        )
        .await
        .unwrap();
        assert!(c.status.success());
        assert_eq!(c.stdout.len(), 1000);
        assert_eq!(c.stderr, b"err\n");
        assert!(c.truncated);
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_at_the_deadline() {
        let err = run(sh("sleep 30"), "sleeper", Duration::from_millis(200), 1000)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                RunnerError::Timeout {
                    what: "sleeper",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = run(
            Command::new("/nonexistent/cairn-no-such-cli"),
            "x",
            Duration::from_secs(5),
            10,
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(&err, RunnerError::Spawn { program, .. } if program.contains("cairn-no-such-cli")),
            "{err:?}"
        );
    }
}
