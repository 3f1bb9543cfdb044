//! Progress on stderr: an indicatif bar when stderr is a terminal, one line per epoch otherwise.
use crate::executor::train::{EpochMetrics, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct EpochBar {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl EpochBar {
    pub fn new(total: usize, label: &str, quiet: bool) -> Self {
        let bar = if std::io::stderr().is_terminal() && !quiet {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} epochs {msg} ({elapsed})").unwrap().progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            Some(b)
        } else {
            None
        };
        EpochBar { bar, quiet }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for EpochBar {
    fn epoch(&self, m: &EpochMetrics, total: usize) {
        let val = m.val_accuracy.map(|v| format!(" val_acc {v:.4}")).unwrap_or_default();
        let msg = format!("loss {:.4} acc {:.4}{val}", m.train_loss, m.train_accuracy);
        match &self.bar {
            Some(b) => {
                b.set_position(m.epoch as u64);
                b.set_message(msg);
            }
            None if !self.quiet => {
                errln!("epoch {}/{total}: {msg} ({:.1}s)", m.epoch, m.seconds)
            }
            None => {}
        }
    }
}

/// A bar over optimisation steps (label-free pretraining) when stderr is a terminal; lines
/// printed through it go above the bar, and are plain stderr lines otherwise.
pub struct StepBar {
    bar: Option<ProgressBar>,
}

impl StepBar {
    pub fn new(label: &str, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps ({elapsed}, {eta} left)")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        StepBar { bar }
    }
    pub fn set(&self, done: usize, total: usize) {
        if let Some(b) = &self.bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    }
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => errln!("{line}"),
        }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
