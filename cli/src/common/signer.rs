//! Transaction signers: a private key from `CAIRN_PRIVATE_KEY` or a file, or a Foundry
//! keystore (`cast wallet new|import`) unlocked with `--password-file` or a prompt. Key
//! material is never printed: errors name the file, never its contents, and buffers are
//! zeroized.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use cairn_onchain::alloy::signers::local::PrivateKeySigner;
use clap::Args;
use zeroize::Zeroizing;

use super::config::read_bounded;
use super::keystore;
use super::output::fail;

/// The environment variable holding a hex private key.
pub const PRIVATE_KEY_ENV: &str = "CAIRN_PRIVATE_KEY";
/// Largest key or password file read.
const MAX_SECRET_FILE: u64 = 4096;
/// Largest keystore read.
const MAX_KEYSTORE: u64 = 64 * 1024;

/// Signer flags.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// A file holding the sender's private key (hex). Or set CAIRN_PRIVATE_KEY.
    #[arg(
        long,
        env = "CAIRN_PRIVATE_KEY_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub private_key_file: Option<PathBuf>,
    /// A Foundry keystore (encrypted JSON, as `cast wallet new` writes).
    #[arg(long, env = "CAIRN_KEYSTORE", global = true, value_name = "FILE")]
    pub keystore: Option<PathBuf>,
    /// The keystore's password (default: ask on the terminal).
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// Where the signer comes from, after flags, env and profile were merged.
#[derive(Debug)]
pub enum SignerSource {
    /// No signer configured.
    None,
    /// `CAIRN_PRIVATE_KEY`.
    Env,
    /// A file of hex.
    KeyFile(PathBuf),
    /// A keystore and how to unlock it.
    Keystore {
        /// The keystore file.
        path: PathBuf,
        /// The password file, or `None` to prompt.
        password_file: Option<PathBuf>,
    },
}

impl SignerArgs {
    /// Flags first, then `CAIRN_PRIVATE_KEY`, then the profile's keys.
    pub fn source(
        &self,
        profile_key_file: Option<PathBuf>,
        profile_keystore: Option<PathBuf>,
        profile_password_file: Option<PathBuf>,
    ) -> SignerSource {
        let password_file = self.password_file.clone().or(profile_password_file);
        if let Some(p) = &self.private_key_file {
            SignerSource::KeyFile(p.clone())
        } else if let Some(p) = &self.keystore {
            SignerSource::Keystore {
                path: p.clone(),
                password_file,
            }
        } else if std::env::var_os(PRIVATE_KEY_ENV).is_some() {
            SignerSource::Env
        } else if let Some(p) = profile_key_file {
            SignerSource::KeyFile(p)
        } else if let Some(p) = profile_keystore {
            SignerSource::Keystore {
                path: p,
                password_file,
            }
        } else {
            SignerSource::None
        }
    }
}

impl SignerSource {
    /// Load the signer; `None` when none is configured.
    pub fn load(&self) -> anyhow::Result<Option<PrivateKeySigner>> {
        Ok(Some(match self {
            SignerSource::None => return Ok(None),
            SignerSource::Env => {
                let text = Zeroizing::new(
                    std::env::var(PRIVATE_KEY_ENV)
                        .map_err(|_| fail(format!("{PRIVATE_KEY_ENV}: not UTF-8")))?,
                );
                from_hex(&text).ok_or_else(|| {
                    fail(format!("{PRIVATE_KEY_ENV}: not a 32-byte hex private key"))
                })?
            }
            SignerSource::KeyFile(path) => {
                let bytes = Zeroizing::new(read_bounded(path, MAX_SECRET_FILE)?);
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(from_hex)
                    .ok_or_else(|| {
                        fail(format!("{}: not a 32-byte hex private key", path.display()))
                    })?
            }
            SignerSource::Keystore {
                path,
                password_file,
            } => {
                let json = read_bounded(path, MAX_KEYSTORE)?;
                let password = match password_file {
                    Some(p) => {
                        let mut bytes = Zeroizing::new(read_bounded(p, MAX_SECRET_FILE)?);
                        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                            bytes.pop();
                        }
                        bytes
                    }
                    None => {
                        if !std::io::stdin().is_terminal() {
                            return Err(fail(format!(
                                "keystore {} needs its password: pass --password-file FILE \
                                 (or run on a terminal to be asked)",
                                path.display()
                            )));
                        }
                        let p = rpassword::prompt_password(format!(
                            "Password for {}: ",
                            path.display()
                        ))
                        .map_err(|e| fail(format!("reading the password: {e}")))?;
                        Zeroizing::new(p.into_bytes())
                    }
                };
                let key = keystore::decrypt(&json, &password)
                    .map_err(|e| fail(format!("keystore {}: {e}", path.display())))?;
                PrivateKeySigner::from_slice(key.as_slice()).map_err(|_| {
                    fail(format!(
                        "keystore {}: the decrypted key is not a valid secp256k1 key",
                        path.display()
                    ))
                })?
            }
        }))
    }
}

/// A signer from hex text (optional `0x`, surrounding whitespace).
fn from_hex(text: &str) -> Option<PrivateKeySigner> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(t, key.as_mut_slice()).ok()?;
    PrivateKeySigner::from_slice(key.as_slice()).ok()
}
