//! Diffusion timestep conditioning as diffusers builds it: sinusoidal features (`Timesteps`, i.e.
//! `get_timestep_embedding` in `models/embeddings.py`) and the MLP that embeds them
//! (`TimestepEmbedding`: `linear_1`, SiLU, `linear_2`).

use super::linear::linear;
use vidlower_ir::{Builder, DType, Result, TensorType, ValueId};

/// diffusers `Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift, scale)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Timesteps {
    pub num_channels: i64,
    /// Output `[cos, sin]` instead of `[sin, cos]`.
    pub flip_sin_to_cos: bool,
    pub downscale_freq_shift: f64,
    pub scale: f64,
    pub max_period: f64,
}

impl Timesteps {
    /// The common form: `scale = 1`, `max_period = 10000`.
    pub fn new(num_channels: i64, flip_sin_to_cos: bool, downscale_freq_shift: f64) -> Self {
        Timesteps { num_channels, flip_sin_to_cos, downscale_freq_shift, scale: 1.0, max_period: 10000.0 }
    }

    /// `t` [N] (any float dtype; the pipeline's integer timesteps as floats) -> f32 [N, num_channels].
    ///
    /// Computed in f32 in the order torch does (`exp(-ln(max_period) * i / (half - shift))`, then
    /// `t * freq`): the arguments of sin/cos reach ~1000, so each f32 rounding on the way shows in
    /// the result at ~1e-5, and the same steps give the same roundings.
    pub fn forward(&self, b: &mut Builder, t: ValueId) -> Result<ValueId> {
        let n = b.shape(t)[0];
        let half = self.num_channels / 2;
        let t = b.convert(t, DType::F32)?;
        let i = b.iota(TensorType::new(DType::F32, vec![half]), 0)?;
        let exponent = b.mul_scalar(i, -self.max_period.ln())?;
        let exponent = b.binary_scalar(vidlower_ir::BinaryOp::Div, exponent, half as f64 - self.downscale_freq_shift)?;
        let freqs = b.exp(exponent)?;
        let freqs = b.broadcast_in_dim(freqs, &[n, half], &[1])?;
        let t = b.broadcast_in_dim(t, &[n, half], &[0])?;
        let mut emb = b.mul(t, freqs)?;
        if self.scale != 1.0 {
            emb = b.mul_scalar(emb, self.scale)?;
        }
        let (sin, cos) = (b.sin(emb)?, b.cos(emb)?);
        let emb = if self.flip_sin_to_cos { b.concat(&[cos, sin], 1)? } else { b.concat(&[sin, cos], 1)? };
        if self.num_channels % 2 == 1 {
            return b.pad(emb, &[0, 0], &[0, 1], 0.0);
        }
        Ok(emb)
    }
}

/// diffusers `TimestepEmbedding(in_channels, time_embed_dim)` with its default SiLU and no
/// `cond_proj`/`post_act`: `linear_2(silu(linear_1(sample)))`, weights `{prefix}.linear_{1,2}`.
/// The weights take `sample`'s dtype (Wan keeps this module in f32: pass f32 features).
pub fn timestep_embedding(b: &mut Builder, sample: ValueId, prefix: &str, time_embed_dim: i64) -> Result<ValueId> {
    let h = linear(b, sample, &format!("{prefix}.linear_1"), time_embed_dim, true)?;
    let h = b.silu(h)?;
    linear(b, h, &format!("{prefix}.linear_2"), time_embed_dim, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_weight_names() {
        let mut b = Builder::new("t");
        let t = b.input("timestep", TensorType::new(DType::F32, vec![2])).unwrap();
        let f = Timesteps::new(256, true, 0.0).forward(&mut b, t).unwrap();
        assert_eq!(b.shape(f), vec![2, 256]);
        let e = timestep_embedding(&mut b, f, "time_embedder", 64).unwrap();
        assert_eq!(b.shape(e), vec![2, 64]);
        let g = b.finish().unwrap();
        let names: Vec<&str> = g.weights().map(|(n, _)| n).collect();
        let want = ["linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"].map(|n| format!("time_embedder.{n}"));
        assert_eq!(names, want);
    }
}
