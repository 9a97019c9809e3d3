//! What every translator shares: the context that reports verdicts and
//! errors, and how a node is shown in the report.
use super::*;

pub(super) struct Ctx<'a> {
    pub(super) report: &'a mut Report,
    pub(super) errors: &'a mut Vec<SourceError>,
}

impl Ctx<'_> {
    pub(super) fn mapped(&mut self, node: &Node, text: impl Into<String>) {
        self.report.push(
            &node.file,
            node.line,
            &shown(node),
            Outcome::Mapped(text.into()),
        );
    }
    pub(super) fn approx(&mut self, node: &Node, text: impl Into<String>) {
        self.report.push(
            &node.file,
            node.line,
            &shown(node),
            Outcome::Approximated(text.into()),
        );
    }
    pub(super) fn unsupported(&mut self, node: &Node, text: impl Into<String>) {
        self.report.push(
            &node.file,
            node.line,
            &shown(node),
            Outcome::NotSupported(text.into()),
        );
    }
    pub(super) fn error(&mut self, node: &Node, text: impl Into<String>) {
        self.errors
            .push(SourceError::new(&node.file, node.line, text.into()));
    }
    /// The single argument of `node`, or an arity error.
    pub(super) fn one<'n>(&mut self, node: &'n Node) -> Option<&'n str> {
        if node.words.len() == 2 {
            Some(&node.words[1])
        } else {
            self.error(
                node,
                format!(
                    "{} takes one value, not {}",
                    node.keyword(),
                    node.words.len() - 1
                ),
            );
            None
        }
    }
    pub(super) fn number<T: std::str::FromStr>(&mut self, node: &Node) -> Option<T> {
        let text = self.one(node)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(
                    node,
                    format!("{}: \"{text}\" is not a number", node.keyword()),
                );
                None
            }
        }
    }
    pub(super) fn block<'n>(&mut self, node: &'n Node) -> Option<&'n [Node]> {
        match &node.block {
            Some(children) => Some(children),
            None => {
                self.error(node, format!("{} needs a {{ ... }} block", node.keyword()));
                None
            }
        }
    }
}

fn shown(node: &Node) -> String {
    let mut text = node.words.join(" ");
    if node.block.is_some() {
        text.push_str(" { ... }");
    }
    text
}

/// The comment beside a value: its source line (the table's comment names
/// the file).
pub(super) fn at(node: &Node) -> Option<String> {
    Some(format!("line {}: {}", node.line, node.words.join(" ")))
}
