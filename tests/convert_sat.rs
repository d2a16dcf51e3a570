//! `vidlower convert sat` / `sat-lora` as a user runs them. The SAT checkpoints are built here from
//! diffusers-layout weights (the tiny CogVideoX goldens diffusers 0.42.1 saved) by the inverse of
//! the map, written out by hand from SAT's module names (`sat/dit_video_concat.py`,
//! `sgm/modules/cp_enc_dec.py`, `sat.model.finetune.lora2`): q/k/v stacked into
//! `query_key_value`, the two `CogVideoXLayerNormZero` linears interleaved into SAT's 12-chunk
//! `adaLN_modulations` (video msa, video mlp, text msa, text mlp), VAE levels listed the other way
//! round. Converting back must give the diffusers tensors bit for bit, and the converted model
//! must run to the original's output. Then the refusals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vidlower_runtime::safetensors_io::{self, Tensors};
use vidlower_runtime::tensor::HostTensor;

#[path = "common/cli.rs"]
mod cli;
use cli::{failure as fails, files_under as walk, ok};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cogvideox")
}

/// Runs vidlower; `exec` gets its executable cache in `root/executables`.
fn vidlower(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidlower"));
    cmd.args(args);
    if args.first() == Some(&"exec") {
        cmd.arg("--cache-dir").arg(root.join("executables"));
    }
    cmd.output().expect("vidlower runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Rows of `parts` stacked (concatenation along dim 0).
fn cat_rows(parts: &[&HostTensor]) -> HostTensor {
    let mut dims = parts[0].dims.clone();
    dims[0] = parts.iter().map(|p| p.dims[0]).sum();
    let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
    HostTensor::new(parts[0].dtype, dims, data).unwrap()
}

/// Rows of `t` cut into `n` equal blocks.
fn chunks(t: &HostTensor, n: usize) -> Vec<HostTensor> {
    let step = t.data.len() / n;
    let mut dims = t.dims.clone();
    dims[0] /= n as i64;
    (0..n).map(|i| HostTensor::new(t.dtype, dims.clone(), t.data[i * step..(i + 1) * step].to_vec()).unwrap()).collect()
}

/// A diffusers `CogVideoXTransformer3DModel` state dict under SAT's names (prefix
/// `model.diffusion_model.`), plus what a SAT checkpoint also holds and the converter drops.
fn sat_transformer(d: &Tensors, flat_patch_embed: bool) -> Tensors {
    let mut sat = Tensors::new();
    let mut put = |k: String, t: HostTensor| assert!(sat.insert(format!("model.diffusion_model.{k}"), t).is_none(), "{k}");
    for (name, t) in d {
        let parts: Vec<&str> = name.split('.').collect();
        let wb = *parts.last().unwrap();
        if let ["transformer_blocks", n, rest @ ..] = &parts[..] {
            let layer = format!("transformer.layers.{n}");
            let sub = rest[..rest.len() - 1].join(".");
            match sub.as_str() {
                "attn1.to_q" => {
                    let get = |p: &str| &d[&format!("transformer_blocks.{n}.attn1.{p}.{wb}")];
                    put(format!("{layer}.attention.query_key_value.{wb}"), cat_rows(&[get("to_q"), get("to_k"), get("to_v")]));
                }
                "attn1.to_k" | "attn1.to_v" | "norm2.linear" => {}
                "norm1.linear" => {
                    // SAT: [shift, scale, gate]_msa, [..]_mlp, text [..]_msa, text [..]_mlp;
                    // diffusers norm1 = video msa + text msa, norm2 = video mlp + text mlp.
                    let a = chunks(t, 6);
                    let b = chunks(&d[&format!("transformer_blocks.{n}.norm2.linear.{wb}")], 6);
                    let order = [&a[0..3], &b[0..3], &a[3..6], &b[3..6]].concat();
                    put(format!("mixins.adaln_layer.adaLN_modulations.{n}.1.{wb}"), cat_rows(&order.iter().collect::<Vec<_>>()));
                }
                "attn1.norm_q" => put(format!("mixins.adaln_layer.query_layernorm_list.{n}.{wb}"), t.clone()),
                "attn1.norm_k" => put(format!("mixins.adaln_layer.key_layernorm_list.{n}.{wb}"), t.clone()),
                other => {
                    let sat_sub = match other {
                        "norm1.norm" => "input_layernorm",
                        "norm2.norm" => "post_attention_layernorm",
                        "attn1.to_out.0" => "attention.dense",
                        "ff.net.0.proj" => "mlp.dense_h_to_4h",
                        "ff.net.2" => "mlp.dense_4h_to_h",
                        _ => panic!("no SAT name for `{name}`"),
                    };
                    put(format!("{layer}.{sat_sub}.{wb}"), t.clone());
                }
            }
            continue;
        }
        let module = &name[..name.len() - wb.len() - 1];
        let sat_module = match module {
            "norm_final" => "transformer.final_layernorm",
            "norm_out.norm" => "mixins.final_layer.norm_final",
            "norm_out.linear" => "mixins.final_layer.adaLN_modulation.1",
            "proj_out" => "mixins.final_layer.linear",
            "patch_embed.proj" => "mixins.patch_embed.proj",
            "patch_embed.text_proj" => "mixins.patch_embed.text_proj",
            "time_embedding.linear_1" => "time_embed.0",
            "time_embedding.linear_2" => "time_embed.2",
            _ => panic!("no SAT name for `{name}`"),
        };
        let mut t = t.clone();
        if flat_patch_embed && name == "patch_embed.proj.weight" && t.dims.len() == 4 {
            // SAT's current Linear patch embedding: [inner, C * p * p], the same numbers.
            t.dims = vec![t.dims[0], t.dims[1..].iter().product()];
        }
        put(format!("{sat_module}.{wb}"), t);
    }
    let small = HostTensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    put("mixins.pos_embed.freqs_sin".into(), small.clone());
    put("transformer.position_embeddings.weight".into(), small);
    sat
}

/// A diffusers `AutoencoderKLCogVideoX` state dict under SAT's VAE names, with a loss module.
fn sat_vae(d: &Tensors) -> Tensors {
    let levels = 1 + d.keys().filter_map(|k| k.strip_prefix("decoder.up_blocks.")).map(|r| r.split('.').next().unwrap().parse::<usize>().unwrap()).max().unwrap();
    let mut sat = Tensors::new();
    for (name, t) in d {
        let parts: Vec<&str> = name.split('.').collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < parts.len() {
            match (parts[i], parts.get(i + 1)) {
                ("down_blocks", Some(n)) => out.push(format!("down.{n}")),
                ("up_blocks", Some(n)) => out.push(format!("up.{}", levels - 1 - n.parse::<usize>().unwrap())),
                ("resnets", Some(n)) => out.push(format!("block.{n}")),
                ("mid_block", Some(&"resnets")) => {
                    out.push(format!("mid.block_{}", parts[i + 2].parse::<usize>().unwrap() + 1));
                    i += 1;
                }
                ("downsamplers", Some(&"0")) => out.push("downsample".into()),
                ("upsamplers", Some(&"0")) => out.push("upsample".into()),
                ("conv_shortcut", _) => {
                    out.push("nin_shortcut".into());
                    i += 1;
                    continue;
                }
                (p, _) => {
                    out.push(p.into());
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        assert!(sat.insert(out.join("."), t.clone()).is_none(), "{name}");
    }
    sat.insert("loss.discriminator.main.0.weight".into(), HostTensor::from_f32(vec![2], &[1.0, 2.0]).unwrap());
    sat
}

fn load(p: &Path) -> Tensors {
    safetensors_io::load(p).unwrap_or_else(|e| panic!("{e}"))
}

fn save(p: &Path, t: &Tensors) {
    let v: Vec<(String, HostTensor)> = t.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    safetensors_io::save(p, &v).unwrap();
}

/// Same names, same dtypes, shapes and bytes.
fn assert_bit_equal(got: &Tensors, want: &Tensors, what: &str) {
    let (g, w): (Vec<_>, Vec<_>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(g, w, "{what}: names differ");
    for (k, t) in want {
        assert!(got[k] == *t, "{what}: `{k}` differs ({:?} vs {:?})", got[k].dims, t.dims);
    }
}

/// A copy of a golden model directory (links followed) with `replace` folders put in its place.
fn model_dir(golden_model: &Path, dst: &Path, replace: &[(&str, &Path)]) {
    for e in walk(golden_model) {
        let rel = e.strip_prefix(golden_model).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_str().unwrap();
        if replace.iter().any(|(r, _)| *r == top) {
            continue;
        }
        std::fs::create_dir_all(dst.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&e, dst.join(rel)).unwrap();
    }
    for (name, from) in replace {
        for e in walk(from) {
            let rel = e.strip_prefix(from).unwrap();
            std::fs::create_dir_all(dst.join(name).join(rel).parent().unwrap()).unwrap();
            std::fs::copy(&e, dst.join(name).join(rel)).unwrap();
        }
    }
}

/// `exec --component transformer` on the golden inputs of `io`: the `sample` output.
fn exec_transformer(root: &Path, model: &Path, io: &Path, extra: &[&str]) -> HostTensor {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let out = root.join(format!("exec-{}.safetensors", RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    let args = [&["exec", "--model-dir", s(model), "--component", "transformer", "--inputs", s(io), "--output", s(&out)][..], extra].concat();
    ok(vidlower(root, &args));
    load(&out).remove("sample").expect("a sample output")
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn sat_2b_transformer_and_vae_convert_bit_for_bit_and_run_as_the_original() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let model = golden().join("cogvideox-2b/model");
    let transformer = load(&model.join("transformer/diffusion_pytorch_model.safetensors"));
    let vae = load(&model.join("vae/diffusion_pytorch_model.safetensors"));
    // SAT's save layout: <dir>/<iteration>/mp_rank_00_model_states.*; the 1.0 Linear patch embedding.
    std::fs::create_dir_all(r.join("sat/1000")).unwrap();
    save(&r.join("sat/1000/mp_rank_00_model_states.safetensors"), &sat_transformer(&transformer, true));
    save(&r.join("vae.safetensors"), &sat_vae(&vae));
    let out = r.join("converted");
    let vae_config = model.join("vae/config.json");
    let (sat_dir, sat_vae_file) = (r.join("sat"), r.join("vae.safetensors"));
    let args = ["convert", "sat", "--input", s(&sat_dir), "--output", s(&out), "--variant", "2b", "--vae", s(&sat_vae_file)];
    // The tiny VAE's 4 groups are not in the weights: the variant's 32 do not divide 8 channels.
    let e = fails(vidlower(r, &args));
    assert!(e.contains("norm_num_groups 32"), "{e}");
    assert!(!out.exists(), "a refused conversion wrote {}", out.display());

    let log = ok(vidlower(r, &[&args[..], &["--vae-config", s(&vae_config)]].concat()));
    let n_sat = sat_transformer(&transformer, true).len();
    assert!(log.contains(&format!("transformer: {} SAT tensors converted to {} diffusers tensors", n_sat - 2, transformer.len())), "{log}");
    assert!(log.contains("dropped 1 (a position table the model recomputes): `model.diffusion_model.mixins.pos_embed.freqs_sin`"), "{log}");
    assert!(log.contains(&format!("vae: {} SAT tensors converted to {} diffusers tensors", vae.len(), vae.len())), "{log}");
    assert!(log.contains("dropped 1 (a training loss module"), "{log}");
    // VIDLOWER_KEEP_SAT_CONVERSION=DIR keeps the converted folders for diffusers to load
    // (tools/golden/check_sat_conversion.py).
    if let Some(keep) = std::env::var_os("VIDLOWER_KEEP_SAT_CONVERSION") {
        let keep = Path::new(&keep);
        for part in ["transformer", "vae"] {
            std::fs::create_dir_all(keep.join(part)).unwrap();
            for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
                std::fs::copy(out.join(part).join(file), keep.join(part).join(file)).unwrap();
            }
        }
    }
    assert_bit_equal(&load(&out.join("transformer/diffusion_pytorch_model.safetensors")), &transformer, "transformer");
    assert_bit_equal(&load(&out.join("vae/diffusion_pytorch_model.safetensors")), &vae, "vae");

    // The variant's config (what the script writes for 2b), with the sizes the weights give.
    let cfg = json(&out.join("transformer/config.json"));
    let want = json(&model.join("transformer/config.json"));
    for k in ["num_layers", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_embed_dim", "time_embed_dim", "patch_bias", "patch_size_t", "use_rotary_positional_embeddings"] {
        assert_eq!(cfg[k], want[k], "{k}");
    }
    assert_eq!((cfg["sample_height"].as_i64(), cfg["sample_width"].as_i64(), cfg["sample_frames"].as_i64()), (Some(60), Some(90), Some(49)));
    assert_eq!(json(&out.join("vae/config.json")), json(&vae_config));

    // 2b's sincos table depends on the actual size only: the converted model gives the original's
    // output exactly (transformer and VAE decoder).
    let dir = r.join("model");
    model_dir(&model, &dir, &[("transformer", &out.join("transformer")), ("vae", &out.join("vae"))]);
    let io = golden().join("cogvideox-2b/transformer_io.safetensors");
    assert!(exec_transformer(r, &dir, &io, &[]) == exec_transformer(r, &model, &io, &[]));
    let z = load(&golden().join("cogvideox-2b/vae_decode_io.safetensors")).remove("z_t3").unwrap();
    let io = r.join("z.safetensors");
    save(&io, &[("z".to_string(), z)].into());
    let decode = |m: &Path, o: &str| {
        let o = r.join(o);
        ok(vidlower(r, &["exec", "--model-dir", s(m), "--component", "vae_decoder", "--inputs", s(&io), "--output", s(&o)]));
        load(&o).remove("sample").unwrap()
    };
    assert!(decode(&dir, "a.safetensors") == decode(&model, "b.safetensors"));
}

#[test]
fn sat_1_5_and_5b_transformers_take_the_variant_or_a_given_config() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();

    // 1.5-5B with the variant's config: temporal patches, no patch bias, 300x300x81 RoPE grid.
    let model = golden().join("cogvideox1.5-5b/model");
    let transformer = load(&model.join("transformer/diffusion_pytorch_model.safetensors"));
    let mut sat = sat_transformer(&transformer, false);
    // Keys as saved without the engine's prefix, under DeepSpeed's `module.`.
    sat = sat.into_iter().map(|(k, v)| (format!("module.{}", k.strip_prefix("model.diffusion_model.").unwrap()), v)).collect();
    save(&r.join("t15.safetensors"), &sat);
    let out = r.join("c15");
    ok(vidlower(r, &["convert", "sat", "--input", s(&r.join("t15.safetensors")), "--output", s(&out), "--variant", "1.5-5b"]));
    assert_bit_equal(&load(&out.join("transformer/diffusion_pytorch_model.safetensors")), &transformer, "1.5 transformer");
    let cfg = json(&out.join("transformer/config.json"));
    assert_eq!(cfg["patch_size_t"], 2);
    assert_eq!(cfg["patch_bias"], false);
    assert_eq!((cfg["sample_height"].as_i64(), cfg["sample_frames"].as_i64()), (Some(300), Some(81)));
    assert!(!out.join("vae").exists());
    // The "slice" RoPE grid does not depend on the sample size: same output as the original.
    let dir = r.join("m15");
    model_dir(&model, &dir, &[("transformer", &out.join("transformer"))]);
    let io = golden().join("cogvideox1.5-5b/transformer_io.safetensors");
    assert!(exec_transformer(r, &dir, &io, &[]) == exec_transformer(r, &model, &io, &[]));

    // 5b: the converted config is the given one; a given config the weights contradict is refused.
    let model = golden().join("cogvideox-5b/model");
    let transformer = load(&model.join("transformer/diffusion_pytorch_model.safetensors"));
    save(&r.join("t5.safetensors"), &sat_transformer(&transformer, false));
    let given = model.join("transformer/config.json");
    let out = r.join("c5");
    ok(vidlower(r, &["convert", "sat", "--input", s(&r.join("t5.safetensors")), "--output", s(&out), "--variant", "5b", "--transformer-config", s(&given)]));
    assert_bit_equal(&load(&out.join("transformer/diffusion_pytorch_model.safetensors")), &transformer, "5b transformer");
    assert_eq!(json(&out.join("transformer/config.json")), json(&given));
    let mut wrong = json(&given);
    wrong["num_layers"] = 3.into();
    std::fs::write(r.join("wrong.json"), wrong.to_string()).unwrap();
    let e = fails(vidlower(r, &["convert", "sat", "--input", s(&r.join("t5.safetensors")), "--output", s(&r.join("c5x")), "--variant", "5b", "--transformer-config", s(&r.join("wrong.json"))]));
    assert!(e.contains("the given config says num_layers 3, the checkpoint's weights say 2"), "{e}");
    // A 1.0 checkpoint's Conv2d patch embedding is not 1.5's Linear over temporal patches.
    let e = fails(vidlower(r, &["convert", "sat", "--input", s(&r.join("t5.safetensors")), "--output", s(&r.join("c5y")), "--variant", "1.5-5b"]));
    assert!(e.contains("`mixins.patch_embed.proj.weight` is [32, 8, 2, 2]: expected [inner, C * 8]"), "{e}");
}

#[test]
fn sat_lora_converts_back_bit_for_bit_and_loads_with_lora() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // The attention factors of the golden diffusers LoRA (SAT trains q, k, v and the output only).
    let lora = load(&golden().join("lora/lora_a.safetensors"));
    let attn: Tensors = lora.into_iter().filter(|(k, _)| k.contains(".attn1.")).collect();
    assert_eq!(attn.len(), 16);
    let mut sat = Tensors::new();
    for (k, t) in &attn {
        let rest = k.strip_prefix("transformer.transformer_blocks.").unwrap();
        let (n, rest) = rest.split_once('.').unwrap();
        let (module, ab) = rest.rsplit_once(".lora_").unwrap();
        let m = if ab.starts_with('A') { "matrix_A" } else { "matrix_B" };
        let sat_module = match module {
            "attn1.to_q" => format!("query_key_value.{m}.0"),
            "attn1.to_k" => format!("query_key_value.{m}.1"),
            "attn1.to_v" => format!("query_key_value.{m}.2"),
            "attn1.to_out.0" => format!("dense.{m}.0"),
            _ => panic!("{k}"),
        };
        sat.insert(format!("model.diffusion_model.transformer.layers.{n}.attention.{sat_module}"), t.clone());
    }
    // A SAT LoRA checkpoint also holds the base model.
    sat.insert("model.diffusion_model.transformer.layers.0.attention.dense.original.weight".into(), HostTensor::from_f32(vec![2], &[0.0; 2]).unwrap());
    save(&r.join("sat_lora.safetensors"), &sat);

    // An existing directory gets diffusers' file name.
    std::fs::create_dir_all(r.join("lora")).unwrap();
    let out = r.join("lora/pytorch_lora_weights.safetensors");
    let log = ok(vidlower(r, &["convert", "sat-lora", "--input", s(&r.join("sat_lora.safetensors")), "--output", s(&r.join("lora")), "--alpha", "8"]));
    assert!(log.contains("16 LoRA factors for 8 modules (rank 4, alpha 8: scale alpha/r = 2)") && log.contains("skipped 1 base-model tensors"), "{log}");
    let (got, meta) = safetensors_io::load_with_metadata(&out).unwrap();
    assert_bit_equal(&got, &attn, "lora");
    let adapter: serde_json::Value = serde_json::from_str(&meta["lora_adapter_metadata"]).unwrap();
    assert_eq!((adapter["transformer.lora_alpha"].as_i64(), adapter["transformer.r"].as_i64()), (Some(8), Some(4)));
    assert_eq!(adapter["transformer.target_modules"].as_array().unwrap().len(), 8);

    // `--lora` takes it, with the same effect as the diffusers-format original of these factors.
    let reference = r.join("reference.safetensors");
    let meta = BTreeMap::from([("lora_adapter_metadata".to_string(), r#"{"transformer.lora_alpha": 8, "transformer.r": 4}"#.to_string())]);
    safetensors_io::save_with_metadata(&reference, &attn.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>(), &meta).unwrap();
    let model = golden().join("cogvideox-5b/model");
    let io = golden().join("lora/io.safetensors");
    let converted = exec_transformer(r, &model, &io, &["--lora", &format!("{}:0.7", s(&out))]);
    let original = exec_transformer(r, &model, &io, &["--lora", &format!("{}:0.7", s(&reference))]);
    let plain = exec_transformer(r, &model, &io, &[]);
    assert!(converted == original, "the converted LoRA merges differently from its source");
    assert!(converted != plain, "the LoRA changed nothing");

    // Refusals: a LoRA key the map does not know, a file without factors, a half pair.
    let mut bad = sat.clone();
    bad.insert("model.diffusion_model.transformer.layers.0.mlp.dense_h_to_4h.matrix_A.0".into(), HostTensor::from_f32(vec![4, 32], &[0.0; 128]).unwrap());
    save(&r.join("bad.safetensors"), &bad);
    let e = fails(vidlower(r, &["convert", "sat-lora", "--input", s(&r.join("bad.safetensors")), "--output", s(&r.join("x.safetensors"))]));
    assert!(e.contains("1 LoRA keys match no SAT LoRA factor") && e.contains("mlp.dense_h_to_4h.matrix_A.0"), "{e}");
    let base: Tensors = sat.iter().filter(|(k, _)| k.contains("original")).map(|(k, v)| (k.clone(), v.clone())).collect();
    save(&r.join("base.safetensors"), &base);
    let e = fails(vidlower(r, &["convert", "sat-lora", "--input", s(&r.join("base.safetensors")), "--output", s(&r.join("x.safetensors"))]));
    assert!(e.contains("no SAT LoRA factors"), "{e}");
    let mut half = sat.clone();
    half.retain(|k, _| !k.ends_with("layers.1.attention.dense.matrix_B.0"));
    save(&r.join("half.safetensors"), &half);
    let e = fails(vidlower(r, &["convert", "sat-lora", "--input", s(&r.join("half.safetensors")), "--output", s(&r.join("x.safetensors"))]));
    assert!(e.contains("layers.1.attention.dense.matrix_A.0` has no matrix_B partner"), "{e}");
    assert!(!r.join("x.safetensors").exists());
}

#[test]
fn refusals_name_the_file_or_key() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let out = r.join("out");
    let convert = |input: &Path, variant: &str, extra: &[&str]| {
        vidlower(r, &[&["convert", "sat", "--input", s(input), "--output", s(&out), "--variant", variant][..], extra].concat())
    };

    // A torch pickle: the one-line python command to make the safetensors file.
    std::fs::write(r.join("mp_rank_00_model_states.pt"), b"PK\x03\x04 not really a zip").unwrap();
    let e = fails(convert(&r.join("mp_rank_00_model_states.pt"), "5b", &[]));
    assert!(e.contains("mp_rank_00_model_states.pt: a torch pickle") && e.contains("safetensors.torch") && e.contains("mp_rank_00_model_states.safetensors"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // ...also when a directory holds only the pickle.
    let e = fails(convert(r, "5b", &[]));
    assert!(e.contains("a torch pickle"), "{e}");

    // An unknown variant.
    let model = golden().join("cogvideox-5b/model");
    let transformer = load(&model.join("transformer/diffusion_pytorch_model.safetensors"));
    let sat = sat_transformer(&transformer, false);
    save(&r.join("t.safetensors"), &sat);
    save(&r.join("t2.safetensors"), &sat);
    let t = r.join("t.safetensors");
    let e = fails(convert(&t, "3b", &[]));
    assert!(e.contains("unknown CogVideoX variant `3b`") && e.contains("2b, 5b, 1.5-5b"), "{e}");

    // A directory with two candidates, and a path that is not there.
    let e = fails(convert(r, "5b", &[]));
    assert!(e.contains("2 *.safetensors files") && e.contains("name the checkpoint file"), "{e}");
    let e = fails(convert(&r.join("nope.safetensors"), "5b", &[]));
    assert!(e.contains("nope.safetensors: no such file or directory"), "{e}");

    // Keys that match nothing: listed, nothing written; --skip-unknown converts without them.
    let mut extra = sat.clone();
    extra.insert("model.diffusion_model.transformer.layers.0.attention.query_key_value.matrix_A.0".into(), HostTensor::from_f32(vec![2], &[0.0; 2]).unwrap());
    extra.insert("model.diffusion_model.something.else.weight".into(), HostTensor::from_f32(vec![2], &[0.0; 2]).unwrap());
    save(&r.join("extra.safetensors"), &extra);
    let e = fails(convert(&r.join("extra.safetensors"), "5b", &[]));
    assert!(e.contains("extra.safetensors: 2 keys match no CogVideoX SAT weight") && e.contains("`model.diffusion_model.something.else.weight`") && e.contains("convert sat-lora"), "{e}");
    assert!(!out.exists());
    let o = convert(&r.join("extra.safetensors"), "5b", &["--skip-unknown"]);
    let (log, err) = (ok(o.clone()), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(err.contains("skipped 2 unknown keys") && log.contains("skipped 2 unknown"), "{log}\n{err}");
    assert_bit_equal(&load(&out.join("transformer/diffusion_pytorch_model.safetensors")), &transformer, "skip-unknown");

    // A file of nothing but unknown keys, and a checkpoint missing a weight.
    let junk: Tensors = [("foo.weight".to_string(), HostTensor::from_f32(vec![1], &[0.0]).unwrap())].into();
    save(&r.join("junk.safetensors"), &junk);
    let e = fails(convert(&r.join("junk.safetensors"), "5b", &[]));
    assert!(e.contains("1 keys match no CogVideoX SAT weight: `foo.weight`"), "{e}");
    let mut missing = sat.clone();
    missing.remove("model.diffusion_model.mixins.adaln_layer.key_layernorm_list.1.bias");
    save(&r.join("missing.safetensors"), &missing);
    let e = fails(convert(&r.join("missing.safetensors"), "5b", &[]));
    assert!(e.contains("`transformer_blocks.1.attn1.norm_k.bias` [16]"), "{e}");
    // A fused qkv that does not split in three.
    let mut odd = sat.clone();
    odd.insert("model.diffusion_model.transformer.layers.0.attention.query_key_value.bias".into(), HostTensor::from_f32(vec![95], &[0.0; 95]).unwrap());
    save(&r.join("odd.safetensors"), &odd);
    let e = fails(convert(&r.join("odd.safetensors"), "5b", &[]));
    assert!(e.contains("query_key_value.bias` is [95]; its first dimension must split into 3 equal parts"), "{e}");
}
