//! The executor: runs a checked recipe (fine-tuning or a probe), evaluates it, writes the run
//! directory and appends the run to the meta-dataset.
pub mod bench;
pub mod classifier;
mod features;
pub use crate::optim;
pub mod predictions;
pub mod probe;
pub mod run;
pub use crate::train;

pub use run::{run, RunOptions, RunRecord};
pub use train::{NoProgress, Progress};

use crate::error::{GraftError, Result};
use candle_core::Device;

/// `--device cpu|cuda|auto`.
pub fn select_device(name: &str) -> Result<(Device, String)> {
    match name {
        "cpu" => Ok((Device::Cpu, "cpu".into())),
        "cuda" => {
            if !candle_core::utils::cuda_is_available() {
                return Err(GraftError::Usage(
                    "--device cuda: this graft was built without CUDA or no GPU is present; rebuild with `cargo build --release --features cuda` or use --device cpu".into(),
                ));
            }
            Ok((Device::new_cuda(0)?, "cuda:0".into()))
        }
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok((d, "cuda:0".into()));
                }
            }
            Ok((Device::Cpu, "cpu".into()))
        }
        other => Err(GraftError::Usage(format!("--device {other}: expected cpu, cuda or auto"))),
    }
}
