//! Progress on a terminal: a bar for the phase a run is in (reading,
//! comparing, creates and updates, links, deletions, saving the state),
//! with done/total, rate, ETA and writes in flight ([indicatif]); nothing
//! drawn when stderr is not a terminal. Log lines written meanwhile go
//! above the bar ([`LogWriter`]), not through it.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use muster::pipeline::{RunProgress, WritePhase};

/// The bar being drawn, if any: the log writer hides it while it writes.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// The phase a bar is drawn for: a new one restarts its count and ETA.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading,
    Planning,
    Writing(WritePhase),
    Saving,
}

/// The progress of one tenant's run.
pub struct RunBar {
    bar: Option<ProgressBar>,
    tenant: String,
    phase: Option<Phase>,
}

impl RunBar {
    /// A bar for `tenant`'s run; drawn only when stderr is a terminal.
    pub fn new(tenant: &str) -> RunBar {
        RunBar {
            bar: None,
            tenant: tenant.to_string(),
            phase: None,
        }
    }

    /// Shows `p` (the bar appears with the first phase).
    pub fn update(&mut self, p: RunProgress<'_>) {
        // Nothing to show until the run reads its first file.
        if let RunProgress::Started = p {
            return;
        }
        if self.bar.is_none() && self.phase.is_none() && io::stderr().is_terminal() {
            let bar = ProgressBar::hidden();
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
            self.bar = Some(bar);
        }
        let Some(bar) = &self.bar else {
            return;
        };
        let phase = match &p {
            RunProgress::Reading { .. } => Phase::Reading,
            RunProgress::Planning { .. } => Phase::Planning,
            RunProgress::Writing { progress, .. } => Phase::Writing(progress.phase),
            RunProgress::Saving => Phase::Saving,
            RunProgress::Started => return,
        };
        if self.phase != Some(phase) {
            self.phase = Some(phase);
            start(bar, &self.tenant, &p);
        }
        match p {
            RunProgress::Reading { records, bytes, .. } => {
                bar.set_position(bytes);
                bar.set_message(format!("{records} rows"));
            }
            RunProgress::Writing { progress, .. } => {
                bar.set_length(progress.total);
                bar.set_position(progress.done);
                bar.set_message(format!("{} in flight", progress.in_flight));
            }
            _ => {}
        }
    }

    /// Takes the bar off the terminal.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// Restyles `bar` for the phase `p` starts, its count and ETA from zero.
fn start(bar: &ProgressBar, tenant: &str, p: &RunProgress<'_>) {
    // Drawn again once restyled, not half way.
    bar.set_draw_target(ProgressDrawTarget::hidden());
    bar.disable_steady_tick();
    let (template, length, what) = match p {
        RunProgress::Started => return,
        RunProgress::Reading { file, size, .. } => (
            "{prefix} [{bar:20}] {bytes}/{total_bytes}, {msg}, {bytes_per_sec}, ETA {eta}",
            Some(*size),
            format!("reading {}", file_name(file)),
        ),
        RunProgress::Planning { file } => (
            "{prefix} {spinner} {elapsed}",
            None,
            format!("comparing {} with the state store", file_name(file)),
        ),
        RunProgress::Writing { progress, .. } => (
            "{prefix} [{bar:20}] {human_pos}/{human_len}, {rate}, {msg}, ETA {eta}",
            Some(progress.total),
            progress.phase.as_str().to_string(),
        ),
        RunProgress::Saving => (
            "{prefix} {spinner} {elapsed}",
            None,
            "saving the state store".to_string(),
        ),
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
        .progress_chars("=> ");
    // The tenant and the phase lead; `update` sets what changes.
    bar.set_prefix(format!("{tenant}: {what}"));
    bar.set_message("");
    bar.set_style(style);
    match length {
        Some(n) => bar.set_length(n),
        None => bar.unset_length(),
    }
    bar.reset();
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if length.is_none() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where log lines go: stderr, with the bar (if one is drawn) hidden while
/// a line is written and drawn again below it.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match active {
            Some(bar) => bar
                .suspend(|| io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}
