//! The CogVideoX VAE decoder (`AutoencoderKLCogVideoX`: diffusers' frame batches of 2 latent
//! frames, the remainder in the first, with the causal-conv caches carried between batches on the
//! device) through the family-neutral `VaeDecoder`, against diffusers 0.42.1's `vae.decode(z).sample`
//! untiled and tiled (tests/golden/cogvideox/cogvideox-2b, made by
//! tools/golden/make_cogvideox_vae_goldens.py: a tiny VAE with block_out_channels (8, 8, 8, 16)), and
//! the real CogVideoX-5b VAE config built at 480x720.

mod common;

use std::path::PathBuf;
use vidlower_frontends::cogvideox::vae::{cache_signature, decoder_step};
use vidlower_frontends::cogvideox::vae_config::CogVideoXVaeConfig;
use vidlower_frontends::nn::vae_decoder::{TileKnobs, VaeDecodeShape, VaeDecoderGraphs};
use vidlower_frontends::wan::config::read_json;
use vidlower_ir::DType;
use vidlower_runtime::pjrt::Client;
use vidlower_runtime::safetensors_io;
use vidlower_runtime::stages::vae_decode::{VaeDecodeSettings, VaeDecoder};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

fn golden(variant: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cogvideox").join(variant)
}

fn config(variant: &str) -> CogVideoXVaeConfig {
    read_json(&golden(variant).join("model/vae/config.json")).unwrap()
}

fn decoder(client: &Client, variant: &str, z: &HostTensor, tiling: Option<TileKnobs>) -> VaeDecoder {
    let cfg = config(variant);
    let weights = WeightStore::open(&golden(variant).join("model/vae")).unwrap();
    let shape = VaeDecodeShape { batch: z.dims[0], height: z.dims[3], width: z.dims[4] };
    let settings = VaeDecodeSettings { tiling, ..VaeDecodeSettings::untiled(DType::F32) };
    VaeDecoder::new(client, None, &cfg, shape, z.dims[2], &weights, &settings).unwrap()
}

/// The knobs the golden's tiled decode was made with (`enable_tiling(48, 40, 1/6, 0.2)`).
fn golden_tiling() -> TileKnobs {
    TileKnobs {
        tile_sample_min_height: Some(48),
        tile_sample_min_width: Some(40),
        tile_overlap_factor_height: Some(1.0 / 6.0),
        tile_overlap_factor_width: Some(0.2),
        ..Default::default()
    }
}

/// f32, T = 1..5 latent frames (batches [1], [2], [3], [2, 2], [3, 2]): max |ours - diffusers| /
/// (1 + |diffusers|) below 1e-4 (aim 1e-5); frame counts as diffusers (1, 8, 9, 16, 17: 4T - 3 for
/// odd T, 4T for even T); a second decode with the same executables gives the same video.
#[test]
fn decode_matches_diffusers_f32() {
    let io = safetensors_io::load(&golden("cogvideox-2b").join("vae_decode_io.safetensors")).unwrap();
    let cfg = config("cogvideox-2b");
    let client = common::cpu_client(1);
    for (t, batches, frames) in [(1, vec![1], 1), (2, vec![2], 8), (3, vec![3], 9), (4, vec![2, 2], 16), (5, vec![3, 2], 17)] {
        let (z, want) = (&io[&format!("z_t{t}")], &io[&format!("sample_t{t}")]);
        // `z` is what the pipeline passes to `vae.decode`: the latents permuted to [B, C, T, h, w], unscaled.
        let latents = &io[&format!("latents_t{t}")];
        let (lv, zv) = (latents.to_f32_vec(), z.to_f32_vec());
        let (c, hw) = (z.dims[1] as usize, (z.dims[3] * z.dims[4]) as usize);
        for (i, &v) in zv.iter().enumerate() {
            let (ch, f, p) = (i / (t as usize * hw), (i / hw) % t as usize, i % hw);
            let l = lv[(f * c + ch) * hw + p];
            assert!((v as f64 - l as f64 / cfg.scaling_factor).abs() < 1e-6, "z_t{t}[{i}]");
        }

        let mut vae = decoder(&client, "cogvideox-2b", z, None);
        assert_eq!(vae.step_frames(), batches, "T = {t}");
        let got = vae.decode(z).unwrap();
        assert_eq!(got.dims, want.dims, "T = {t}");
        assert_eq!((got.dims[2], vae.decoded_frames(), cfg.decoded_frames(t)), (frames, frames, frames));
        let rel = common::max_rel_err(&got.to_f64_vec(), &want.to_f64_vec());
        eprintln!("T = {t}: {:?} -> {:?} in steps {batches:?}, max rel err {rel:.3e}; {}", z.dims, got.dims, vae.describe_executables());
        assert!(rel < 1e-4, "T = {t}: max rel err {rel:.3e}");
        assert_eq!(vae.decode(z).unwrap(), got, "T = {t}: decode is repeatable (caches reset)");
    }
}

