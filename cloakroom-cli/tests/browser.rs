//! The demo page in headless Chromium: serves the demo on a spare loopback
//! port and runs `browser-tests/devices.spec.mjs` (Playwright) against it.
//! Needs Debian's chromium and `browser-tests/node_modules`, both installed
//! by `scripts/browser.sh`; without them the test is reported skipped
//! (`CLOAKROOM-SERVICE-SKIPPED`), which fails under `CI=true`.
//! Screenshots land in `target/browser-artifacts/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use cloakroom::store::conformance::skip_service;
use cloakroom_cli::{DemoOptions, Stores, build_app_with_stores};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_revoke_and_cross_origin_post() -> TestResult {
    let root = workspace_root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let playwright = root.join("browser-tests/node_modules/playwright-core");
    if !Path::new(&chromium).exists() || !playwright.exists() {
        skip_service(
            "chromium + playwright-core",
            &"not installed: run scripts/browser.sh",
        );
        return Ok(());
    }

    let (app, _handles) = build_app_with_stores(Stores::memory(), &DemoOptions::default()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let artifacts = std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| root.join("target"), PathBuf::from)
        .join("browser-artifacts");
    let url = format!("http://{addr}");
    let dir = root.join("browser-tests");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg("devices.spec.mjs")
            .current_dir(dir)
            .env("CLOAKROOM_URL", url)
            .env("CLOAKROOM_ARTIFACTS", &artifacts)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::null())
            .output()
    })
    .await??;
    server.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown on failure, and with --nocapture.
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "browser checks failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("browser checks passed"), "{stdout}");
    Ok(())
}
