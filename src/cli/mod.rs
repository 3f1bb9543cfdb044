//! The command-line front end: clap types stay here; each command turns its arguments into a
//! validated library configuration, runs it, and maps errors to documented exit codes.
//!
//! Output goes through [`outln!`] and [`errln!`], never `println!`: a closed pipe
//! (`graft run ... | head -1`) must not kill a run before it is recorded. A failed write is
//! remembered, the command finishes and records its work, and the process then exits quietly.

/// Print a line on stdout; a write failure (closed pipe) is remembered, not fatal.
macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::write_line(false, format_args!($($t)*)) };
}
/// Print a line on stderr; a write failure (closed pipe) is remembered, not fatal.
macro_rules! errln {
    ($($t:tt)*) => { $crate::cli::write_line(true, format_args!($($t)*)) };
}
mod advisor;
mod commands;
mod experiment;
mod predict;
mod pretrain;
mod progress;

use crate::error::{GraftError, EXIT_BAD_INPUT, EXIT_OK};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout (`[0]`) or stderr (`[1]`) has failed (the reader of a pipe exited).
static OUTPUT_CLOSED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// Write one line to stdout (`to_stderr` false) or stderr. Errors are not raised: the first
/// one is remembered and later output is dropped, so the command can still finish and record
/// its run.
#[doc(hidden)]
pub fn write_line(to_stderr: bool, args: std::fmt::Arguments) {
    let closed = &OUTPUT_CLOSED[to_stderr as usize];
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let ok = if to_stderr {
        let mut e = std::io::stderr().lock();
        e.write_fmt(args).and_then(|_| e.write_all(b"\n")).and_then(|_| e.flush()).is_ok()
    } else {
        let mut o = std::io::stdout().lock();
        o.write_fmt(args).and_then(|_| o.write_all(b"\n")).and_then(|_| o.flush()).is_ok()
    };
    if !ok {
        closed.store(true, Ordering::Relaxed);
    }
}

#[derive(Parser, Debug)]
#[command(name = "graft", version, about = "An AutoML advisor for transfer learning on small image datasets", long_about = None)]
pub struct Cli {
    /// Worker threads for tensor ops and decoding (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// ImageFolder tree (DIR/<class>/<image>, or DIR/train, DIR/test, DIR/val, DIR/unlabelled) or a folder of IDX files.
    #[arg(long)]
    pub data: PathBuf,
    /// Explicit test tree (same class folder names).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Unlabelled images (any depth).
    #[arg(long)]
    pub unlabelled: Option<PathBuf>,
    /// Fraction of each class held out for testing when DATA has no split folders.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Skip unreadable or corrupt images (they are counted in the run record) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one recipe end to end, evaluate it, write a run record and append it to the meta-dataset.
    Run(commands::RunArgs),
    /// Pretrain a backbone on a source dataset.
    Pretrain(pretrain::PretrainArgs),
    /// The model zoo: every backbone with its card.
    Models(commands::ModelsArgs),
    /// Sample a task (classes, shots, unlabelled pool) from a dataset and write it as an ImageFolder tree.
    Task(commands::TaskArgs),
    /// Recipes: print a preset, validate a file, or print the JSON Schema.
    Recipe(commands::RecipeArgs),
    /// Read the meta-dataset and print a summary.
    Meta(commands::MetaArgs),
    /// Throughput of training and feature extraction on random data.
    Bench(commands::BenchArgs),
    /// Dataset profile and per-group transferability meta-features.
    Inspect(commands::InspectArgs),
    /// LogME of a feature matrix and labels (.npy files).
    Logme(commands::LogmeArgs),
    /// Self-contained HTML report (inline SVG) for one or more run directories.
    Report(commands::ReportArgs),
    /// Compare runs: test accuracies with 95% intervals, and an exact McNemar test for every
    /// pair scored on the same test images.
    Compare(commands::CompareArgs),
    /// Predict the best recipe for a dataset, with an interval, alternatives and reasons.
    Recommend(advisor::RecommendArgs),
    /// Recommend, run the best recipe (or the --budget most promising), report the winner.
    Auto(advisor::AutoArgs),
    /// Classify images with a run's trained classifier (saved by `graft run` and `graft auto`).
    Predict(predict::PredictArgs),
    /// Run many tasks x recipes to grow the meta-dataset (sharded, resumable).
    Sweep(advisor::SweepArgs),
    /// Reproduce a claim of the lecture (paine: pretraining without labels when labels are few;
    /// yosinski: transferability by layer), writing a Markdown table, an SVG and the raw rows.
    Experiment(experiment::ExperimentArgs),
    /// Compute a model's source feature statistics (for domain distances) from its source data.
    SourceStats(commands::SourceStatsArgs),
}

/// Parse arguments, run, and return the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    if let Some(t) = cli.threads {
        if t == 0 {
            errln!("error: bad usage: --threads must be at least 1");
            return EXIT_BAD_INPUT;
        }
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", t.to_string());
        let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("GRAFT_LOG").unwrap_or_else(|_| "warn".into()))
        .without_time()
        // colour codes only on a terminal: logs written to a file or read by a script stay plain
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let res = match cli.command {
        Command::Run(a) => commands::run(a),
        Command::Pretrain(a) => pretrain::pretrain(a),
        Command::Models(a) => commands::models(a),
        Command::Task(a) => commands::task(a),
        Command::Recipe(a) => commands::recipe(a),
        Command::Meta(a) => commands::meta(a),
        Command::Bench(a) => commands::bench(a),
        Command::Inspect(a) => commands::inspect(a),
        Command::Logme(a) => commands::logme(a),
        Command::SourceStats(a) => commands::source_stats(a),
        Command::Report(a) => commands::report(a),
        Command::Compare(a) => commands::compare(a),
        Command::Sweep(a) => advisor::sweep(a),
        Command::Experiment(a) => experiment::experiment(a),
        Command::Recommend(a) => advisor::recommend(a),
        Command::Auto(a) => advisor::auto(a),
        Command::Predict(a) => predict::predict(a),
    };
    match res {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

fn report(e: &GraftError) -> i32 {
    errln!("error: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        errln!("  caused by: {s}");
        src = s.source();
    }
    e.exit_code()
}

/// The command line as typed, for run records and model cards.
/// The program is written as `graft` whatever path it was started by.
pub fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            if i == 0 {
                "graft".to_string()
            } else if a.contains(' ') {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Default meta-dataset folder for `graft run`: `$GRAFT_META`, else
/// `$XDG_DATA_HOME/graft/meta_dataset`, else `~/.local/share/graft/meta_dataset`. Never the
/// shipped `meta_dataset/`.
pub fn default_meta_dir() -> PathBuf {
    if let Ok(d) = std::env::var("GRAFT_META") {
        return PathBuf::from(d);
    }
    if let Ok(d) = std::env::var("XDG_DATA_HOME") {
        return PathBuf::from(d).join("graft").join("meta_dataset");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".local/share/graft/meta_dataset")
}
