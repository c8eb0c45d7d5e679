//! The one output layer. A command returns a report: a `serde`-serializable struct that also
//! knows its text form. [`emit`] prints it as text, or as one line of JSON under `--json`, and
//! then turns the report's verdict (e.g. `verify` finding damage) into the command's error.
//!
//! JSON goes through [`serde_json::Value`], whose objects keep their keys sorted: the output is
//! byte for byte what the hand-built JSON of earlier versions printed, whatever the order of a
//! report's fields.

use lstore::{Error, Result};
use serde::Serialize;
use std::io::Write;

/// How a report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

// The `--json` flag of the commands that have one (a plain comment: a doc comment on an
// `Args` struct would become the about text of every command that flattens it).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct JsonFlag {
    /// Print JSON (one line) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl JsonFlag {
    pub fn format(self) -> Format {
        if self.json {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// What a command returns.
pub trait Report: Serialize {
    /// Writes the text form (the format without `--json`).
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()>;

    /// The command's outcome once the report is printed: an error for reports of damage.
    fn verdict(&self) -> Result<()> {
        Ok(())
    }
}

/// Prints a command's report in `format`, then returns its verdict.
pub fn emit<R: Report>(report: Result<R>, format: Format) -> Result<()> {
    let report = report?;
    let mut buf = Vec::new();
    match format {
        Format::Json => writeln!(buf, "{}", to_json(&report)?)?,
        Format::Text => report.text(&mut buf)?,
    }
    // A reader that left early (`| head`) does not turn a report of damage into success.
    match out(&buf) {
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => report.verdict().and(Err(Error::Io(e))),
        r => r.and_then(|_| report.verdict()),
    }
}

/// A report as a JSON value (objects with sorted keys).
pub fn to_json(report: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(report).map_err(|e| Error::InvalidArgument(format!("cannot render JSON: {e}")))
}

/// Writes to stdout. A closed pipe (e.g. `| head`) is an `Io(BrokenPipe)` error, which stops
/// the command and which `run` turns into a quiet exit.
pub fn out(bytes: &[u8]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes).and_then(|_| o.flush())?;
    Ok(())
}

/// Writes one line to stdout.
pub fn println(s: impl std::fmt::Display) -> Result<()> {
    out(format!("{s}\n").as_bytes())
}

/// A command that prints nothing.
impl Report for () {
    fn text(&self, _: &mut Vec<u8>) -> std::io::Result<()> {
        Ok(())
    }
}

/// A report of one line: an id or a name a command made.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Line(pub String);

impl Line {
    pub fn of(s: impl std::fmt::Display) -> Line {
        Line(s.to_string())
    }
}

impl Report for Line {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        writeln!(w, "{}", self.0)
    }
}

/// A list report: its items, one per line of text, a JSON array.
#[derive(Serialize)]
#[serde(transparent)]
pub struct List<T>(pub Vec<T>);

/// One item of a [`List`]: its line of text.
pub trait Row {
    fn line(&self, w: &mut Vec<u8>) -> std::io::Result<()>;
}

impl<T: Row + Serialize> Report for List<T> {
    fn text(&self, w: &mut Vec<u8>) -> std::io::Result<()> {
        self.0.iter().try_for_each(|row| row.line(w))
    }
}

/// A name or `-` for none, as text columns show it.
pub fn or_dash(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}
