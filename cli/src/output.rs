//! Text for people or JSON for machines, on stdout, without panicking when the reader
//! goes away (`cbec genesis inspect FILE | head`).

use std::io::Write;

use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Prints `text` for people, or `value` as one JSON document with `--json`.
    pub fn emit<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let rendered = if self.json {
            serde_json::to_string_pretty(value)?
        } else {
            text()
        };
        print(&rendered)
    }

    pub fn json(&self) -> bool {
        self.json
    }
}

/// Prints `text` and a line end on stdout; a reader that went away is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", text.trim_end()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
