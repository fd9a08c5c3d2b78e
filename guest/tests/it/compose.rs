//! The `docker-compose` runner's refusals, through the real boot (the real KMS) and this
//! machine's Docker engine (`scripts/setup.sh` starts one; without it these fail). The
//! apps that run are in the cairn-e2e `docker_compose` scenarios.

use cairn_guest::runner::{AppExit, RunnerError};
use cairn_guest::Error;

use crate::world::*;

/// A share of `w`'s app whose compose (allowed on chain) runs `compose_yaml` with
/// `allowed` env names, and `vars` encrypted for it.
async fn compose_share(
    w: &World,
    compose_yaml: &str,
    allowed: &[&str],
    vars: &[(&str, &str)],
) -> Share {
    let mut s = w.share("");
    s.set_compose(
        serde_json::json!({
            "manifest_version": 2,
            "name": "refused",
            "runner": "docker-compose",
            "docker_compose_file": compose_yaml,
            "kms_enabled": true,
            "allowed_envs": allowed,
        })
        .to_string(),
    );
    w.allow(&s).await;
    if !vars.is_empty() {
        s.write(".encrypted-env", &s.encrypt_env(&env_of(vars)));
    }
    s
}

const SECRET: &str = "s3cr3t-api-key";

/// The boot, on a fresh world, of a share whose compose runs `compose_yaml` (see
/// [`compose_share`]), with its boot config as `adjust` leaves it. The boot must fail: the
/// share and the error, for the caller's checks.
async fn refused_boot(
    compose_yaml: &str,
    allowed: &[&str],
    vars: &[(&str, &str)],
    adjust: fn(&mut cairn_guest::BootConfig),
) -> (Share, Error) {
    let w = World::start().await;
    let s = compose_share(&w, compose_yaml, allowed, vars).await;
    let mut cfg = s.config();
    adjust(&mut cfg);
    match boot_host1(&cfg).await {
        Ok(_) => panic!("the boot succeeded"),
        Err(err) => (s, err),
    }
}

#[tokio::test]
async fn env_vars_that_would_steer_the_compose_cli_are_refused_before_keys_or_files_are_written() {
    let (s, err) = refused_boot(
        "services:\n  a:\n    image: cairn/busybox:local\n",
        &["COMPOSE_PROJECT_NAME"],
        &[("COMPOSE_PROJECT_NAME", "someone-elses-project")],
        |_| {},
    )
    .await;
    assert!(
        matches!(&err, Error::Runner(RunnerError::ReservedEnvName(n)) if n == "COMPOSE_PROJECT_NAME"),
        "{err:?}"
    );
    assert!(
        !s.dir.path().join("work/docker-compose.yaml").exists(),
        "nothing may be written"
    );
    assert!(
        is_empty_or_missing(&s.keys_dir()),
        "no key may reach the disk"
    );
}

#[tokio::test]
async fn an_invalid_compose_file_is_refused_with_the_cli_error() {
    let (_s, err) = refused_boot("services:\n  a: [\n", &[], &[], |_| {}).await;
    assert!(
        matches!(&err, Error::Runner(RunnerError::Command { what: "compose config", stderr, .. }) if !stderr.is_empty()),
        "{err:?}"
    );
}

#[tokio::test]
async fn compose_cli_errors_never_carry_env_values() {
    // Compose echoes the substituted value in its error ("... is not a valid float").
    let (_s, err) = refused_boot(
        "services:\n  a:\n    image: cairn/busybox:local\n    cpus: \"${API_KEY}\"\n",
        &["API_KEY"],
        &[("API_KEY", SECRET)],
        |_| {},
    )
    .await;
    let Error::Runner(RunnerError::Command { what, stderr, .. }) = &err else {
        panic!("expected a compose config failure, got {err:?}");
    };
    assert_eq!(*what, "compose config");
    assert!(stderr.contains("<redacted>"), "{stderr}");
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
}

#[tokio::test]
async fn a_service_mounting_the_agent_socket_needs_a_served_agent() {
    let (_s, err) = refused_boot(
        "services:\n  app:\n    image: cairn/busybox:local\n    volumes:\n      - /var/run/dstack.sock:/var/run/dstack.sock\n",
        &[],
        &[],
        |cfg| cfg.agent_socket = None, // --no-agent
    )
    .await;
    assert!(
        matches!(&err, Error::Runner(RunnerError::NoAgentForMount(svc)) if svc == "app"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_exit_of_every_container_is_the_apps_exit_and_stop_removes_them() {
    let w = World::start().await;
    let s = compose_share(
        &w,
        "services:\n  one:\n    image: cairn/busybox:local\n    network_mode: none\n    command: [\"/bin/sh\", \"-c\", \"exit 3\"]\n  two:\n    image: cairn/busybox:local\n    network_mode: none\n    command: [\"/bin/true\"]\n",
        &[],
        &[],
    ).await;
    let mut booted = boot_host1(&s.config()).await.unwrap();
    let app = booted.app.as_mut().unwrap();
    let exit = app.wait().await.unwrap();
    let AppExit::Compose(containers) = &exit else {
        panic!("expected a compose exit, got {exit:?}");
    };
    let mut codes: Vec<(&str, Option<i32>)> = containers
        .iter()
        .map(|c| (c.service.as_str(), c.exit_code))
        .collect();
    codes.sort();
    assert_eq!(codes, vec![("one", Some(3)), ("two", Some(0))]);
    assert!(!exit.success());
    app.stop(std::time::Duration::from_secs(1)).await.unwrap();
    let left = app.compose().unwrap().containers().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}
