//! A service's config: one TOML file (read bounded), then `<PREFIX><KEY>` environment
//! overrides (the dotted key upper-cased with `.` as `_`), then serde into the service's
//! own struct. Every error names the key it is about.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

use serde::de::DeserializeOwned;

/// A configuration value is missing, malformed or inconsistent; `key` names it (a dotted
/// path such as `chain.kms_auth`, or `(file)` / `(config)` for the whole file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config {key}: {reason}")]
pub struct ConfigError {
    /// The configuration key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    /// A [`ConfigError`] about `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// How an environment value becomes a TOML value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvKind {
    /// Taken as it is.
    Str,
    /// A decimal integer.
    Int,
    /// A decimal number.
    Float,
    /// `true` or `false`.
    Bool,
    /// Comma-separated strings (each trimmed; empty items skipped).
    List,
}

/// Which of a service's override keys are not strings; every other key is
/// [`EnvKind::Str`].
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvKinds {
    /// Keys taken as [`EnvKind::Int`].
    pub ints: &'static [&'static str],
    /// Keys taken as [`EnvKind::Float`].
    pub floats: &'static [&'static str],
    /// Keys taken as [`EnvKind::Bool`].
    pub bools: &'static [&'static str],
    /// Keys taken as [`EnvKind::List`].
    pub lists: &'static [&'static str],
}

impl EnvKinds {
    /// How the value of `key` parses.
    pub fn of(&self, key: &str) -> EnvKind {
        let kinds = [
            (self.ints, EnvKind::Int),
            (self.floats, EnvKind::Float),
            (self.bools, EnvKind::Bool),
            (self.lists, EnvKind::List),
        ];
        kinds
            .into_iter()
            .find(|(keys, _)| keys.contains(&key))
            .map_or(EnvKind::Str, |(_, kind)| kind)
    }
}

/// The environment variable that overrides `key`: `prefix` + the key upper-cased with
/// dots as `_` (`CAIRN_KMS_` + `chain.rpc_urls` is `CAIRN_KMS_CHAIN_RPC_URLS`).
fn env_name(prefix: &str, key: &str) -> String {
    format!("{prefix}{}", key.replace('.', "_").to_uppercase())
}

/// `value` of the variable `name` parsed as a `T` (`what` says what it should be).
fn parsed<T>(key: &str, name: &str, value: &str, what: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .parse::<T>()
        .map_err(|e| ConfigError::new(key, format!("{name}: not {what}: {e}")))
}

fn env_value(
    key: &str,
    name: &str,
    kind: EnvKind,
    value: &str,
) -> Result<toml::Value, ConfigError> {
    Ok(match kind {
        EnvKind::Str => toml::Value::String(value.to_owned()),
        EnvKind::Int => toml::Value::Integer(parsed(key, name, value, "an integer")?),
        EnvKind::Float => toml::Value::Float(parsed(key, name, value, "a number")?),
        EnvKind::Bool => toml::Value::Boolean(parsed(key, name, value, "true or false")?),
        EnvKind::List => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
    })
}

/// Write the environment overrides of `keys` (dotted paths; `kinds` says how each value
/// parses) into `table`, creating the tables on the way. Variables not named by a key
/// are ignored.
pub fn apply_env(
    table: &mut toml::Table,
    prefix: &str,
    keys: &[&str],
    kinds: &EnvKinds,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    for key in keys {
        let name = env_name(prefix, key);
        let Some(value) = env.get(&name) else {
            continue;
        };
        let value = env_value(key, &name, kinds.of(key), value)?;
        let mut t = &mut *table;
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        for p in parts {
            let entry = t
                .entry(p.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = entry
                .as_table_mut()
                .ok_or_else(|| ConfigError::new(p, "must be a table"))?;
        }
        t.insert(last.to_owned(), value);
    }
    Ok(())
}

/// Parse TOML `text`, apply the `env` overrides of `keys` ([`apply_env`]) and deserialize
/// the result. The caller validates what serde cannot.
pub fn parse_with_env<T: DeserializeOwned>(
    text: &str,
    prefix: &str,
    keys: &[&str],
    kinds: &EnvKinds,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError::new("(file)", e.to_string()))?;
    let env: HashMap<String, String> = env.into_iter().collect();
    apply_env(&mut table, prefix, keys, kinds, &env)?;
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::new("(config)", e.to_string()))
}

