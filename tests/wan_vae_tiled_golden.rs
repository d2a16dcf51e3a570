//! The tiled Wan VAE decode (`VaeDecoder::new` with a tiling: one executable pair per tile shape,
//! caches reset per tile, tiles blended and cropped by `vidlower_runtime::vae_tiling`) against
//! diffusers 0.42.1's `AutoencoderKLWan.tiled_decode` of the tiny golden VAE
//! (tests/golden/wan/vae_tiled_decode_io.safetensors, made by
//! tools/golden/make_wan_tiled_vae_goldens.py; the cases' tile sizes are read from its json).

mod common;

use std::path::PathBuf;
use vidlower_frontends::wan::config::{read_json, WanVaeConfig};
use vidlower_frontends::wan::vae::VaeDecodeShape;
use vidlower_ir::DType;
use vidlower_runtime::pjrt::Client;
use vidlower_runtime::safetensors_io;
use vidlower_runtime::stages::vae_decode::{VaeDecodeSettings, VaeDecoder};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::vae_tiling::TileKnobs;
use vidlower_runtime::weights::WeightStore;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/wan")
}

fn decoder(client: &Client, z: &HostTensor, tiling: Option<&TileKnobs>) -> VaeDecoder {
    let cfg: WanVaeConfig = read_json(&golden().join("model/vae/config.json")).unwrap();
    let weights = WeightStore::open(&golden().join("model/vae")).unwrap();
    let shape = VaeDecodeShape { batch: z.dims[0], height: z.dims[3], width: z.dims[4] };
    let settings = VaeDecodeSettings { tiling: tiling.cloned(), ..VaeDecodeSettings::untiled(DType::F32) };
    VaeDecoder::new(client, None, &cfg, shape, z.dims[2], &weights, &settings).unwrap()
}

/// Max |a - b| over the sample rows `rows` and columns `cols` of [B, C, F, H, W] videos.
fn max_diff_in(a: &HostTensor, b: &HostTensor, rows: &[usize], cols: &[usize]) -> f64 {
    let (h, w) = (a.dims[3] as usize, a.dims[4] as usize);
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let mut m: f64 = 0.0;
    for plane in 0..a.len() / (h * w) {
        for &y in rows {
            for &x in cols {
                let i = (plane * h + y) * w + x;
                m = m.max((a[i] - b[i]).abs());
            }
        }
    }
    m
}

