//! `app-compose.json`: what a CVM runs (DESIGN.md §2, §7; dstack-compatible field names).
//!
//! The compose hash is SHA-256 of the *exact file bytes* ([`compose_hash`]), so parsing
//! never normalises anything that is hashed. The document is bounded by
//! [`MAX_APP_COMPOSE_LEN`] before any JSON is read, then validated ([`AppCompose::parse`]):
//! unknown fields, an unknown runner, a bad app name, an invalid `allowed_envs` name or a
//! malformed `key_provider_id` are errors, never defaults.
//!
//! Fields dstack defines and Cairn does not act on (`features`, `docker_config`,
//! `public_tcbinfo`, `local_key_provider_enabled`, `pre_launch_script`, `storage_fs`,
//! `swap_size`, `tproxy_enabled`) are accepted so that dstack composes hash and parse the
//! same; a compose that *enables* a mode Cairn cannot honour (`local_key_provider_enabled`,
//! a `pre_launch_script`) is rejected rather than silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bounded;
use crate::env::is_valid_env_name;

/// Largest `app-compose.json` accepted, in bytes.
pub const MAX_APP_COMPOSE_LEN: usize = 256 * 1024;
/// Longest app name.
pub const MAX_APP_NAME_LEN: usize = 64;
/// Most arguments of a `process` command line.
pub const MAX_PROCESS_ARGS: usize = 256;
/// Most entries of `allowed_envs` or `process.env`.
pub const MAX_ENVS: usize = 1024;
/// The only manifest versions understood.
pub const SUPPORTED_MANIFEST_VERSIONS: [u32; 2] = [1, 2];
/// Most entries of `port_policy.ports`.
pub const MAX_PORT_POLICY_PORTS: usize = 256;

/// Runner `process`: a measured command line (development, machines without Docker).
pub const RUNNER_PROCESS: &str = "process";
/// Runner `docker-compose`: the dstack runner.
pub const RUNNER_DOCKER_COMPOSE: &str = "docker-compose";

/// Why an `app-compose.json` is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// The file is larger than [`MAX_APP_COMPOSE_LEN`].
    #[error("app-compose.json of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON of the documented shape (includes unknown fields).
    #[error("app-compose.json is malformed: {0}")]
    Json(String),
    /// `manifest_version` is not one of [`SUPPORTED_MANIFEST_VERSIONS`].
    #[error("unsupported manifest_version {0}")]
    ManifestVersion(u32),
    /// `name` is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid app name {0:?}: 1-64 characters from [A-Za-z0-9._-], not starting with '.' or '-'"
    )]
    InvalidName(String),
    /// `runner` is neither `process` nor `docker-compose`.
    #[error("unknown runner {0:?}: expected \"process\" or \"docker-compose\"")]
    UnknownRunner(String),
    /// The runner's own section is missing or empty (`process.command`, `docker_compose_file`).
    #[error("runner {runner} needs {field}")]
    MissingRunnerField {
        /// The runner.
        runner: &'static str,
        /// The field it needs.
        field: &'static str,
    },
    /// An env name (in `allowed_envs` or `process.env`) does not match `^[A-Za-z_][A-Za-z0-9_]*$`.
    #[error("invalid env var name {0:?} in {1}")]
    InvalidEnvName(String, &'static str),
    /// Too many entries in a list.
    #[error("{field} has {count} entries, more than {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// Its entries.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// `key_provider` is set to something other than `kms`.
    #[error("unsupported key_provider {0:?}: only \"kms\"")]
    KeyProvider(String),
    /// `key_provider_id` is not hex (of a DER SubjectPublicKeyInfo).
    #[error("key_provider_id is not hex")]
    KeyProviderId,
    /// The compose asks for a mode Cairn does not implement.
    #[error("unsupported compose option {0}")]
    Unsupported(&'static str),
    /// `port_policy.ports` lists port 0 or the same port twice.
    #[error("port_policy.ports: {0}")]
    PortPolicy(String),
}

/// dstack's `port_policy`: which of the app's ports a gateway may forward to, and which
/// get a PROXY protocol header. Absent, the gateway forwards to every port and sends no
/// header (dstack's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortPolicy {
    /// Per-port attributes.
    #[serde(default)]
    pub ports: Vec<PortAttrs>,
    /// When true, only the ports in [`Self::ports`] are reachable through a gateway.
    #[serde(default)]
    pub restrict_mode: bool,
}

