//! Diagnostics: `FILE:LINE:COLUMN: severity: message`.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// A place in a model file: the index into `Model::files`, 1-based line and column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub file: usize,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub position: Position,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {severity}: {}", self.file.display(), self.position.line, self.position.column, self.message)
    }
}

/// Collects diagnostics while a model loads.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub files: Vec<PathBuf>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub fn error(&mut self, at: Position, message: impl Into<String>) {
        self.push(Severity::Error, at, message.into());
    }

    pub fn warning(&mut self, at: Position, message: impl Into<String>) {
        self.push(Severity::Warning, at, message.into());
    }

    fn push(&mut self, severity: Severity, position: Position, message: String) {
        let file = self.files.get(position.file).cloned().unwrap_or_default();
        self.diagnostics.push(Diagnostic { severity, file, position, message });
    }

    pub fn render(&self, at: Position) -> String {
        let file = self.files.get(at.file).map(|f| f.display().to_string()).unwrap_or_default();
        format!("{file}:{}:{}", at.line, at.column)
    }
}
