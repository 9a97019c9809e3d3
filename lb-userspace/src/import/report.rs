//! The import report: one line per source directive, saying what became
//! of it, with `FILE:LINE`.
use std::{fmt, path::PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Mapped one to one; the text says to what.
    Mapped(String),
    /// Mapped, but behaves differently; the text says how.
    Approximated(String),
    /// Not in lbd; the text says why (and what to do instead).
    NotSupported(String),
}

impl Outcome {
    fn label(&self) -> (&'static str, &str) {
        match self {
            Outcome::Mapped(t) => ("mapped", t),
            Outcome::Approximated(t) => ("approximated", t),
            Outcome::NotSupported(t) => ("not supported", t),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    pub file: PathBuf,
    pub line: usize,
    /// The directive as written (shortened).
    pub directive: String,
    pub outcome: Outcome,
}

impl fmt::Display for ReportLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (label, text) = self.outcome.label();
        write!(
            f,
            "{}:{}: {}: {label}: {text}",
            self.file.display(),
            self.line,
            self.directive
        )
    }
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub lines: Vec<ReportLine>,
    /// What concerns the whole output rather than one directive.
    pub notes: Vec<String>,
}

impl Report {
    pub fn push(
        &mut self,
        file: impl Into<PathBuf>,
        line: usize,
        directive: &str,
        outcome: Outcome,
    ) {
        const LONGEST: usize = 60;
        let directive = if directive.chars().count() > LONGEST {
            let cut: String = directive.chars().take(LONGEST).collect();
            format!("{cut}...")
        } else {
            directive.to_owned()
        };
        self.lines.push(ReportLine {
            file: file.into(),
            line,
            directive,
            outcome,
        });
    }

    /// Puts the lines in source order: files in the order first met,
    /// lines by number (translation visits some directives out of order).
    pub fn sort_by_source(&mut self) {
        let mut files: Vec<PathBuf> = Vec::new();
        for line in &self.lines {
            if !files.contains(&line.file) {
                files.push(line.file.clone());
            }
        }
        self.lines.sort_by_key(|l| {
            (
                files
                    .iter()
                    .position(|f| f == &l.file)
                    .unwrap_or(usize::MAX),
                l.line,
            )
        });
    }

    pub fn unsupported(&self) -> impl Iterator<Item = &ReportLine> {
        self.lines
            .iter()
            .filter(|l| matches!(l.outcome, Outcome::NotSupported(_)))
    }

    /// Counts of mapped, approximated and unsupported lines.
    pub fn counts(&self) -> (usize, usize, usize) {
        self.lines
            .iter()
            .fold((0, 0, 0), |(m, a, n), l| match l.outcome {
                Outcome::Mapped(_) => (m + 1, a, n),
                Outcome::Approximated(_) => (m, a + 1, n),
                Outcome::NotSupported(_) => (m, a, n + 1),
            })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let (mapped, approximated, unsupported) = self.counts();
        write!(
            f,
            "{mapped} mapped, {approximated} approximated, {unsupported} not supported"
        )
    }
}