/// One entry of [`PortPolicy::ports`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortAttrs {
    /// The app's port.
    pub port: u16,
    /// Send a PROXY protocol (v2) header on connections the gateway opens to this port.
    #[serde(default)]
    pub pp: bool,
}

impl PortPolicy {
    /// Whether a gateway may forward to `port`.
    pub fn allows(&self, port: u16) -> bool {
        !self.restrict_mode || self.ports.iter().any(|p| p.port == port)
    }

    /// Whether connections to `port` start with a PROXY protocol header.
    pub fn proxy_protocol(&self, port: u16) -> bool {
        self.ports.iter().any(|p| p.port == port && p.pp)
    }

    fn validate(&self) -> Result<(), ComposeError> {
        if self.ports.len() > MAX_PORT_POLICY_PORTS {
            return Err(ComposeError::TooMany {
                field: "port_policy.ports",
                count: self.ports.len(),
                max: MAX_PORT_POLICY_PORTS,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.ports {
            if p.port == 0 {
                return Err(ComposeError::PortPolicy("port 0".to_owned()));
            }
            if !seen.insert(p.port) {
                return Err(ComposeError::PortPolicy(format!(
                    "port {} is listed twice",
                    p.port
                )));
            }
        }
        Ok(())
    }
}

/// The `process` runner's section: `{"command": [...], "env": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Program and arguments; `command[0]` is the program (absolute path or looked up in PATH).
    pub command: Vec<String>,
    /// Plain (measured, public) environment for the process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// How the app is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner<'a> {
    /// Run a command line.
    Process(&'a ProcessSpec),
    /// `docker compose up` with this compose file content.
    DockerCompose(&'a str),
}

/// The parsed `app-compose.json`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCompose {
    /// Format version (dstack uses 1 and 2).
    pub manifest_version: u32,
    /// App name (also the default TLS subject).
    pub name: String,
    /// `process` or `docker-compose`.
    pub runner: String,
    /// The docker-compose YAML (runner `docker-compose`).
    pub docker_compose_file: Option<String>,
    /// The command line (runner `process`; Cairn's own).
    pub process: Option<ProcessSpec>,
    /// Ask a KMS for keys (without it, the app boots without keys or env).
    #[serde(default)]
    pub kms_enabled: bool,
    /// Register with the gateways of sys-config.
    #[serde(default, alias = "tproxy_enabled")]
    pub gateway_enabled: bool,
    /// `"kms"` (the only provider Cairn has); absent means `kms` when `kms_enabled`.
    pub key_provider: Option<String>,
    /// Hex of the KMS root CA SPKI DER the app pins; empty means not pinned.
    #[serde(default)]
    pub key_provider_id: String,
    /// Whether the app's logs may be served publicly.
    #[serde(default)]
    pub public_logs: bool,
    /// Whether system info may be served publicly.
    #[serde(default)]
    pub public_sysinfo: bool,
    /// Whether the TCB info may be served publicly (dstack; informational).
    pub public_tcbinfo: Option<bool>,
    /// Names of the encrypted env vars passed to the app; every other name is dropped.
    #[serde(default)]
    pub allowed_envs: Vec<String>,
    /// Measure an empty instance id (all instances of the app share disk keys).
    #[serde(default)]
    pub no_instance_id: bool,
    /// Require a trusted time source before starting (dstack; informational here).
    #[serde(default)]
    pub secure_time: bool,
    /// dstack's deprecated feature list (accepted, ignored).
    pub features: Option<Vec<String>>,
    /// dstack's docker registry configuration (accepted, ignored).
    pub docker_config: Option<serde_json::Value>,
    /// dstack's local key provider (must not be enabled: Cairn only has the KMS).
    #[serde(default)]
    pub local_key_provider_enabled: bool,
    /// dstack's pre-launch script (must be absent or empty: Cairn does not run it).
    pub pre_launch_script: Option<String>,
    /// dstack's data-disk file system (accepted, ignored).
    pub storage_fs: Option<String>,
    /// dstack's swap size (accepted, ignored).
    pub swap_size: Option<serde_json::Value>,
    /// Which ports a gateway may forward to (dstack's field; see [`PortPolicy`]).
    pub port_policy: Option<PortPolicy>,
}

/// SHA-256 of the exact bytes of `app-compose.json` (DESIGN.md §2).
pub fn compose_hash(app_compose_json: &[u8]) -> [u8; 32] {
    Sha256::digest(app_compose_json).into()
}

/// Whether `name` is a valid app name: 1–64 characters from `[A-Za-z0-9._-]`, not starting
/// with `.` or `-`.
pub fn is_valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_APP_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl AppCompose {
    /// Parse and validate the file bytes (size first, then JSON, then [`Self::validate`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, ComposeError> {
        let too_big = |len, max| ComposeError::TooLarge { len, max };
        let compose: AppCompose =
            bounded::json(bytes, MAX_APP_COMPOSE_LEN, too_big, ComposeError::Json)?;
        compose.validate()?;
        Ok(compose)
    }

    /// Check every field; see the module docs.
    pub fn validate(&self) -> Result<(), ComposeError> {
        if !SUPPORTED_MANIFEST_VERSIONS.contains(&self.manifest_version) {
            return Err(ComposeError::ManifestVersion(self.manifest_version));
        }
        if !is_valid_app_name(&self.name) {
            return Err(ComposeError::InvalidName(
                self.name.chars().take(MAX_APP_NAME_LEN + 8).collect(),
            ));
        }
        self.runner()?;
        check_env_names(self.allowed_envs.iter(), "allowed_envs")?;
        if let Some(p) = &self.process {
            check_env_names(p.env.keys(), "process.env")?;
        }
        match self.key_provider.as_deref() {
            None | Some("kms") => {}
            Some(other) => return Err(ComposeError::KeyProvider(other.chars().take(64).collect())),
        }
        self.pinned_key_provider_id()?;
        if self.local_key_provider_enabled {
            return Err(ComposeError::Unsupported("local_key_provider_enabled"));
        }
        if self
            .pre_launch_script
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty())
        {
            return Err(ComposeError::Unsupported("pre_launch_script"));
        }
        if let Some(policy) = &self.port_policy {
            policy.validate()?;
        }
        Ok(())
    }

    /// The port policy a gateway applies: the compose's, or dstack's default (every port,
    /// no PROXY header) when the compose has none.
    pub fn effective_port_policy(&self) -> PortPolicy {
        self.port_policy.clone().unwrap_or_default()
    }

    /// The runner and its section.
    pub fn runner(&self) -> Result<Runner<'_>, ComposeError> {
        match self.runner.as_str() {
            RUNNER_PROCESS => {
                let p = self
                    .process
                    .as_ref()
                    .filter(|p| p.command.first().is_some_and(|c| !c.is_empty()))
                    .ok_or(ComposeError::MissingRunnerField {
                        runner: RUNNER_PROCESS,
                        field: "process.command",
                    })?;
                if p.command.len() > MAX_PROCESS_ARGS {
                    return Err(ComposeError::TooMany {
                        field: "process.command",
                        count: p.command.len(),
                        max: MAX_PROCESS_ARGS,
                    });
                }
                Ok(Runner::Process(p))
            }
            RUNNER_DOCKER_COMPOSE => self
                .docker_compose_file
                .as_deref()
                .filter(|f| !f.trim().is_empty())
                .map(Runner::DockerCompose)
                .ok_or(ComposeError::MissingRunnerField {
                    runner: RUNNER_DOCKER_COMPOSE,
                    field: "docker_compose_file",
                }),
            other => Err(ComposeError::UnknownRunner(
                other.chars().take(64).collect(),
            )),
        }
    }

