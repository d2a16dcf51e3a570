//! The Wan VAE decoder (`AutoencoderKLWan`, one latent frame per step with the causal-conv caches
//! carried between steps on the device) against diffusers 0.42.1's `vae.decode(z).sample`
//! (tests/golden/wan, made by tools/golden/make_wan_goldens.py: a tiny VAE with base_dim 8 and
//! one res block), and the real Wan 2.1 VAE config built at 480x832.

mod common;

use std::path::PathBuf;
use vidlower_frontends::wan::config::{read_json, WanVaeConfig};
use vidlower_frontends::wan::vae::{cache_signature, decoded_frames, decoder_step, VaeDecodeShape};
use vidlower_ir::DType;
use vidlower_runtime::safetensors_io;
use vidlower_runtime::stages::vae_decode::{VaeDecodeSettings, VaeDecoder};
use vidlower_runtime::weights::WeightStore;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/wan")
}

/// Decodes `z_key` of the golden file at `dtype`; returns (ours as f64, diffusers' `sample_key`).
fn decode(z_key: &str, sample_key: &str, dtype: DType) -> (Vec<f64>, Vec<f64>) {
    let io = safetensors_io::load(&golden().join("vae_decode_io.safetensors")).unwrap();
    let cfg: WanVaeConfig = read_json(&golden().join("model/vae/config.json")).unwrap();
    let weights = WeightStore::open(&golden().join("model/vae")).unwrap();
    let (z, want) = (&io[z_key], &io[sample_key]);
    let shape = VaeDecodeShape { batch: z.dims[0], height: z.dims[3], width: z.dims[4] };
    let client = common::cpu_client(1);
    let mut vae = VaeDecoder::new(&client, None, &cfg, shape, z.dims[2], &weights, &VaeDecodeSettings::untiled(dtype)).unwrap();
    let got = vae.decode(z).unwrap();
    assert_eq!(got.dims, want.dims, "{z_key}");
    assert_eq!(got.dims[2], decoded_frames(&cfg, z.dims[2]));
    assert_eq!(got.dtype, dtype);
    let cold = times(&vae);
    // A second decode with the same executables must not see the first video's caches.
    let again = vae.decode(z).unwrap();
    assert_eq!(again, got, "decode is repeatable (caches reset)");
    eprintln!("{z_key} {dtype}: {:?} -> {:?}, per-frame decode {cold} (first run), {} (second)", z.dims, got.dims, times(&vae));
    (got.to_f64_vec(), want.to_f64_vec())
}

fn times(vae: &VaeDecoder) -> String {
    let ms: Vec<String> = vae.frame_times().iter().map(|t| format!("{:.1}", t.as_secs_f64() * 1e3)).collect();
    format!("[{}] ms", ms.join(", "))
}

fn max_abs_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// f32: max |ours - diffusers| / (1 + |diffusers|) below 1e-4 (seen: ~1e-6).
#[test]
fn decode_matches_diffusers_f32() {
    for (z, s) in [("z", "sample"), ("z_tall", "sample_tall")] {
        let (got, want) = decode(z, s, DType::F32);
        let (rel, abs) = (common::max_rel_err(&got, &want), max_abs_err(&got, &want));
        eprintln!("{s} f32: max rel err {rel:.3e}, max abs err {abs:.3e}");
        assert!(rel < 1e-4, "{s}: max rel err {rel:.3e}");
    }
}

/// bf16 weights, activations and caches (norms in f32, as diffusers does) against the f32
/// reference: loose, since every conv rounds to 8 bits of mantissa.
#[test]
fn decode_bf16_is_close() {
    let (got, want) = decode("z", "sample", DType::BF16);
    let abs = max_abs_err(&got, &want);
    let mean = got.iter().zip(&want).map(|(x, y)| (x - y).abs()).sum::<f64>() / got.len() as f64;
    eprintln!("sample bf16: max abs err {abs:.3e}, mean abs err {mean:.3e}");
    assert!(abs < 0.1 && mean < 0.01, "bf16: max abs err {abs:.3e}, mean {mean:.3e}");
}

/// The real Wan 2.1 VAE (base_dim 96, two res blocks) at 480x832: both step graphs build and
/// lower through the default pipeline, with one cache signature.
#[test]
fn real_config_builds_at_480x832() {
    let cfg = WanVaeConfig::default();
    let shape = VaeDecodeShape { batch: 1, height: 480 / 8, width: 832 / 8 };
    let slots = cache_signature(&cfg, &shape, DType::BF16).unwrap();
    let mut bytes = 0;
    for s in &slots {
        eprintln!("{:>9} {:<48} {}", s.name, s.layer, s.ty);
        bytes += s.ty.size_in_bytes();
    }
    eprintln!("{} caches, {:.1} MiB in bf16 ({:.1} MiB in f32)", slots.len(), bytes as f64 / 1048576.0, 2.0 * bytes as f64 / 1048576.0);
    assert_eq!(slots.len(), 32);
    assert_eq!(slots[0].ty.shape, vec![1, 16, 2, 60, 104]);
    assert_eq!(slots[31].ty.shape, vec![1, 96, 2, 480, 832]);
    for first in [true, false] {
        let g = decoder_step(&cfg, &shape, DType::BF16, first).unwrap();
        let frames = if first { 1 } else { 4 };
        assert_eq!(g.tensor_ty(g.outputs[0].value).shape, vec![1, 3, frames, 480, 832]);
        let (g, module) = common::lower(g, vidlower_passes::DEFAULT_PIPELINE);
        assert_eq!(g.outputs.len(), 1 + slots.len());
        assert!(module.contains("stablehlo.convolution"));
    }
}