/// The same decode streamed step by step (`decode_step` with each batch's frames) is the
/// whole decode, and a batch of the wrong size is refused with the steps it has.
#[test]
fn steps_stream_the_same_video() {
    let io = safetensors_io::load(&golden("cogvideox-2b").join("vae_decode_io.safetensors")).unwrap();
    let z = &io["z_t5"];
    let client = common::cpu_client(1);
    let mut vae = decoder(&client, "cogvideox-2b", z, None);
    let whole = vae.decode(z).unwrap();
    vae.reset();
    let v = z.to_f32_vec();
    let hw = (z.dims[3] * z.dims[4]) as usize;
    let batch = |start: usize, n: usize| {
        let data: Vec<f32> = (0..z.dims[1] as usize).flat_map(|c| v[(c * 5 + start) * hw..(c * 5 + start + n) * hw].to_vec()).collect();
        HostTensor::from_f32(vec![1, z.dims[1], n as i64, z.dims[3], z.dims[4]], &data).unwrap()
    };
    let e = vae.decode_step(&batch(0, 2)).unwrap_err().to_string();
    assert!(e.contains("no executable for a first step of 2 latent frames"), "{e}");
    let (a, b) = (vae.decode_step(&batch(0, 3)).unwrap(), vae.decode_step(&batch(3, 2)).unwrap());
    assert_eq!((a.dims[2], b.dims[2]), (9, 8));
    let joined: Vec<f32> = (0..3)
        .flat_map(|c| {
            let plane = (whole.dims[3] * whole.dims[4]) as usize;
            let (av, bv) = (a.to_f32_vec(), b.to_f32_vec());
            [av[c * 9 * plane..(c + 1) * 9 * plane].to_vec(), bv[c * 8 * plane..(c + 1) * 8 * plane].to_vec()].concat()
        })
        .collect();
    assert_eq!(joined, whole.to_f32_vec());
}

/// Tiled (4 tiles of latent shapes 6x5, 6x1, 2x5, 2x1, each decoded as batches [3, 2] from fresh
/// caches, blended and cropped as `tiled_decode`): within 1e-4 of diffusers, while the untiled
/// decode of the same latents is far off in the blended bands.
#[test]
fn tiled_decode_matches_diffusers_f32() {
    let io = safetensors_io::load(&golden("cogvideox-2b").join("vae_decode_io.safetensors")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("cogvideox-2b").join("vae_decode.json")).unwrap()).unwrap();
    let (z, want) = (&io["z_tiled"], &io["sample_tiled"]);
    let client = common::cpu_client(1);
    let mut vae = decoder(&client, "cogvideox-2b", z, Some(golden_tiling()));
    let plan = vae.plan().expect("the golden latents are larger than a tile").clone();
    let tiled = &json["tiled"];
    assert_eq!(plan.len() as u64, tiled["tiles"].as_u64().unwrap());
    assert_eq!(serde_json::json!(plan.rows.iter().map(|s| s.start).collect::<Vec<_>>()), tiled["latent_tile_rows"]);
    assert_eq!(serde_json::json!(plan.cols.iter().map(|s| s.start).collect::<Vec<_>>()), tiled["latent_tile_cols"]);
    assert_eq!(serde_json::json!([plan.blend.0, plan.blend.1]), tiled["blend"]);
    assert_eq!(plan.tile_shapes(), [(2, 1), (2, 5), (6, 1), (6, 5)]);
    let got = vae.decode(z).unwrap();
    assert_eq!(got.dims, want.dims);
    let rel = common::max_rel_err(&got.to_f64_vec(), &want.to_f64_vec());
    eprintln!("tiled: {} tiles, max rel err vs diffusers' tiled decode {rel:.3e}; {}", plan.len(), vae.describe_executables());
    assert!(rel < 1e-4, "max rel err {rel:.3e}");
    assert_eq!(vae.decode(z).unwrap(), got, "a second decode is the same (caches reset per tile)");

    let untiled = decoder(&client, "cogvideox-2b", z, None).decode(z).unwrap();
    let (h, w) = (got.dims[3] as usize, got.dims[4] as usize);
    let (a, b) = (got.to_f64_vec(), untiled.to_f64_vec());
    let max_in = |rows: &dyn Fn(usize) -> bool, cols: &dyn Fn(usize) -> bool| {
        let mut m: f64 = 0.0;
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            if rows((i / w) % h) && cols(i % w) {
                m = m.max((x - y).abs());
            }
        }
        m
    };
    let band = |start: i64, blend: i64| move |p: usize| (start * 8..start * 8 + blend).contains(&(p as i64));
    let (in_rows, in_cols) =
        (max_in(&band(plan.rows[1].start, plan.blend.0), &|_| true), max_in(&|_| true, &band(plan.cols[1].start, plan.blend.1)));
    eprintln!("max |tiled - untiled| in the blended rows {in_rows:.3e}, columns {in_cols:.3e}");
    assert!(in_rows > 1e-2 && in_cols > 1e-2, "the tiled decode looks untiled ({in_rows:.3e}, {in_cols:.3e})");
}

