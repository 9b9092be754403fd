//! The CSV rows every benchmark of issue 8 writes under `target/bench/` for
//! `scripts/plot_bench.py`: `bench,contender,mode,metric,value,unit`.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// Rows collected during a run, written at the end.
#[derive(Debug, Default)]
pub struct Csv {
    rows: String,
}

/// The header line.
pub const HEADER: &str = "bench,contender,mode,metric,value,unit\n";

/// Quotes a field when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl Csv {
    /// Adds one row.
    pub fn add(
        &mut self,
        bench: &str,
        contender: &str,
        mode: &str,
        metric: &str,
        value: f64,
        unit: &str,
    ) {
        let _ = writeln!(
            self.rows,
            "{},{},{},{},{value},{}",
            field(bench),
            field(contender),
            field(mode),
            field(metric),
            field(unit)
        );
    }

    /// Writes the header and all rows to `path` (replacing it), creating its directory.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("{HEADER}{}", self.rows)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot write {}: {e}; pass another --csv path",
                    path.display()
                ),
            )
        })
    }
}
