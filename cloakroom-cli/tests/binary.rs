//! The `cloakroom` binary's command line (no server is started).

use std::process::Command;

#[test]
fn unknown_store_exits_with_2_naming_the_accepted_forms() -> Result<(), std::io::Error> {
    for args in [
        &["--store", "gopher://localhost"][..],
        &["serve", "--store", "memory"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
            .args(args)
            .env_remove("CLOAKROOM_STORE")
            .output()?;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("sqlite:PATH") && stderr.contains("memory:"),
            "{stderr}"
        );
    }
    Ok(())
}

#[test]
fn store_from_the_environment_is_checked_too() -> Result<(), std::io::Error> {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .env("CLOAKROOM_STORE", "cassandra://localhost")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown store") && stderr.contains("sqlite:PATH"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn help_mentions_the_options() -> Result<(), std::io::Error> {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .arg("--help")
        .output()?;
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--addr",
        "--store",
        "--secure-cookies",
        "CLOAKROOM_STORE",
        "serve",
    ] {
        assert!(stdout.contains(opt), "{opt} missing from:\n{stdout}");
    }
    Ok(())
}

#[test]
fn keygen_prints_a_key_and_with_jwk_an_ed25519_key_pair() -> Result<(), Box<dyn std::error::Error>>
{
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .arg("keygen")
        .output()?;
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout)?;
    assert!(
        cloakroom::crypto::MasterKey::from_base64url(key.trim()).is_ok(),
        "{key}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["keygen", "--jwk"])
        .output()?;
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let seed = doc["seed"].as_str().ok_or("a seed")?;
    assert_eq!(seed.len(), 43);
    assert_eq!(doc["jwk"]["kty"], "OKP");
    assert_eq!(doc["jwk"]["alg"], "EdDSA");
    // The seed is the key the JWK publishes.
    use base64::Engine as _;
    let seed: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seed)?
        .try_into()
        .map_err(|_| "32 bytes")?;
    let key = cloakroom::token::TokenKey::ed25519_from_seed(&seed);
    assert_eq!(doc["jwk"]["kid"].as_str(), Some(key.kid()));
    Ok(())
}
