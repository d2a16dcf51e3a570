//! The HunyuanVideo-1.5 VAE decoder (`AutoencoderKLHunyuanVideo15`: the whole latent video in one
//! step, as diffusers decodes it) through the family-neutral `VaeDecoder`, against diffusers
//! 0.42.1's `vae.decode(z).sample` untiled, block by block and tiled
//! (tests/golden/hunyuanvideo15, made by tools/golden/make_hunyuanvideo15_vae_goldens.py: a tiny
//! VAE with block_out_channels (4, 4, 8, 8, 16) and latent_channels 8), and the real 480p t2v VAE
//! config built at 480x848 with 121 frames.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use vidlower_frontends::config::read_json;
use vidlower_frontends::hunyuanvideo15::vae::{decoder_graph, decoder_probe_graph};
use vidlower_frontends::hunyuanvideo15::vae_config::HunyuanVideo15VaeConfig;
use vidlower_frontends::nn::vae_decoder::{TileKnobs, VaeDecodeShape, VaeDecoderGraphs};
use vidlower_ir::DType;
use vidlower_runtime::pjrt::Client;
use vidlower_runtime::program::{ParamKind, Signature};
use vidlower_runtime::safetensors_io;
use vidlower_runtime::stages::vae_decode::{VaeDecodeSettings, VaeDecoder};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hunyuanvideo15")
}

fn model_dir() -> PathBuf {
    golden().join("hunyuanvideo1.5-480p-t2v/model/vae")
}

fn config() -> HunyuanVideo15VaeConfig {
    read_json(&model_dir().join("config.json")).unwrap()
}

fn io() -> BTreeMap<String, HostTensor> {
    safetensors_io::load(&golden().join("vae/vae_decode_io.safetensors")).unwrap()
}

fn decoder(client: &Client, z: &HostTensor, dtype: DType, tiling: Option<TileKnobs>) -> VaeDecoder {
    let weights = WeightStore::open(&model_dir()).unwrap();
    let shape = VaeDecodeShape { batch: z.dims[0], height: z.dims[3], width: z.dims[4] };
    let settings = VaeDecodeSettings { tiling, ..VaeDecodeSettings::untiled(dtype) };
    VaeDecoder::new(client, None, &config(), shape, z.dims[2], &weights, &settings).unwrap()
}

/// The knobs the golden's tiled decode was made with (`enable_tiling(32, 32, 2, 2, 0.5)`).
fn golden_tiling() -> TileKnobs {
    TileKnobs { tile_sample_min_height: Some(32), tile_sample_min_width: Some(32), tile_overlap_factor: Some(0.5), ..Default::default() }
}

fn max_abs_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// f32, T = 3, 2, 1 latent frames (9, 5, 1 video frames; 64x96, 32x48, 32x32), each one step:
/// max |ours - diffusers| / (1 + |diffusers|) below 1e-4; `z` is the latents / scaling_factor;
/// a second decode gives the same video.
#[test]
fn decode_matches_diffusers_f32() {
    let io = io();
    let cfg = config();
    assert_eq!((cfg.latent_channels, cfg.scaling_factor), (8, 1.03682));
    let client = common::cpu_client(1);
    for (name, t, frames) in [("t3", 3, 9), ("t2", 2, 5), ("t1", 1, 1)] {
        let (z, want, latents) = (&io[&format!("z_{name}")], &io[&format!("sample_{name}")], &io[&format!("latents_{name}")]);
        for (i, (zv, lv)) in z.to_f64_vec().iter().zip(latents.to_f64_vec()).enumerate() {
            assert!((zv - lv / cfg.scaling_factor).abs() < 1e-6, "z_{name}[{i}] is not latents / scaling_factor");
        }
        let mut vae = decoder(&client, z, DType::F32, None);
        assert_eq!(vae.step_frames(), [t], "{name}: one step of every latent frame");
        assert!(vae.cache_names().is_empty(), "{name}: no caches");
        let got = vae.decode(z).unwrap();
        assert_eq!(got.dims, want.dims, "{name}");
        assert_eq!((got.dims[2], vae.decoded_frames()), (frames, frames));
        let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
        let (rel, abs) = (common::max_rel_err(&g, &w), max_abs_err(&g, &w));
        eprintln!("{name}: {:?} -> {:?}, max rel err {rel:.3e}, max abs err {abs:.3e}; {}", z.dims, got.dims, vae.describe_executables());
        assert!(rel < 1e-4, "{name}: max rel err {rel:.3e}");
        assert_eq!(vae.decode(z).unwrap(), got, "{name}: decode is repeatable");
    }
}

