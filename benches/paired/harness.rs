//! Pairing and statistics. A reference and a subject alternate in short batches, so both see
//! the same minute of a noisy disk; each pair gives one ratio, and a target's figure is the
//! median of its pairs' ratios. The spread printed beside it is the pairs' min..max.

use std::time::Duration;

/// What a target asks of its figure.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
    /// Shown for context; nothing is promised.
    Info,
}

impl Goal {
    pub fn met(self, v: f64) -> Option<bool> {
        match self {
            Goal::AtMost(t) => Some(v <= t),
            Goal::AtLeast(t) => Some(v >= t),
            Goal::Info => None,
        }
    }

    /// The worst of several runs' figures, in the direction the goal cares about.
    pub fn worst(self, vals: &[f64]) -> f64 {
        let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        match self {
            Goal::AtLeast(_) => min,
            Goal::AtMost(_) | Goal::Info => max,
        }
    }

    pub fn describe(self, unit: Unit) -> String {
        match self {
            Goal::AtMost(t) => format!("≤ {}", unit.show(t)),
            Goal::AtLeast(t) => format!("≥ {}", unit.show(t)),
            Goal::Info => "—".into(),
        }
    }
}

/// How a figure prints.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    Ratio,
    Micros,
    Nanos,
    MiB,
    Percent,
}

impl Unit {
    pub fn show(self, v: f64) -> String {
        match self {
            Unit::Ratio => format!("{v:.2}x"),
            Unit::Micros => format!("{v:.2} µs"),
            Unit::Nanos => format!("{v:.0} ns"),
            Unit::MiB => format!("{v:.0} MiB"),
            Unit::Percent => format!("{v:.1}%"),
        }
    }
}

/// One figure of one run.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: &'static str,
    pub what: &'static str,
    pub reference: &'static str,
    pub unit: Unit,
    pub value: f64,
    pub goal: Goal,
    /// How the figure came about: spread, sample count, absolute times.
    pub detail: String,
}

impl Row {
    pub fn scalar(id: &'static str, what: &'static str, unit: Unit, value: f64, goal: Goal, detail: String) -> Row {
        Row {
            id,
            what,
            reference: "—",
            unit,
            value,
            goal,
            detail,
        }
    }
}

/// The timings of one paired measurement.
pub struct Paired {
    pub reference: Vec<Duration>,
    pub subject: Vec<Duration>,
}

/// Runs `pairs` pairs of batches after one untimed warm-up batch of each. Each closure runs
/// one batch and returns how long its measured part took (setup stays out of the figure).
/// The order inside a pair alternates, so neither side always runs on a cache the other warmed.
pub fn paired(pairs: usize, mut reference: impl FnMut() -> Duration, mut subject: impl FnMut() -> Duration) -> Paired {
    reference();
    subject();
    let mut p = Paired {
        reference: Vec::with_capacity(pairs),
        subject: Vec::with_capacity(pairs),
    };
    for i in 0..pairs {
        let (r, s) = if i % 2 == 0 {
            let r = reference();
            (r, subject())
        } else {
            let s = subject();
            (reference(), s)
        };
        p.reference.push(r);
        p.subject.push(s);
    }
    p
}

impl Paired {
    /// Subject time over reference time, for the same work: lower is better.
    pub fn cost(&self) -> Vec<f64> {
        self.pairs().map(|(r, s)| s / r).collect()
    }

    /// Subject rate over reference rate, for the same work: higher is better.
    pub fn rate(&self) -> Vec<f64> {
        self.pairs().map(|(r, s)| r / s).collect()
    }

    fn pairs(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.reference
            .iter()
            .zip(&self.subject)
            .map(|(r, s)| (r.as_secs_f64(), s.as_secs_f64()))
    }

    /// "pairs 1.21..1.60, n=21; 290 µs vs 412 µs per op" with `ops` operations per batch.
    pub fn detail(&self, ratios: &[f64], ops: u64) -> String {
        let per_op = |d: &[Duration]| median(&d.iter().map(|d| d.as_secs_f64() / ops as f64).collect::<Vec<_>>());
        format!(
            "pairs {:.2}..{:.2}, n={}; reference {} vs {} per op",
            min(ratios),
            max(ratios),
            ratios.len(),
            seconds(per_op(&self.reference)),
            seconds(per_op(&self.subject)),
        )
    }

    /// A ratio row: the median of the pairs' ratios.
    pub fn row(
        &self,
        id: &'static str,
        what: &'static str,
        reference: &'static str,
        ratios: Vec<f64>,
        ops: u64,
        goal: Goal,
    ) -> Row {
        Row {
            id,
            what,
            reference,
            unit: Unit::Ratio,
            value: median(&ratios),
            goal,
            detail: self.detail(&ratios, ops),
        }
    }

    /// The subject's median time per operation, in microseconds.
    pub fn subject_micros(&self, ops: u64) -> f64 {
        median(
            &self
                .subject
                .iter()
                .map(|d| d.as_secs_f64() * 1e6 / ops as f64)
                .collect::<Vec<_>>(),
        )
    }

    /// The reference's median time per operation, in microseconds.
    pub fn reference_micros(&self, ops: u64) -> f64 {
        median(
            &self
                .reference
                .iter()
                .map(|d| d.as_secs_f64() * 1e6 / ops as f64)
                .collect::<Vec<_>>(),
        )
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
}

/// A duration in seconds, printed in the unit that suits it.
pub fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{:.0} ns", s * 1e9)
    }
}

/// Times `f` once.
pub fn timed(f: impl FnOnce()) -> Duration {
    let t = std::time::Instant::now();
    f();
    t.elapsed()
}
