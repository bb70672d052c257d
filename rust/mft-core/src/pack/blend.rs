//! Megatron's dataset blending: sample i of the blend comes from the dataset
//! whose share so far lags its weight the most (ties: the lowest index), so
//! every prefix of the blend follows the weights as closely as possible.
//! Deterministic: no randomness, a function of (weights, size) only.

/// (dataset index per sample, that dataset's own sample number).
pub fn build_blending_indices(
    weights: &[f64],
    size: usize,
) -> Result<(Vec<u16>, Vec<i64>), String> {
    if weights.is_empty() || weights.len() > u16::MAX as usize {
        return Err(format!(
            "need 1..={} datasets to blend, got {}",
            u16::MAX,
            weights.len()
        ));
    }
    if let Some(i) = weights.iter().position(|w| !w.is_finite() || *w < 0.0) {
        return Err(format!(
            "weight {i} is {}; weights must be finite and >= 0",
            weights[i]
        ));
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err("the weights sum to 0".into());
    }
    let w: Vec<f64> = weights.iter().map(|x| x / total).collect();
    let mut taken = vec![0i64; w.len()];
    let mut which = Vec::with_capacity(size);
    let mut local = Vec::with_capacity(size);
    for i in 0..size {
        let at = (i as f64).max(1.0);
        let mut best = 0;
        let mut best_err = f64::NEG_INFINITY;
        for (d, &wd) in w.iter().enumerate() {
            let err = wd * at - taken[d] as f64;
            if err > best_err {
                best_err = err;
                best = d;
            }
        }
        which.push(best as u16);
        local.push(taken[best]);
        taken[best] += 1;
    }
    Ok((which, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_weights_in_every_prefix() {
        let (which, local) = build_blending_indices(&[3.0, 1.0], 8).unwrap();
        assert_eq!(which, vec![0, 1, 0, 0, 0, 1, 0, 0]);
        assert_eq!(local, vec![0, 0, 1, 2, 3, 1, 4, 5]);
        let w = [0.5, 0.3, 0.2];
        let (which, _) = build_blending_indices(&w, 1000).unwrap();
        let mut counts = [0f64; 3];
        for (n, &d) in which.iter().enumerate() {
            counts[d as usize] += 1.0;
            for k in 0..3 {
                assert!((counts[k] - w[k] * (n + 1) as f64).abs() <= 1.0 + 1e-9);
            }
        }
        assert!(build_blending_indices(&[], 3).is_err());
        assert!(build_blending_indices(&[0.0], 3).is_err());
        assert!(build_blending_indices(&[1.0, f64::NAN], 3).is_err());
    }
}
