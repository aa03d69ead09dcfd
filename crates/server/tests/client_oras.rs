//! The Python ORAS client (PyPI `oras`, installed by
//! scripts/install-test-deps.sh) against the real `berth` binary: artifacts
//! with an artifactType pushed monolithically and in chunks, pulled back
//! byte for byte, referrers attached with `subject` and found through the
//! referrers API (with the artifactType filter), logged in as the admin (the
//! client uses the registry's token endpoint). The checks live in
//! tests/oras_client.py, which exits non-zero on any mismatch.

mod common;

use std::process::Command;

use common::{Berth, http_get, require_tool, run_status, unique};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[test]
fn oras_python_client_artifacts_and_referrers() {
    require_tool("python3");
    let probe = run_status(Command::new("python3").args([
        "-c",
        "import oras.client, oras.oci, oras.version; print(oras.version.__version__)",
    ]));
    assert!(
        probe.status.success(),
        "the Python `oras` package is not importable by python3: run scripts/install-test-deps.sh\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let server = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let repo = format!("artifacts/{}", unique("oras"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oras_client.py");

    let out = run_status(
        Command::new("python3")
            .arg(script)
            .arg(&server.addr)
            .arg(&repo)
            .arg(work.path().join("oras-work"))
            .env("BERTH_TEST_USERNAME", common::ADMIN_USER)
            .env("BERTH_TEST_PASSWORD", common::ADMIN_PASSWORD)
            .env("PYTHONUNBUFFERED", "1"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "oras_client.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let summary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ORAS-OK "))
        .unwrap_or_else(|| panic!("no ORAS-OK line in the script output:\n{stdout}\n{stderr}"));
    let summary: serde_json::Value = serde_json::from_str(summary).unwrap();
    assert_eq!(summary["referrers"], 1);

    // Cross-check from Rust: the referrers index of the `mono` artifact lists
    // the SBOM only (the script deleted the signature).
    let mono = summary["mono"].as_str().unwrap();
    let sbom = summary["sbom"].as_str().unwrap();
    let r = http_get(
        &format!("{}/v2/{repo}/referrers/{mono}", server.url),
        OCI_INDEX,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let listed: Vec<String> = r.json()["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec![sbom.to_string()]);

    // The referrers survive a restart (they live in the metadata DB).
    let mut server = server;
    server.restart();
    let r = http_get(
        &format!("{}/v2/{repo}/referrers/{mono}", server.url),
        OCI_INDEX,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["manifests"][0]["digest"], sbom);
    assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(1));
}
