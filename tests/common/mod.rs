//! Helpers shared by the CLI tests: run `lstore` as a separate process.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn lstore(store: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lstore"));
    cmd.arg("--store").arg(store).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut sin = child.stdin.take().unwrap();
        if let Some(d) = stdin {
            sin.write_all(d).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

pub fn ok(store: &Path, args: &[&str]) -> String {
    let o = lstore(store, args, None);
    assert!(
        o.status.success(),
        "lstore {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failing command prints exactly one line on stderr and exits non-zero.
pub fn fails(store: &Path, args: &[&str], needle: &str) {
    let o = lstore(store, args, None);
    assert!(!o.status.success(), "lstore {args:?} should fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line on stderr, got: {err}");
    assert!(
        err.to_lowercase().contains(needle),
        "stderr of {args:?} should mention '{needle}': {err}"
    );
}
