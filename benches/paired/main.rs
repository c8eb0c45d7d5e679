//! The paired benchmark runner: `cargo bench --bench paired [-- FILTER...]`.
//!
//! These machines' disks change speed by 2x from minute to minute, so a reference measured
//! minutes before its subject says little. Here every target alternates its reference and its
//! subject in short batches and reports the median of the paired ratios with their spread; the
//! whole suite runs `LSTORE_BENCH_RUNS` times (default 3) and a target counts as met only when
//! its **worst** run meets it. The report is printed and written to
//! `target/paired/report.md`; every run's figures are appended to `target/paired/runs.jsonl`
//! with the commit they measured, so two commits' figures can be set side by side.
//!
//! `FILTER` keeps the targets whose name contains it (`cow_write`, `random_writes`,
//! `container_create`, `depth`, `ingest`, `read`, `versus_redb`, `open`, `gc_reclaim`,
//! `parallel_writers`, `reader_beside_writer`, `writer_processes`, `df_cold`, `reuse_cycles`,
//! `diff`, `import_tree`, `import_tar`, `packed`).

mod data;
mod fs;
mod harness;
mod import;
mod packs;
mod report;
mod space;
mod targets;
mod writer;

use harness::Row;

type Target = (&'static str, fn() -> Vec<Row>);

const TARGETS: [Target; 18] = [
    ("cow_write", targets::cow_write),
    ("random_writes", targets::random_writes),
    ("container_create", targets::container_create),
    ("depth", targets::depth),
    ("ingest", targets::ingest),
    ("read", targets::read),
    ("versus_redb", targets::versus_redb),
    ("open", targets::open),
    ("gc_reclaim", targets::gc_reclaim),
    ("parallel_writers", targets::parallel_writers),
    ("reader_beside_writer", targets::reader_beside_writer),
    ("writer_processes", targets::writer_processes),
    ("df_cold", space::df_cold),
    ("reuse_cycles", space::reuse_cycles),
    ("diff", fs::diff),
    ("import_tree", fs::import_tree),
    ("import_tar", fs::import_tar),
    ("packed", packs::packed),
];

fn main() {
    import::child_main();
    writer::child_main();
    writer::parallel_child_main();
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs: usize = std::env::var("LSTORE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let chosen: Vec<&Target> = TARGETS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
        eprintln!("paired: no target matches {filters:?}; targets: {}", names.join(", "));
        std::process::exit(2);
    }
    let mut all: Vec<Vec<Row>> = Vec::new();
    for run in 1..=runs {
        let mut rows = Vec::new();
        for (name, target) in &chosen {
            let t = std::time::Instant::now();
            let got = target();
            eprintln!("[run {run}/{runs}] {name} ({:.0} s)", t.elapsed().as_secs_f64());
            for r in &got {
                eprintln!("    {}", report::line(r));
            }
            rows.extend(got);
        }
        report::append_run(run, &rows);
        all.push(rows);
    }
    let table = report::table(&all);
    println!("{table}");
    report::save(&table);
}
