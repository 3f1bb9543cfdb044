//! Commands that grow and use the meta-dataset: `sweep` (and the advisor's commands).
use crate::error::{Result, EXIT_OK, EXIT_RUN_FAILED};
use crate::executor;
use crate::sweep::{self, SweepOptions};
use clap::Args;
use std::path::PathBuf;

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialises"));
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Sweep plan (TOML): families, task space, backbones, recipe space, seeds (see docs/sweep.md).
    #[arg(long)]
    pub plan: PathBuf,
    /// Meta-dataset folder the rows go to (part files under OUT/source=sweep-<plan name>/).
    #[arg(long, default_value = "meta_dataset")]
    pub out: PathBuf,
    /// Where each run's run.json and metrics.csv go.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Run only shard I of N (every N-th task-backbone block, counting from I), e.g. 0/4.
    #[arg(long, default_value = "0/1")]
    pub shard: String,
    /// Recover staged runs of an interrupted sweep and skip every run already recorded. Without
    /// it, a plan whose runs are already in OUT is refused.
    #[arg(long)]
    pub resume: bool,
    /// Compact staged runs into a part file every N runs.
    #[arg(long, default_value_t = 25)]
    pub compact_every: usize,
    /// Stop after N runs (resume later with --resume).
    #[arg(long)]
    pub max_runs: Option<usize>,
    /// Count the plan's runs (total, this shard, already done) and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

pub fn sweep(a: SweepArgs) -> Result<i32> {
    let (device, device_name) = executor::select_device(&a.device)?;
    let opts = SweepOptions {
        plan: a.plan.clone(),
        out: a.out.clone(),
        runs_dir: a.runs.clone(),
        shard: sweep::parse_shard(&a.shard)?,
        resume: a.resume || a.dry_run,
        compact_every: a.compact_every.max(1),
        max_runs: a.max_runs,
        dry_run: a.dry_run,
        device,
        device_name,
        command: super::command_line(),
    };
    let s = sweep::sweep(&opts, &|m| eprintln!("{m}"))?;
    if a.json {
        print_json(&s);
    } else {
        eprintln!(
            "sweep {} shard {}: {} runs in plan, {} in this shard: {} already done, {} ran, {} failed, {} remaining; {:.0} s",
            s.plan, s.shard, s.units_in_plan, s.units_in_shard, s.already_done, s.ran, s.failed, s.remaining, s.seconds
        );
    }
    Ok(if s.failed > 0 { EXIT_RUN_FAILED } else { EXIT_OK })
}