/// Read at most `max` bytes of `path`; a larger file is an error naming `key`.
pub fn read_bounded(path: &Path, key: &str, max: u64) -> Result<Vec<u8>, ConfigError> {
    let f = std::fs::File::open(path)
        .map_err(|e| ConfigError::new(key, format!("cannot open {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    if buf.len() as u64 > max {
        return Err(ConfigError::new(
            key,
            format!("{} exceeds {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}

/// The config file at `path` as text (at most `max` bytes, UTF-8; errors name `(file)`).
pub fn read_text(path: &Path, max: u64) -> Result<String, ConfigError> {
    let bytes = read_bounded(path, "(file)", max)?;
    String::from_utf8(bytes).map_err(|_| ConfigError::new("(file)", "not UTF-8"))
}

/// A required 32-byte hex value (optional `0x`), such as a simulator seed.
pub fn hex32(key: &str, value: Option<&str>) -> Result<[u8; 32], ConfigError> {
    let v = value.ok_or_else(|| ConfigError::new(key, "required"))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.strip_prefix("0x").unwrap_or(v), &mut out)
        .map_err(|e| ConfigError::new(key, format!("need 32 bytes of hex: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        name: String,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        n: Option<i64>,
        f: Option<f64>,
        b: Option<bool>,
        #[serde(default)]
        l: Vec<String>,
    }

    const KEYS: &[&str] = &["name", "inner.n", "inner.f", "inner.b", "inner.l"];

    const KINDS: &EnvKinds = &EnvKinds {
        ints: &["inner.n"],
        floats: &["inner.f"],
        bools: &["inner.b"],
        lists: &["inner.l"],
    };

    fn env<'a>(pairs: &'a [(&str, &str)]) -> impl Iterator<Item = (String, String)> + 'a {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))
    }

    #[test]
    fn every_kind_of_override_lands_in_its_table_and_wins_over_the_file() {
        let c: Cfg = parse_with_env(
            "name = \"file\"\n",
            "CAIRN_T_",
            KEYS,
            KINDS,
            env(&[
                ("CAIRN_T_NAME", "env"),
                ("CAIRN_T_INNER_N", "7"),
                ("CAIRN_T_INNER_F", "0.5"),
                ("CAIRN_T_INNER_B", "true"),
                ("CAIRN_T_INNER_L", " /a.json, ,/b.json"),
                ("CAIRN_OTHER_NAME", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.name, "env");
        assert_eq!(c.inner.n, Some(7));
        assert_eq!(c.inner.f, Some(0.5));
        assert_eq!(c.inner.b, Some(true));
        assert_eq!(c.inner.l, ["/a.json", "/b.json"]);
    }

    #[test]
    fn a_malformed_override_names_its_key_and_variable() {
        for (var, value, key, why) in [
            ("CAIRN_T_INNER_N", "x", "inner.n", "not an integer"),
            ("CAIRN_T_INNER_F", "x", "inner.f", "not a number"),
            ("CAIRN_T_INNER_B", "yes", "inner.b", "not true or false"),
        ] {
            let e = parse_with_env::<Cfg>(
                "name = \"a\"\n",
                "CAIRN_T_",
                KEYS,
                KINDS,
                env(&[(var, value)]),
            )
            .unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.reason.starts_with(&format!("{var}: {why}")), "{e}");
        }
    }

    #[test]
    fn an_override_below_a_non_table_value_is_refused() {
        let e = parse_with_env::<Cfg>(
            "name = \"a\"\ninner = 3\n",
            "CAIRN_T_",
            KEYS,
            KINDS,
            env(&[("CAIRN_T_INNER_N", "1")]),
        )
        .unwrap_err();
        assert_eq!(e, ConfigError::new("inner", "must be a table"));
    }

    #[test]
    fn bad_toml_and_unknown_keys_name_the_file_and_the_config() {
        let e = parse_with_env::<Cfg>("name = ", "CAIRN_T_", KEYS, KINDS, []).unwrap_err();
        assert_eq!(e.key, "(file)");
        let e = parse_with_env::<Cfg>("name = \"a\"\nbogus = 1\n", "CAIRN_T_", KEYS, KINDS, [])
            .unwrap_err();
        assert_eq!(e.key, "(config)");
        assert!(e.reason.contains("bogus"), "{e}");
    }

    #[test]
    fn files_are_read_up_to_their_bound_and_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, "k", 5).unwrap(), b"12345");
        let e = read_bounded(&path, "k", 4).unwrap_err();
        assert_eq!(e.key, "k");
        assert!(e.reason.ends_with("exceeds 4 bytes"), "{e}");
        let e = read_bounded(&dir.path().join("missing"), "k", 4).unwrap_err();
        assert!(e.reason.starts_with("cannot open"), "{e}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_text(&path, 16).unwrap_err(),
            ConfigError::new("(file)", "not UTF-8")
        );
    }

    #[test]
    fn hex32_wants_exactly_32_bytes_with_or_without_0x() {
        let hex = "42".repeat(32);
        assert_eq!(hex32("s", Some(&hex)).unwrap(), [0x42; 32]);
        assert_eq!(hex32("s", Some(&format!("0x{hex}"))).unwrap(), [0x42; 32]);
        assert_eq!(
            hex32("s", None).unwrap_err(),
            ConfigError::new("s", "required")
        );
        let e = hex32("s", Some("4242")).unwrap_err();
        assert!(e.reason.starts_with("need 32 bytes of hex"), "{e}");
    }
}