/// f32: max |ours - diffusers| / (1 + |diffusers|) below 1e-4 (expected ~1e-6, as the untiled
/// decode), while the untiled decode of the same latents is far off in the blended bands.
#[test]
fn tiled_decode_matches_diffusers_f32() {
    let io = safetensors_io::load(&golden().join("vae_tiled_decode_io.safetensors")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(golden().join("vae_tiled_decode.json")).unwrap()).unwrap();
    let cases = json["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 2, "grid and wide");
    let client = common::cpu_client(1);
    for (name, case) in cases {
        let pair = |k: &str| (case[k][0].as_i64().unwrap(), case[k][1].as_i64().unwrap());
        let ((th, tw), (sh, sw)) = (pair("tile_sample_min"), pair("tile_sample_stride"));
        let tiling = TileKnobs {
            tile_sample_min_height: Some(th),
            tile_sample_min_width: Some(tw),
            tile_sample_stride_height: Some(sh),
            tile_sample_stride_width: Some(sw),
            ..Default::default()
        };
        let (z, want) = (&io[&format!("z_{name}")], &io[&format!("sample_{name}")]);

        let mut vae = decoder(&client, z, Some(&tiling));
        let plan = vae.plan().expect("the golden latents are larger than a tile").clone();
        assert_eq!(plan.len() as u64, case["tiles"].as_u64().unwrap(), "{name}: tiles");
        let starts: Vec<i64> = plan.cols.iter().map(|s| s.start).collect();
        assert_eq!(serde_json::json!(starts), case["latent_tile_cols"], "{name}");
        let got = vae.decode(z).unwrap();
        assert_eq!(got.dims, want.dims, "{name}");
        assert_eq!(vae.decode(z).unwrap(), got, "{name}: a second decode is the same (caches reset per tile)");
        let (got_v, want_v) = (got.to_f64_vec(), want.to_f64_vec());
        let rel = common::max_rel_err(&got_v, &want_v);
        eprintln!("{name}: {} tiles of shapes {:?}, max rel err vs diffusers' tiled decode {rel:.3e}", plan.len(), plan.tile_shapes());
        eprintln!("{name}: {}", vae.describe_executables());
        assert!(rel < 1e-4, "{name}: max rel err {rel:.3e}");

        // The untiled decode differs exactly where tiles were blended: the band below each
        // tile row's top edge and right of each tile column's left edge.
        let untiled = decoder(&client, z, None).decode(z).unwrap();
        assert_eq!(untiled.dims, got.dims);
        let (h, w) = (got.dims[3] as usize, got.dims[4] as usize);
        let band = |starts: Vec<i64>, blend: i64, n: usize| -> Vec<usize> {
            let r = plan.ratio;
            starts.into_iter().skip(1).flat_map(|s| (s * r..s * r + blend).map(|p| p as usize)).filter(|&p| p < n).collect()
        };
        let rows = band(plan.rows.iter().map(|s| s.start).collect(), plan.blend.0, h);
        let cols = band(plan.cols.iter().map(|s| s.start).collect(), plan.blend.1, w);
        let all = |n: usize| (0..n).collect::<Vec<_>>();
        let in_rows = max_diff_in(&got, &untiled, &rows, &all(w));
        let in_cols = max_diff_in(&got, &untiled, &all(h), &cols);
        eprintln!("{name}: max |tiled - untiled| in the blended rows {in_rows:.3e}, columns {in_cols:.3e}");
        assert!(in_rows > 1e-2 && in_cols > 1e-2, "{name}: the tiled decode looks untiled ({in_rows:.3e}, {in_cols:.3e})");
    }
}

/// With tiling on, a frame no larger than one tile is decoded whole, as diffusers' `_decode`
/// does: the untiled golden comes out unchanged.
#[test]
fn frames_within_a_tile_are_not_tiled() {
    let io = safetensors_io::load(&golden().join("vae_decode_io.safetensors")).unwrap();
    let (z, want) = (&io["z"], &io["sample"]); // latents 4x4: exactly one 32x32 tile
    let tiling = TileKnobs {
        tile_sample_min_height: Some(32),
        tile_sample_min_width: Some(32),
        tile_sample_stride_height: Some(24),
        tile_sample_stride_width: Some(24),
        ..Default::default()
    };
    let client = common::cpu_client(1);
    let mut vae = decoder(&client, z, Some(&tiling));
    assert!(vae.plan().is_none());
    let rel = common::max_rel_err(&vae.decode(z).unwrap().to_f64_vec(), &want.to_f64_vec());
    assert!(rel < 1e-4, "max rel err {rel:.3e}");
}

/// `vidlower stage3`'s tile flags are refused with the flag named before the latents are read
/// (there are none here), and tile sizes without --vae-tiling are a usage error.
#[test]
fn bad_tile_flags_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = r#"{"prompt": "p", "negative_prompt": "", "model_id": "wan2.1-tiny", "max_sequence_length": 16}"#;
    std::fs::write(tmp.path().join("generation_config.json"), config).unwrap();
    let stage3 = |flags: &[&str]| -> String {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vidlower"))
            .args(["stage3", "--input-dir"])
            .arg(tmp.path())
            .args(flags)
            .env("VIDLOWER_CACHE_DIR", tmp.path().join("cache"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{flags:?} was accepted");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!err.contains("panicked") && !err.contains("stage2_latents"), "{err}");
        err
    };
    let e = stage3(&["--vae-tiling", "--tile-sample-stride-width", "100"]);
    assert!(e.contains("--tile-sample-stride-width is 100: expected a positive multiple of the VAE's spatial compression 8"), "{e}");
    let e = stage3(&["--enable_tiling", "--tile-sample-stride-height", "320"]);
    assert!(e.contains("--tile-sample-stride-height 320 exceeds --tile-sample-min-height 256"), "{e}");
    let e = stage3(&["--tile-sample-min-width", "64"]);
    assert!(e.contains("--vae-tiling"), "{e}");
}
