//! Printing: one line per figure as it is measured, and the final table of every run with
//! each target's worst, as it goes into the README.

use crate::harness::Row;
use std::io::Write;
use std::path::PathBuf;

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("paired")
}

pub fn line(r: &Row) -> String {
    let verdict = match r.goal.met(r.value) {
        Some(true) => "met",
        Some(false) => "NOT MET",
        None => "",
    };
    format!(
        "{:<3} {} = {} (goal {}) {verdict}  [{}]",
        r.id,
        r.what,
        r.unit.show(r.value),
        r.goal.describe(r.unit),
        r.detail
    )
}

/// The commit being measured, with "+dirty" when the work tree differs from it.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    format!("{head}{}", if dirty { "+dirty" } else { "" })
}

/// Appends one run's figures to `target/paired/runs.jsonl`.
pub fn append_run(run: usize, rows: &[Row]) {
    let dir = out_dir();
    let _ = std::fs::create_dir_all(&dir);
    let figures: serde_json::Map<String, serde_json::Value> =
        rows.iter().map(|r| (r.id.to_string(), r.value.into())).collect();
    let rec = serde_json::json!({
        "commit": commit(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "run": run,
        "gib": crate::data::gib() as f64 / (1u64 << 30) as f64,
        "figures": figures,
    });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("runs.jsonl"))
    {
        let _ = writeln!(f, "{rec}");
    }
}

/// The markdown table: every target's runs, its worst, its goal, and met only when the worst
/// run meets it.
pub fn table(runs: &[Vec<Row>]) -> String {
    let n = runs.len();
    let mut s = String::from("| # | what | reference |");
    for i in 1..=n {
        s += &format!(" run {i} |");
    }
    s += " worst | target | met |\n|---|---|---|";
    s += &"---|".repeat(n + 3);
    s.push('\n');
    for first in runs.first().into_iter().flatten() {
        let vals: Vec<f64> = runs
            .iter()
            .filter_map(|rows| rows.iter().find(|r| r.id == first.id).map(|r| r.value))
            .collect();
        let worst = first.goal.worst(&vals);
        let met = match first.goal.met(worst) {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        s += &format!("| {} | {} | {} |", first.id, first.what, first.reference);
        for v in &vals {
            s += &format!(" {} |", first.unit.show(*v));
        }
        s += &format!(
            " {} | {} | {met} |\n",
            first.unit.show(worst),
            first.goal.describe(first.unit)
        );
    }
    s
}

pub fn save(table: &str) {
    let dir = out_dir();
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("report.md"), format!("commit {}\n\n{table}", commit()));
}