    /// The pinned KMS root CA SPKI DER, if `key_provider_id` is set.
    pub fn pinned_key_provider_id(&self) -> Result<Option<Vec<u8>>, ComposeError> {
        let id = self.key_provider_id.trim_start_matches("0x");
        if id.is_empty() {
            return Ok(None);
        }
        hex::decode(id)
            .map(Some)
            .map_err(|_| ComposeError::KeyProviderId)
    }
}

fn check_env_names<'a>(
    names: impl ExactSizeIterator<Item = &'a String>,
    field: &'static str,
) -> Result<(), ComposeError> {
    if names.len() > MAX_ENVS {
        return Err(ComposeError::TooMany {
            field,
            count: names.len(),
            max: MAX_ENVS,
        });
    }
    for name in names {
        if !is_valid_env_name(name) {
            return Err(ComposeError::InvalidEnvName(
                name.chars().take(64).collect(),
                field,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROCESS: &str = r#"{"manifest_version":2,"name":"demo","runner":"process",
        "process":{"command":["/bin/sh","-c","echo hi"],"env":{"MODE":"dev"}},
        "kms_enabled":true,"allowed_envs":["API_KEY"],"key_provider":"kms"}"#;

    #[test]
    fn a_process_compose_parses_and_hashes_its_exact_bytes() {
        let c = AppCompose::parse(PROCESS.as_bytes()).unwrap();
        assert!(matches!(c.runner().unwrap(), Runner::Process(p) if p.command[0] == "/bin/sh"));
        assert_eq!(c.allowed_envs, vec!["API_KEY"]);
        assert_eq!(c.pinned_key_provider_id().unwrap(), None);
        // whitespace changes the hash: it is over bytes, not over the parsed document
        let spaced = format!("{PROCESS} ");
        assert_ne!(
            compose_hash(PROCESS.as_bytes()),
            compose_hash(spaced.as_bytes())
        );
        assert_eq!(
            hex::encode(compose_hash(b"{}")),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn a_dstack_docker_compose_parses() {
        let json = r#"{"manifest_version":2,"name":"app","runner":"docker-compose",
            "docker_compose_file":"services:\n  a:\n    image: nginx\n","kms_enabled":true,
            "tproxy_enabled":true,"public_logs":true,"public_sysinfo":true,"public_tcbinfo":true,
            "local_key_provider_enabled":false,"key_provider_id":"","allowed_envs":[],
            "no_instance_id":false,"secure_time":false,"features":["kms"],"pre_launch_script":""}"#;
        let c = AppCompose::parse(json.as_bytes()).unwrap();
        assert!(c.gateway_enabled);
        assert!(matches!(c.runner().unwrap(), Runner::DockerCompose(f) if f.contains("nginx")));
    }

    #[test]
    fn bad_composes_fail_with_the_precise_error() {
        let cases: &[(&str, ComposeError)] = &[
            (
                r#"{"manifest_version":2,"name":"a","runner":"podman"}"#,
                ComposeError::UnknownRunner("podman".into()),
            ),
            (
                r#"{"manifest_version":2,"name":"../etc","runner":"process","process":{"command":["x"]}}"#,
                ComposeError::InvalidName("../etc".into()),
            ),
            (
                r#"{"manifest_version":2,"name":"","runner":"process","process":{"command":["x"]}}"#,
                ComposeError::InvalidName(String::new()),
            ),
            (
                r#"{"manifest_version":9,"name":"a","runner":"process","process":{"command":["x"]}}"#,
                ComposeError::ManifestVersion(9),
            ),
            (
                r#"{"manifest_version":2,"name":"a","runner":"process"}"#,
                ComposeError::MissingRunnerField {
                    runner: RUNNER_PROCESS,
                    field: "process.command",
                },
            ),
            (
                r#"{"manifest_version":2,"name":"a","runner":"process","process":{"command":[]}}"#,
                ComposeError::MissingRunnerField {
                    runner: RUNNER_PROCESS,
                    field: "process.command",
                },
            ),
            (
                r#"{"manifest_version":2,"name":"a","runner":"docker-compose"}"#,
                ComposeError::MissingRunnerField {
                    runner: RUNNER_DOCKER_COMPOSE,
                    field: "docker_compose_file",
                },
            ),
            (
                r#"{"manifest_version":2,"name":"a","runner":"process","process":{"command":["x"]},"allowed_envs":["1BAD"]}"#,
                ComposeError::InvalidEnvName("1BAD".into(), "allowed_envs"),
            ),
            (
                r#"{"manifest_version":2,"name":"a","runner":"process","process":{"command":["x"],"env":{"A=B":"c"}}}"#,
                ComposeError::InvalidEnvName("A=B".into(), "process.env"),
            ),
            (
                r#"{"manifest_version":2,"name":"a","runner":"process","process":{"command":["x"]},"key_provider":"local"}"#,
                ComposeError::KeyProvider("local".into()),
            ),
            (
                r#"{"manifest_version":2,"name":"a","runner":"process","process":{"command":["x"]},"key_provider_id":"zz"}"#,
                ComposeError::KeyProviderId,
            ),
            (
                r#"{"manifest_version":2,"name":"a","runner":"process","process":{"command":["x"]},"local_key_provider_enabled":true}"#,
                ComposeError::Unsupported("local_key_provider_enabled"),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(
                &AppCompose::parse(json.as_bytes()).unwrap_err(),
                want,
                "{json}"
            );
        }
    }

    #[test]
    fn port_policy_is_dstacks_and_validated() {
        let with = |policy: &str| {
            format!(
                r#"{{"manifest_version":2,"name":"a","runner":"process","process":{{"command":["x"]}},"gateway_enabled":true,"port_policy":{policy}}}"#
            )
        };
        let c = AppCompose::parse(
            with(r#"{"restrict_mode":true,"ports":[{"port":443},{"port":8080,"pp":true}]}"#)
                .as_bytes(),
        )
        .unwrap();
        let p = c.effective_port_policy();
        assert!(p.allows(443) && p.allows(8080) && !p.allows(22));
        assert!(p.proxy_protocol(8080) && !p.proxy_protocol(443));
        // absent: every port, no header; present without restrict_mode: every port too
        let open = AppCompose::parse(PROCESS.as_bytes())
            .unwrap()
            .effective_port_policy();
        assert!(open.allows(22) && !open.proxy_protocol(22));
        let c = AppCompose::parse(with(r#"{"ports":[{"port":1}]}"#).as_bytes()).unwrap();
        assert!(c.effective_port_policy().allows(9));
        for (policy, want) in [
            (
                r#"{"ports":[{"port":0}]}"#,
                ComposeError::PortPolicy("port 0".into()),
            ),
            (
                r#"{"ports":[{"port":80},{"port":80,"pp":true}]}"#,
                ComposeError::PortPolicy("port 80 is listed twice".into()),
            ),
        ] {
            assert_eq!(
                AppCompose::parse(with(policy).as_bytes()).unwrap_err(),
                want
            );
        }
        let e = AppCompose::parse(with(r#"{"ports":[],"restrict":true}"#).as_bytes()).unwrap_err();
        assert!(matches!(e, ComposeError::Json(m) if m.contains("unknown field")));
    }

    #[test]
    fn unknown_fields_and_non_json_are_malformed() {
        let e = AppCompose::parse(br#"{"manifest_version":2,"name":"a","runner":"process","process":{"command":["x"]},"allowed_env":[]}"#).unwrap_err();
        assert!(
            matches!(&e, ComposeError::Json(m) if m.contains("unknown field")),
            "{e}"
        );
        assert!(matches!(
            AppCompose::parse(b"not json").unwrap_err(),
            ComposeError::Json(_)
        ));
    }

    #[test]
    fn oversized_compose_is_rejected_before_parsing() {
        let big = vec![b' '; MAX_APP_COMPOSE_LEN + 1];
        assert_eq!(
            AppCompose::parse(&big).unwrap_err(),
            ComposeError::TooLarge {
                len: MAX_APP_COMPOSE_LEN + 1,
                max: MAX_APP_COMPOSE_LEN
            }
        );
    }

    #[test]
    fn pinned_key_provider_id_decodes_with_or_without_prefix() {
        let mut c = AppCompose::parse(PROCESS.as_bytes()).unwrap();
        c.key_provider_id = "0xabcd".into();
        assert_eq!(c.pinned_key_provider_id().unwrap(), Some(vec![0xab, 0xcd]));
        c.key_provider_id = "ABCD".into();
        assert_eq!(c.pinned_key_provider_id().unwrap(), Some(vec![0xab, 0xcd]));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic_the_parser(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = AppCompose::parse(&bytes);
        }
    }
}