/// The 5b and 1.5-5B folders: their own scaling (the 1.5's `invert_scale_latents`), the same
/// decoder weights (the decoder reads neither field), so the 2b golden decodes through them too.
#[test]
fn variants_share_the_decoder() {
    let io = safetensors_io::load(&golden("cogvideox-2b").join("vae_decode_io.safetensors")).unwrap();
    let (z, want) = (&io["z_t3"], &io["sample_t3"]);
    let client = common::cpu_client(1);
    for (variant, scaling, invert) in [("cogvideox-2b", 1.15258426, false), ("cogvideox-5b", 0.7, false), ("cogvideox1.5-5b", 0.7, true)] {
        let cfg = config(variant);
        assert_eq!((cfg.scaling_factor, cfg.invert_scale_latents, cfg.latent_channels), (scaling, invert, 8), "{variant}");
        let got = decoder(&client, variant, z, None).decode(z).unwrap();
        let rel = common::max_rel_err(&got.to_f64_vec(), &want.to_f64_vec());
        assert!(rel < 1e-4, "{variant}: max rel err {rel:.3e}");
    }
}

/// Tile knobs diffusers would assemble into a video of another size (0.1667: 4-row stride, 40
/// rows kept) and Wan's knobs are refused, naming the flag; a frame within one tile is not tiled.
#[test]
fn tile_knobs_are_checked() {
    let io = safetensors_io::load(&golden("cogvideox-2b").join("vae_decode_io.safetensors")).unwrap();
    let z = &io["z_tiled"];
    let cfg = config("cogvideox-2b");
    let weights = WeightStore::open(&golden("cogvideox-2b").join("model/vae")).unwrap();
    let client = common::cpu_client(1);
    let shape = VaeDecodeShape { batch: 1, height: z.dims[3], width: z.dims[4] };
    for (knobs, flag) in [
        (TileKnobs { tile_overlap_factor_height: Some(0.1667), ..golden_tiling() }, "--tile-overlap-factor-height 0.1667"),
        (TileKnobs { tile_sample_stride_height: Some(40), ..golden_tiling() }, "--tile-sample-stride-height does not apply"),
    ] {
        let settings = VaeDecodeSettings { tiling: Some(knobs), ..VaeDecodeSettings::untiled(DType::F32) };
        let e = VaeDecoder::new(&client, None, &cfg, shape, 5, &weights, &settings).err().expect("refused").to_string();
        assert!(e.contains(flag), "{e}");
    }
    // The default tiles (240x360 pixels) hold the whole 56x40 frame: decoded whole.
    let vae = decoder(&client, "cogvideox-2b", z, Some(TileKnobs::default()));
    assert!(vae.plan().is_none());
}

/// The real CogVideoX-5b VAE (block_out_channels 128..512, 3 layers per block, 32 groups) at
/// 480x720: the steps of 13 latent frames (3, then 2) build and lower through the default
/// pipeline with one cache signature, 49 video frames in all.
#[test]
fn real_config_builds_at_480x720() {
    let cfg = CogVideoXVaeConfig { scaling_factor: 0.7, ..Default::default() };
    let shape = VaeDecodeShape { batch: 1, height: 480 / 8, width: 720 / 8 };
    assert_eq!((cfg.step_frames(13), cfg.decoded_frames(13)), (vec![3, 2, 2, 2, 2, 2], 49));
    let slots = cache_signature(&cfg, &shape, DType::BF16).unwrap();
    let bytes: i64 = slots.iter().map(|s| s.ty.size_in_bytes()).sum();
    eprintln!("{} caches, {:.1} MiB in bf16", slots.len(), bytes as f64 / 1048576.0);
    // conv_in, 2 mid resnets x 2, 4 up blocks x 4 resnets x 2, conv_out.
    assert_eq!(slots.len(), 1 + 4 + 32 + 1);
    assert_eq!(slots[0].ty.shape, vec![1, 16, 2, 60, 90]);
    assert_eq!(slots.last().unwrap().ty.shape, vec![1, 128, 2, 480, 720]);
    for (frames, first, out) in [(3, true, 9), (2, false, 8)] {
        let g = decoder_step(&cfg, &shape, frames, DType::BF16, first).unwrap();
        assert_eq!(g.tensor_ty(g.outputs[0].value).shape, vec![1, 3, out, 480, 720]);
        let (g, module) = common::lower(g, vidlower_passes::DEFAULT_PIPELINE);
        assert_eq!(g.outputs.len(), 1 + slots.len());
        assert!(module.contains("stablehlo.convolution"));
    }
}