/// Each block of the T = 2 decode (conv_in with its shortcut, the mid block with its causal
/// attention, up blocks 0..3) against diffusers' intermediates, so a failure names the block.
#[test]
fn blocks_match_diffusers_f32() {
    let io = io();
    let z = &io["z_t2"];
    let shape = VaeDecodeShape { batch: z.dims[0], height: z.dims[3], width: z.dims[4] };
    let graph = decoder_probe_graph(&config(), &shape, z.dims[2], DType::F32).unwrap();
    let store = WeightStore::open(&model_dir()).unwrap();
    let weights: HashMap<String, HostTensor> = Signature::of(&graph)
        .params
        .iter()
        .filter(|(_, kind, _)| *kind == ParamKind::Weight)
        .map(|(name, _, ty)| (name.clone(), store.load(name, ty).unwrap()))
        .collect();
    let decoder_weights = store.names().filter(|n| n.starts_with("decoder.")).count();
    assert_eq!(weights.len(), decoder_weights, "the graph takes every decoder tensor of the checkpoint");
    let client = common::cpu_client(1);
    let program = common::program(&client, graph, vidlower_passes::DEFAULT_PIPELINE, &weights);
    let outs = program.run(&HashMap::from([("z".to_string(), z.clone())])).unwrap();
    assert_eq!(outs.len(), 7);
    for (name, got) in outs {
        let key = if name == "sample" { "sample_t2".to_string() } else { format!("t2.{name}") };
        let want = &io[&key];
        assert_eq!(got.dims, want.dims, "{name}");
        let rel = common::max_rel_err(&got.to_f64_vec(), &want.to_f64_vec());
        eprintln!("{name:>20} {:?}: max rel err {rel:.3e}", got.dims);
        assert!(rel < 1e-4, "{name}: max rel err {rel:.3e}");
    }
}

/// bf16 weights and activations (norms in f32, as diffusers does; the pipeline runs the VAE in
/// its `torch_dtype`) against the f32 reference: loose.
#[test]
fn decode_bf16_is_close() {
    let io = io();
    let (z, want) = (&io["z_t3"], &io["sample_t3"]);
    let client = common::cpu_client(1);
    let got = decoder(&client, z, DType::BF16, None).decode(z).unwrap();
    assert_eq!((got.dims.clone(), got.dtype), (want.dims.clone(), DType::BF16));
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let abs = max_abs_err(&g, &w);
    let mean = g.iter().zip(&w).map(|(x, y)| (x - y).abs()).sum::<f64>() / g.len() as f64;
    eprintln!("t3 bf16: max abs err {abs:.3e}, mean abs err {mean:.3e}");
    assert!(abs < 0.1 && mean < 0.01, "bf16: max abs err {abs:.3e}, mean {mean:.3e}");
}

