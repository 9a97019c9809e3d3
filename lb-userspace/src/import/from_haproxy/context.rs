//! What every translator shares: the section kinds, one directive's
//! verdict, and the context that reports verdicts and errors.
use super::*;

/// One directive's verdict, gathered while its words are read, so each
/// directive gets exactly one report line.
#[derive(Default)]
pub(super) struct Verdict {
    pub(super) mapped: Option<String>,
    pub(super) approximations: Vec<String>,
    pub(super) unsupported: Vec<String>,
}

impl Verdict {
    pub(super) fn mapped(text: impl Into<String>) -> Verdict {
        Verdict {
            mapped: Some(text.into()),
            ..Verdict::default()
        }
    }
    pub(super) fn approx(text: impl Into<String>) -> Verdict {
        Verdict {
            approximations: vec![text.into()],
            ..Verdict::default()
        }
    }
    pub(super) fn unsupported(text: impl Into<String>) -> Verdict {
        Verdict {
            unsupported: vec![text.into()],
            ..Verdict::default()
        }
    }
    pub(super) fn outcome(self) -> Outcome {
        let mapped = self.mapped.unwrap_or_default();
        let join = |head: &str, rest: Vec<String>| {
            if head.is_empty() {
                rest.join("; ")
            } else {
                format!("{head}; {}", rest.join("; "))
            }
        };
        if !self.unsupported.is_empty() {
            let mut all = self.unsupported;
            all.extend(self.approximations);
            Outcome::NotSupported(join(&mapped, all))
        } else if !self.approximations.is_empty() {
            Outcome::Approximated(join(&mapped, self.approximations))
        } else {
            Outcome::Mapped(mapped)
        }
    }
}

pub(super) struct Ctx<'a> {
    pub(super) report: &'a mut Report,
    pub(super) errors: &'a mut Vec<SourceError>,
    pub(super) file: &'a Path,
    /// `ca-base` and `crt-base` of `global`.
    pub(super) ca_base: Option<String>,
    pub(super) crt_base: Option<String>,
}

impl Ctx<'_> {
    pub(super) fn verdict(&mut self, d: &Directive, verdict: Verdict) {
        self.report
            .push(self.file, d.line, &d.shown(), verdict.outcome());
    }
    pub(super) fn mapped(&mut self, d: &Directive, text: impl Into<String>) {
        self.verdict(d, Verdict::mapped(text));
    }
    pub(super) fn approx(&mut self, d: &Directive, text: impl Into<String>) {
        self.verdict(d, Verdict::approx(text));
    }
    pub(super) fn unsupported(&mut self, d: &Directive, text: impl Into<String>) {
        self.verdict(d, Verdict::unsupported(text));
    }
    pub(super) fn error(&mut self, line: usize, text: impl Into<String>) {
        self.errors
            .push(SourceError::new(self.file, line, text.into()));
    }
    /// Checks that `d` has between `min` and `max` words after the keyword(s).
    pub(super) fn arity(&mut self, d: &Directive, skip: usize, min: usize, max: usize) -> bool {
        let n = d.words.len().saturating_sub(skip);
        if n < min || n > max {
            let what = d.words[..skip.min(d.words.len())].join(" ");
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            self.error(
                d.line,
                format!("'{what}' takes {expected} argument(s), not {n}"),
            );
            return false;
        }
        true
    }
    pub(super) fn with_base(&self, base: &Option<String>, path: &str) -> String {
        match base {
            Some(b) if !path.starts_with('/') => format!("{}/{path}", b.trim_end_matches('/')),
            _ => path.to_string(),
        }
    }
}
