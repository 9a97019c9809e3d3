//! ACL pattern files (`-f FILE`): one pattern per line, as HAProxy reads
//! them. Read when the configuration is validated (by `lbd check` and at
//! each load and reload), so a changed file takes effect on reload and a
//! bad line is reported as `FILE:LINE`.
use std::path::{Path, PathBuf};

/// Where relative pattern file names are looked up: the directory of the
/// configuration file (HAProxy uses its working directory, which for a
/// daemon is `/`; absolute names behave the same in both).
#[derive(Debug, Clone, Default)]
pub struct PatternFiles {
    base: Option<PathBuf>,
}

/// One pattern of a file, with where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePattern {
    pub line: usize,
    pub value: String,
}

impl PatternFiles {
    /// Relative names resolve against the directory holding `config_file`.
    pub fn beside(config_file: Option<&Path>) -> PatternFiles {
        PatternFiles {
            base: config_file
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .filter(|p| !p.as_os_str().is_empty()),
        }
    }

    pub fn resolve(&self, name: &str) -> PathBuf {
        match &self.base {
            Some(base) if Path::new(name).is_relative() => base.join(name),
            _ => PathBuf::from(name),
        }
    }

    /// Reads `name`'s patterns; the error names the file.
    pub fn read(&self, name: &str) -> Result<(PathBuf, Vec<FilePattern>), String> {
        let path = self.resolve(name);
        let text =
            std::fs::read(&path).map_err(|e| format!("pattern file {}: {e}", path.display()))?;
        let text = String::from_utf8(text).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            format!("{}:{line}: not UTF-8 text", path.display())
        })?;
        Ok((path, parse_lines(&text)))
    }
}

/// HAProxy's reading of a pattern file: a line starting with `#` is a
/// comment; leading blanks are stripped; the pattern is the rest of the
/// line (inner and trailing blanks kept, a trailing `\r` dropped); empty
/// lines are skipped.
pub fn parse_lines(text: &str) -> Vec<FilePattern> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.starts_with('#'))
        .filter_map(|(i, line)| {
            let value = line.trim_start_matches([' ', '\t']).trim_end_matches('\r');
            (!value.is_empty()).then(|| FilePattern {
                line: i + 1,
                value: value.to_owned(),
            })
        })
        .collect()
}
