//! The differential oracle (tests/differential/oracle.py): a few thousand generated and mutated
//! model files (pickles, .npy/.npz, joblib, compressed streams, torch zip/legacy/tar and
//! TorchScript, zip and tar archives, Keras JSON/.keras/HDF5), each loaded by the real loader in
//! a sandbox (a payload only writes a marker file) and scanned by this build's `modelgate`.
//! Fails on any disagreement: a payload that ran but was not rejected, a benign file a loader
//! reads cleanly that is rejected, a model a loader opens that is called unsupported.
//!
//! The loaders: numpy, joblib and h5py in the venv `.ci/run` makes (/opt/mg-venv, or
//! MG_ORACLE_PYTHON), torch 1.13 from Debian's python3-torch (/usr/bin/python3, or
//! MG_TORCH_PYTHON). Without them the test is skipped, unless CI=true.
//! MODELGATE_ORACLE_SEED and MODELGATE_ORACLE_CASES choose another run (the default is fixed,
//! so a failure reproduces); bench/oracle.sh is the long run.

use std::path::PathBuf;
use std::process::Command;

fn oracle_python() -> Option<PathBuf> {
    let p =
        std::env::var_os("MG_ORACLE_PYTHON").map_or_else(|| PathBuf::from("/opt/mg-venv/bin/python"), PathBuf::from);
    let ok = Command::new(&p).args(["-c", "import numpy, joblib, h5py"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(p)
}

fn torch_python() -> Option<PathBuf> {
    let p = std::env::var_os("MG_TORCH_PYTHON").map_or_else(|| PathBuf::from("/usr/bin/python3"), PathBuf::from);
    let ok = Command::new(&p).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(p)
}

#[test]
fn real_loaders_agree_with_modelgate() {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let Some(python) = oracle_python() else {
        assert!(!ci, "the oracle's loaders are required when CI=true (.ci/run installs them into /opt/mg-venv)");
        eprintln!("skipping the oracle: no Python with numpy, joblib and h5py (run .ci/run or set MG_ORACLE_PYTHON)");
        return;
    };
    let torch = torch_python();
    assert!(torch.is_some() || !ci, "torch (Debian's python3-torch) is required when CI=true");
    let seed = std::env::var("MODELGATE_ORACLE_SEED").unwrap_or_else(|_| "20240607".into());
    let cases = std::env::var("MODELGATE_ORACLE_CASES").unwrap_or_else(|_| "2500".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/differential/oracle.py");
    let mut cmd = Command::new(&python);
    cmd.arg(script)
        .args(["--modelgate", env!("CARGO_BIN_EXE_modelgate")])
        .args(["--seed", &seed, "--cases", &cases, "--ci", "--minimize", "15"])
        .arg("--torch-python")
        .arg(torch.as_deref().unwrap_or_else(|| std::path::Path::new("/nonexistent")));
    if ci {
        cmd.arg("--require-all");
    }
    let out = cmd.output().expect("run the oracle");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the oracle found disagreements (seed {seed}, {cases} cases):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("disagreements: 0 in 0 classes"), "unexpected oracle output:\n{stdout}");
}
