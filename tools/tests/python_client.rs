//! The Python client (`clients/python`), installed with pip the way a shop backend would
//! (into a scratch directory) and run against the `surge` binary this build made: its
//! unittest suite must pass, none of it skipped. Needs python3 with pip, setuptools and wheel
//! (`pip install wheel`): without them the test says so and passes, unless
//! `SURGE_REQUIRE_PYTHON=1` (CI sets it, and installs them).

#[path = "common/pki.rs"]
mod pki;
#[path = "common/scratch.rs"]
mod scratch;

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_client_installs_and_passes_its_tests_against_this_surge() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let works = |args: &[&str]| {
        Command::new("python3")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // (Not one `import pip, setuptools`: setuptools refuses to load after pip's distutils.)
    if !works(&["-m", "pip", "--version"]) || !works(&["-c", "import setuptools, wheel"]) {
        let why = "python3 with pip, setuptools and wheel (pip install wheel)";
        assert!(
            std::env::var("SURGE_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "SURGE_REQUIRE_PYTHON=1 but this needs {why}"
        );
        eprintln!("skipped: needs {why}");
        return;
    }
    let site = std::env::temp_dir().join(format!("surge-python-site-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&site);
    let install = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
        ])
        .arg("--target")
        .arg(&site)
        .arg(repo.join("clients/python"))
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "pip install ./clients/python: {}{}",
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
    // Certificates for the TLS test (the client port over TLS).
    let certs = scratch::ScratchDir::new("python", "pki");
    let pki::Pki { ca, cert, key } = pki::pki(&certs, "node");
    let run = Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(repo.join("clients/python/tests"))
        .env("PYTHONPATH", &site)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SURGE_BIN", env!("CARGO_BIN_EXE_surge"))
        .env("SURGE_TEST_CA", ca)
        .env("SURGE_TEST_CERT", cert)
        .env("SURGE_TEST_KEY", key)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{said}");
    assert!(!said.contains("skipped"), "{said}");
    assert!(said.contains("Ran 9 tests"), "{said}");
    let _ = std::fs::remove_dir_all(&site);
}
