//! `.npy` inputs of `graft logme`: a feature matrix and integer labels.
use crate::error::{GraftError, Result};

/// An n x d float32 or float64 `.npy` matrix, as float64.
pub fn read_features(p: &std::path::Path) -> Result<ndarray::Array2<f64>> {
    use ndarray_npy::read_npy;
    if let Ok(a) = read_npy::<_, ndarray::Array2<f64>>(p) {
        return Ok(a);
    }
    read_npy::<_, ndarray::Array2<f32>>(p)
        .map(|a| a.mapv(|v| v as f64))
        .map_err(|e| GraftError::Data(format!("--features {}: expected a 2-D float32 or float64 .npy array (n x d): {e}", p.display())))
}

/// A 1-D `.npy` array of any integer dtype, as i64.
pub fn read_labels(p: &std::path::Path) -> Result<Vec<i64>> {
    use ndarray::Array1;
    use ndarray_npy::read_npy;
    macro_rules! try_ty {
        ($t:ty) => {
            if let Ok(a) = read_npy::<_, Array1<$t>>(p) {
                return Ok(a.iter().map(|&v| v as i64).collect());
            }
        };
    }
    try_ty!(i64);
    try_ty!(i32);
    try_ty!(u8);
    try_ty!(u32);
    try_ty!(i16);
    try_ty!(u16);
    try_ty!(u64);
    try_ty!(i8);
    Err(GraftError::Data(format!("--labels {}: expected a 1-D integer .npy array", p.display())))
}
