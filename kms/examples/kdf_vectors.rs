//! Print the KDF test vectors of docs/kdf.md:
//! `cargo run -p cairn-kms --example kdf_vectors`.

use cairn_attestation::ids::{AppId, InstanceId, InstanceIdBytes};
use cairn_kms::{derive_bytes, label, MasterSecret};
use cairn_kms::{AppKeys, RootKeys};
use sha2::{Digest, Sha256};

fn main() -> Result<(), cairn_kms::Error> {
    let mut m = [0u8; 32];
    for (i, b) in m.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    let master = MasterSecret::from_bytes(m);
    let app_id = AppId([0x11; 20]);
    let instance = InstanceId::Id(InstanceIdBytes([0x22; 20]));
    let a: &[u8] = app_id.as_bytes();
    let i: &[u8] = instance.as_bytes();

    println!("master          {}", hex::encode(m));
    println!("app_id          {}", hex::encode(a));
    println!("instance_id     {}", hex::encode(i));
    println!();
    let okm = |l: &str, parts: &[&[u8]]| -> Result<String, cairn_kms::Error> {
        Ok(hex::encode(derive_bytes(&master, l, parts)?.expose()))
    };
    println!("okm root-k256   {}", okm(label::ROOT_K256, &[])?);
    println!("okm root-ca     {}", okm(label::ROOT_CA, &[])?);
    println!("okm app-k256    {}", okm(label::APP_K256, &[a])?);
    println!("okm app-ca      {}", okm(label::APP_CA, &[a])?);
    println!("okm disk        {}", okm(label::DISK, &[a, i])?);
    println!("okm disk(no id) {}", okm(label::DISK, &[a, &[]])?);
    println!("okm env-x25519  {}", okm(label::ENV_X25519, &[a])?);
    println!(
        "okm app-k256 #1 {}",
        okm(label::APP_K256, &[a, &1u32.to_be_bytes()])?
    );
    println!();

    let root = RootKeys::derive(&master)?;
    let app = AppKeys::derive(&master, &root, &app_id, &instance)?;
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    println!("root k256 pub   {}", hex::encode(root.k256_public()));
    println!(
        "root ca pub     {}",
        hex::encode(
            root.ca()
                .signer()
                .verifying_key()
                .to_encoded_point(true)
                .as_bytes()
        )
    );
    println!("root ca spki    {}", hex::encode(root.ca().spki_der()));
    println!("root ca cert#   {}", sha(root.ca().cert_der()));
    println!("app k256 pub    {}", hex::encode(app.k256_public()));
    println!("kms signature   {}", hex::encode(app.kms_signature()));
    println!(
        "app ca pub      {}",
        hex::encode(
            app.ca()
                .signer()
                .verifying_key()
                .to_encoded_point(true)
                .as_bytes()
        )
    );
    println!("app ca cert#    {}", sha(app.ca().cert_der()));
    println!("disk key        {}", hex::encode(app.disk_key().expose()));
    println!("env x25519 pub  {}", hex::encode(app.env_public()));
    let env_sig = root.sign_env_pubkey(&app_id, 1_700_000_000, &app.env_public())?;
    println!("env pubkey sig  {}", hex::encode(env_sig));
    let derived = cairn_protocol::sig::derive_signed_key(
        &app.k256_secret(),
        b"/wallet/0",
        "ethereum",
        *app.kms_signature(),
    )?;
    println!(
        "getkey pub      {}",
        hex::encode(cairn_protocol::sig::compressed(derived.key.verifying_key()))
    );
    println!("getkey app sig  {}", hex::encode(derived.app_signature));
    println!();
    println!("{}", root.ca().cert_pem());
    Ok(())
}
