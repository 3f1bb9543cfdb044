//! Pooled features of a decoded split, read off a backbone in eval mode: what the probes fit
//! on, and what a saved probe classifier reads at prediction time.
use crate::backbones::Model;
use crate::data::{ImageSet, Normalisation};
use crate::error::Result;
use ndarray::Array2;

/// Pooled features of one split at group `upto`.
pub(crate) fn features(model: &Model, set: &ImageSet, norm: &Normalisation, upto: usize) -> Result<Array2<f64>> {
    Ok(features_at(model, set, norm, &[upto])?.remove(0))
}

/// Pooled features of one split at several groups, from one pass in chunks of 256 images.
pub(crate) fn features_at(model: &Model, set: &ImageSet, norm: &Normalisation, at: &[usize]) -> Result<Vec<Array2<f64>>> {
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); at.len()];
    let mut dims = vec![0; at.len()];
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(256) {
        let x = crate::train::to_tensor(set.batch(chunk, norm, None), chunk.len(), set, &model.device)?;
        for (j, f) in model.features_at(&x, at)?.into_iter().enumerate() {
            dims[j] = f.dim(1)?;
            rows[j].extend(f.flatten_all()?.to_vec1::<f32>()?);
        }
    }
    Ok(rows
        .into_iter()
        .zip(dims)
        .map(|(r, d)| Array2::from_shape_vec((set.n, d), r.into_iter().map(|v| v as f64).collect()).expect("shape"))
        .collect())
}
