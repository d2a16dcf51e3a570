//! Shared test support: a reference interpreter and seeded random tensors.
#![allow(dead_code)] // each test crate uses its own part of the support code

pub mod gen;
pub mod interp;

use interp::Tensor;
use vidlower_ir::{DType, Graph};

/// SplitMix64, so a failing case reproduces from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Random values for each of `g`'s inputs, in parameter order: floats in [-2, 2), booleans
/// mostly true (so masks leave most keys visible), integers in [0, 8).
pub fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    g.inputs
        .iter()
        .map(|&v| {
            let t = g.tensor_ty(v);
            let data = (0..t.num_elements())
                .map(|_| match t.dtype {
                    DType::I1 => f64::from(u8::from(rng.unit() > -0.6)),
                    d if d.is_float() => 2.0 * rng.unit(),
                    _ => ((rng.unit() + 1.0) * 4.0).floor(),
                })
                .collect();
            Tensor { shape: t.shape.clone(), data }
        })
        .collect()
}

/// Asserts two output lists agree elementwise within `tol` relative (NaNs agree with NaNs).
pub fn assert_close(what: &str, expected: &[Tensor], got: &[Tensor], tol: f64) {
    assert_eq!(expected.len(), got.len(), "{what}: output count");
    for (k, (e, g)) in expected.iter().zip(got).enumerate() {
        assert_eq!(e.shape, g.shape, "{what}: output {k} shape");
        for (i, (&a, &b)) in e.data.iter().zip(&g.data).enumerate() {
            let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * (1.0 + a.abs());
            assert!(ok, "{what}: output {k} element {i}: expected {a}, got {b}");
        }
    }
}
