//! Deterministic random weights, for built-in presets that must run with nothing downloaded.
//! Each tensor depends only on (seed, name), so adding a weight never changes the others.

use vidlower_ir::TensorType;

/// Values for the weight `name` of type `ty`: norm scales near 1, biases and everything else
/// uniform in +-1/sqrt(fan_in) (torch's default init range for linear and conv layers).
pub fn random_weight(seed: u64, name: &str, ty: &TensorType) -> Vec<f32> {
    let mut state = seed ^ fnv1a(name.as_bytes());
    let n = ty.num_elements() as usize;
    let fan_in: i64 = if ty.rank() >= 2 { ty.shape[1..].iter().product() } else { ty.shape.first().copied().unwrap_or(1) };
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    let is_norm_scale = name.contains("norm") && name.ends_with(".weight") && ty.rank() == 1;
    (0..n)
        .map(|_| {
            let u = uniform(&mut state) * 2.0 - 1.0;
            if is_norm_scale {
                (1.0 + 0.1 * u) as f32
            } else {
                (u * bound) as f32
            }
        })
        .collect()
}

/// Uniform values in [-1, 1) for plain inputs (latents, hidden states) from a seed.
pub fn random_input(seed: u64, name: &str, ty: &TensorType) -> Vec<f32> {
    let mut state = seed ^ fnv1a(name.as_bytes()) ^ 0x5eed;
    (0..ty.num_elements()).map(|_| (uniform(&mut state) * 2.0 - 1.0) as f32).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// SplitMix64 step mapped to [0, 1).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::DType;

    #[test]
    fn deterministic_per_name_and_bounded() {
        let ty = TensorType::new(DType::F32, vec![8, 16]);
        let a = random_weight(1, "a.weight", &ty);
        assert_eq!(a, random_weight(1, "a.weight", &ty));
        assert_ne!(a, random_weight(1, "b.weight", &ty));
        assert_ne!(a, random_weight(2, "a.weight", &ty));
        assert!(a.iter().all(|v| v.abs() <= 0.25 + 1e-6));
        let norm = random_weight(1, "norm1.weight", &TensorType::new(DType::F32, vec![16]));
        assert!(norm.iter().all(|v| (0.9..=1.1).contains(v)));
    }
}