/// Tiled (3 x 3 tiles of latent shapes 2x2, 2x1, 1x2, 1x1, each decoded whole, blended over 16
/// pixels and cropped as `tiled_decode`): within 1e-4 of diffusers, and far from the untiled
/// decode; knobs diffusers would assemble wrongly, or another VAE's, are refused by name.
#[test]
fn tiled_decode_matches_diffusers_f32() {
    let io = io();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden().join("vae/vae_decode.json")).unwrap()).unwrap();
    let (z, want) = (&io["z_tiled"], &io["sample_tiled"]);
    let client = common::cpu_client(1);
    let mut vae = decoder(&client, z, DType::F32, Some(golden_tiling()));
    let plan = vae.plan().expect("the golden latents are larger than a tile").clone();
    let tiled = &json["tiled"];
    assert_eq!(plan.len() as u64, tiled["tiles"].as_u64().unwrap());
    assert_eq!(serde_json::json!(plan.rows.iter().map(|s| s.start).collect::<Vec<_>>()), tiled["latent_tile_rows"]);
    assert_eq!(serde_json::json!(plan.cols.iter().map(|s| s.start).collect::<Vec<_>>()), tiled["latent_tile_cols"]);
    assert_eq!(serde_json::json!([plan.blend.0, plan.blend.1]), tiled["blend"]);
    assert_eq!(serde_json::json!([plan.keep.0, plan.keep.1]), tiled["keep"]);
    assert_eq!(plan.tile_shapes(), [(1, 1), (1, 2), (2, 1), (2, 2)]);
    let got = vae.decode(z).unwrap();
    assert_eq!(got.dims, want.dims);
    let rel = common::max_rel_err(&got.to_f64_vec(), &want.to_f64_vec());
    eprintln!("tiled: {} tiles, max rel err vs diffusers' tiled decode {rel:.3e}; {}", plan.len(), vae.describe_executables());
    assert!(rel < 1e-4, "max rel err {rel:.3e}");

    let untiled = decoder(&client, z, DType::F32, None).decode(z).unwrap();
    let diff = max_abs_err(&got.to_f64_vec(), &untiled.to_f64_vec());
    eprintln!("max |tiled - untiled| {diff:.3e}");
    assert!(diff > 1e-2, "the tiled decode looks untiled ({diff:.3e})");

    let weights = WeightStore::open(&model_dir()).unwrap();
    let shape = VaeDecodeShape { batch: 1, height: z.dims[3], width: z.dims[4] };
    for (knobs, flag) in [
        (TileKnobs { tile_overlap_factor: Some(0.3), ..golden_tiling() }, "--tile-sample-min-height 32 with --tile-overlap-factor 0.3"),
        (TileKnobs { tile_sample_stride_height: Some(16), ..golden_tiling() }, "--tile-sample-stride-height does not apply"),
    ] {
        let settings = VaeDecodeSettings { tiling: Some(knobs), ..VaeDecodeSettings::untiled(DType::F32) };
        let e = VaeDecoder::new(&client, None, &config(), shape, 2, &weights, &settings).err().expect("refused").to_string();
        assert!(e.contains(flag), "{e}");
    }
    // The default tiles (256x256 pixels) hold the whole 48x48 frame: decoded whole.
    assert!(decoder(&client, z, DType::F32, Some(TileKnobs::default())).plan().is_none());
}

/// The real 480p t2v VAE (block_out_channels 128..1024, latent 32, 2 layers per block) at
/// 480x848 with 121 frames (31 latent frames): one step, no later steps; the untiled step and the
/// default tiles' steps build, and the untiled one lowers through the default pipeline.
#[test]
fn real_config_builds_at_480x848() {
    let cfg = HunyuanVideo15VaeConfig::default();
    let shape = VaeDecodeShape { batch: 1, height: 480 / 16, width: 848 / 16 };
    assert_eq!((cfg.step_frames(31), cfg.decoded_frames(31)), (vec![31], 121));
    let g = cfg.step_graph(&shape, 31, true, false, DType::BF16).unwrap();
    assert_eq!((g.outputs.len(), g.tensor_ty(g.outputs[0].value).shape.clone()), (1, vec![1, 3, 121, 480, 848]));
    assert!(cfg.step_graph(&shape, 1, false, false, DType::BF16).is_err(), "no later steps");
    let geometry = cfg.tile_geometry(&TileKnobs::default()).unwrap();
    for hw in [(16, 16), (16, 5), (6, 16), (6, 5)] {
        let tile = VaeDecodeShape { batch: 1, height: hw.0, width: hw.1 };
        let g = cfg.step_graph(&tile, 31, true, true, DType::BF16).unwrap();
        assert_eq!(g.tensor_ty(g.outputs[0].value).shape, vec![1, 3, 121, 16 * hw.0, 16 * hw.1], "{geometry:?}");
    }
    let (g, module) = common::lower(decoder_graph(&cfg, &shape, 31, DType::BF16).unwrap(), vidlower_passes::DEFAULT_PIPELINE);
    assert_eq!(g.outputs.len(), 1);
    assert!(module.contains("stablehlo.convolution"));
}
