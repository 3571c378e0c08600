//! The `cloakroom` binary's command line (no server is started).

use std::process::Command;

#[test]
fn unknown_store_exits_with_2_naming_the_accepted_forms() -> Result<(), std::io::Error> {
    for args in [
        &["--store", "mongodb://localhost"][..],
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
