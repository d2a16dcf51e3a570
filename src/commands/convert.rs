//! `vidlower convert`: checkpoints in other layouts to the diffusers layout vidlower (and
//! diffusers) load. `sat`: a CogVideoX SAT transformer (and VAE) to `transformer/` and `vae/`
//! component folders; `sat-lora`: a SAT LoRA to a diffusers / PEFT LoRA file for `--lora`.
//! The key maps are the family's (`frontends/src/cogvideox/sat_keys.rs`); this file reads,
//! reports and writes (atomically: a temp name, then a rename).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use vidlower_frontends::cogvideox::sat_convert::{
    convert_lora, finish_transformer, finish_vae, map_transformer, map_vae, Converted, SatError, SatVariant,
};
use vidlower_runtime::atomic_file::write_atomic;
use vidlower_runtime::safetensors_io;
use vidlower_runtime::tensor::HostTensor;

#[derive(Args)]
pub struct ConvertArgs {
    #[command(subcommand)]
    what: ConvertCommand,
}

#[derive(Subcommand)]
enum ConvertCommand {
    /// A CogVideoX SAT checkpoint (safetensors) to diffusers' transformer/ (and vae/) folders.
    Sat(SatArgs),
    /// A CogVideoX SAT LoRA (safetensors) to a diffusers / PEFT LoRA file (`--lora` reads it).
    SatLora(SatLoraArgs),
}

#[derive(Args)]
struct SatArgs {
    /// The SAT transformer state dict as safetensors (keys as SAT names them, with or without the
    /// `module.` / `model.diffusion_model.` prefixes), or a directory holding one.
    #[arg(long, value_name = "DIR_OR_FILE")]
    input: PathBuf,
    /// Where to write transformer/ (and vae/): config.json + diffusion_pytorch_model.safetensors.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    /// Which release the checkpoint is (sets the config the weights do not tell): 2b, 5b or 1.5-5b.
    #[arg(long, value_parser = parse_variant)]
    variant: SatVariant,
    /// The SAT VAE state dict (safetensors) to convert as well.
    #[arg(long, value_name = "FILE")]
    vae: Option<PathBuf>,
    /// A transformer config.json to start from instead of the variant's (a fine-tune's sample
    /// size, say); the sizes the weights give must agree with it.
    #[arg(long, value_name = "FILE")]
    transformer_config: Option<PathBuf>,
    /// A vae config.json to start from instead of the variant's.
    #[arg(long, value_name = "FILE")]
    vae_config: Option<PathBuf>,
    /// Convert without the keys the map does not know (listed) instead of refusing.
    #[arg(long)]
    skip_unknown: bool,
}

#[derive(Args)]
struct SatLoraArgs {
    /// The SAT LoRA checkpoint as safetensors (its `matrix_A` / `matrix_B` keys are read, the base
    /// model's tensors skipped).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// The LoRA file to write (an existing directory gets pytorch_lora_weights.safetensors).
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// The LoRA alpha recorded in the file (scale alpha / r): SAT's LoraMixin trains with 1.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
}

fn parse_variant(s: &str) -> Result<SatVariant, String> {
    s.parse()
}

pub fn run(args: ConvertArgs) -> Result<()> {
    match args.what {
        ConvertCommand::Sat(a) => run_sat(a),
        ConvertCommand::SatLora(a) => run_sat_lora(a),
    }
}

/// The one-line way to turn a torch pickle into the safetensors file vidlower reads.
fn pickle_refusal(path: &Path) -> anyhow::Error {
    let out = path.with_extension("safetensors");
    anyhow::anyhow!(
        "{}: a torch pickle (.pt); vidlower reads SAT checkpoints as safetensors: convert it first with \
         python -c \"import torch, safetensors.torch as s; d = torch.load('{}', map_location='cpu', weights_only=False); \
         d = d.get('module', d.get('state_dict', d)); s.save_file({{k: v.clone() for k, v in d.items() if isinstance(v, torch.Tensor)}}, '{}')\"",
        path.display(),
        path.display(),
        out.display()
    )
}

/// A torch checkpoint: named so, or a zip archive (`PK\x03\x04`, torch >= 1.6) or a raw pickle
/// (`0x80`) rather than a safetensors file (an 8-byte header length, then `{`).
fn is_pickle(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    if matches!(ext, "pt" | "pth" | "ckpt" | "bin") {
        return true;
    }
    let mut head = [0u8; 9];
    if std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_err() || head[8] == b'{' {
        return false;
    }
    head[..4] == *b"PK\x03\x04" || head[0] == 0x80
}

/// The safetensors file `input` names: the file, or the one `*.safetensors` in the directory
/// (or in its subdirectories, as SAT's `<save>/<iteration>/` layout nests it).
fn sat_file(input: &Path) -> Result<PathBuf> {
    if input.is_file() {
        if is_pickle(input) {
            return Err(pickle_refusal(input));
        }
        return Ok(input.to_path_buf());
    }
    if !input.is_dir() {
        bail!("{}: no such file or directory", input.display());
    }
    let (mut found, mut pickles) = (Vec::new(), Vec::new());
    let mut dirs = vec![input.to_path_buf()];
    for depth in 0..2 {
        let mut next = Vec::new();
        for d in dirs {
            for e in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
                let p = e.with_context(|| d.display().to_string())?.path();
                match p.extension().and_then(|x| x.to_str()) {
                    Some("safetensors") => found.push(p),
                    Some("pt" | "pth" | "ckpt") => pickles.push(p),
                    _ if p.is_dir() && depth == 0 => next.push(p),
                    _ => {}
                }
            }
        }
        dirs = next;
    }
    found.sort();
    match (found.len(), pickles.first()) {
        (1, _) => Ok(found.remove(0)),
        (0, Some(pt)) => Err(pickle_refusal(pt)),
        (0, None) => bail!("{}: no *.safetensors file in the directory", input.display()),
        (n, _) => bail!(
            "{}: {n} *.safetensors files ({}); name the checkpoint file",
            input.display(),
            found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not valid JSON: {e}", path.display()))
}

fn progress(len: usize, what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(len as u64), vidlower_runtime::pjrt::plugin_log::progress_target());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors {elapsed}").expect("valid template").progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}

/// "a, b, c (and 4 more)".
fn list(keys: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = keys.iter().take(SHOWN).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    if keys.len() > SHOWN {
        s.push_str(&format!(" (and {} more)", keys.len() - SHOWN));
    }
    s
}

/// Refuses (or, with `skip`, warns about) the keys the map does not know.
fn unknown_keys(file: &Path, c: &Converted, skip: bool) -> Result<()> {
    if c.unknown.is_empty() {
        return Ok(());
    }
    let lora = c.unknown.iter().any(|k| k.contains("matrix_A") || k.contains("matrix_B"));
    let hint = if lora { "; its LoRA factors (matrix_A/B) convert with `vidlower convert sat-lora`" } else { "" };
    if !skip {
        bail!(
            "{}: {} keys match no CogVideoX SAT weight: {}; nothing was written (--skip-unknown converts without them){hint}",
            file.display(),
            c.unknown.len(),
            list(&c.unknown)
        );
    }
    vidlower_runtime::user_eprintln!("warning: {}: skipped {} unknown keys: {}{hint}", file.display(), c.unknown.len(), list(&c.unknown));
    Ok(())
}

/// Loads `file`, maps its keys with `map` (under a progress bar), refuses unknown keys, then
/// completes the component with `finish`. Errors are one line naming the file.
fn convert_file(
    file: &Path,
    what: &'static str,
    skip_unknown: bool,
    map: impl FnOnce(BTreeMap<String, HostTensor>, &mut dyn FnMut()) -> Result<Converted, SatError>,
    finish: impl FnOnce(Converted) -> Result<Converted, SatError>,
) -> Result<Converted> {
    let in_file = |e: SatError| anyhow::anyhow!("{}: {e}", file.display());
    let spinner = super::spinner("reading");
    let sat = safetensors_io::load(file)?;
    spinner.finish_and_clear();
    let bar = progress(sat.len(), what);
    let mapped = map(sat, &mut || bar.inc(1));
    bar.finish_and_clear();
    let mapped = mapped.map_err(in_file)?;
    unknown_keys(file, &mapped, skip_unknown)?;
    finish(mapped).map_err(in_file)
}

/// `DIR/config.json` and `DIR/diffusion_pytorch_model.safetensors`, each written atomically.
fn write_component(dir: &Path, c: Converted) -> Result<(PathBuf, usize)> {
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    let n = c.tensors.len();
    let tensors: Vec<(String, HostTensor)> = c.tensors.into_iter().collect();
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    safetensors_io::save_with_metadata(&weights, &tensors, &meta)?;
    let config = dir.join("config.json");
    let text = serde_json::to_string_pretty(&c.config)? + "\n";
    write_atomic(&config, |w| w.write_all(text.as_bytes())).map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    Ok((weights, n))
}

fn report(component: &str, c: &Converted) {
    println!("{component}: {} SAT tensors converted to {} diffusers tensors", c.converted, c.tensors.len());
    let mut by_reason: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (k, why) in &c.dropped {
        by_reason.entry(why).or_default().push(k.clone());
    }
    for (why, keys) in by_reason {
        println!("  dropped {} ({why}): {}", keys.len(), list(&keys));
    }
    if !c.unknown.is_empty() {
        println!("  skipped {} unknown: {}", c.unknown.len(), list(&c.unknown));
    }
}

fn run_sat(a: SatArgs) -> Result<()> {
    let file = sat_file(&a.input)?;
    let vae_file = a.vae.as_deref().map(sat_file).transpose()?;
    let t_config = a.transformer_config.as_deref().map(read_json).transpose()?;
    let v_config = a.vae_config.as_deref().map(read_json).transpose()?;
    // Both components converted and checked before anything is written.
    let variant = a.variant;
    let transformer =
        convert_file(&file, "transformer", a.skip_unknown, map_transformer, |c| finish_transformer(c, variant, t_config))?;
    let vae = match &vae_file {
        Some(f) => Some(convert_file(f, "vae", a.skip_unknown, map_vae, |c| finish_vae(c, variant, v_config))?),
        None => None,
    };
    println!("CogVideoX {} from {}", variant.name(), file.display());
    report("transformer", &transformer);
    let (path, _) = write_component(&a.output.join("transformer"), transformer)?;
    println!("  wrote {}", path.display());
    if let (Some(vae), Some(f)) = (vae, &vae_file) {
        println!("vae from {}", f.display());
        report("vae", &vae);
        let (path, _) = write_component(&a.output.join("vae"), vae)?;
        println!("  wrote {}", path.display());
    }
    println!(
        "the text encoder, tokenizer and scheduler are not part of a SAT checkpoint: take them from the diffusers \
         CogVideoX{} repository",
        match variant {
            SatVariant::V2b => "-2b",
            SatVariant::V5b => "-5b",
            SatVariant::V15_5b => "1.5-5B",
        }
    );
    Ok(())
}

fn run_sat_lora(a: SatLoraArgs) -> Result<()> {
    if !a.alpha.is_finite() || a.alpha <= 0.0 {
        bail!("--alpha {}: must be a positive number", a.alpha);
    }
    let file = sat_file(&a.input)?;
    if !file.is_file() {
        bail!("{}: not a file", file.display());
    }
    let sat = safetensors_io::load(&file)?;
    let lora = convert_lora(sat).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if !lora.unknown.is_empty() {
        bail!(
            "{}: {} LoRA keys match no SAT LoRA factor (attention.query_key_value.matrix_A|B.0-2, attention.dense.matrix_A|B.0): {}; nothing was written",
            file.display(),
            lora.unknown.len(),
            list(&lora.unknown)
        );
    }
    if lora.tensors.is_empty() {
        bail!("{}: no SAT LoRA factors (`...attention.query_key_value.matrix_A.0` etc.) among its {} tensors", file.display(), lora.base);
    }
    let out = if a.output.is_dir() { a.output.join("pytorch_lora_weights.safetensors") } else { a.output.clone() };
    // diffusers' `lora_adapter_metadata` (what `save_lora_adapter` writes): the LoraConfig that
    // `load_lora_weights` builds the adapter from, so alpha travels with the file.
    let alpha = if a.alpha.fract() == 0.0 { serde_json::json!(a.alpha as i64) } else { serde_json::json!(a.alpha) };
    let adapter = serde_json::json!({
        "transformer.lora_alpha": alpha,
        "transformer.r": lora.rank,
        "transformer.target_modules": lora.modules,
    });
    let meta = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("lora_adapter_metadata".to_string(), serde_json::to_string_pretty(&adapter)?),
    ]);
    let n = lora.tensors.len();
    let tensors: Vec<(String, HostTensor)> = lora.tensors.into_iter().collect();
    safetensors_io::save_with_metadata(&out, &tensors, &meta)?;
    println!(
        "{n} LoRA factors for {} modules (rank {}, alpha {}: scale alpha/r = {}) from {}; skipped {} base-model tensors",
        lora.modules.len(),
        lora.rank,
        a.alpha,
        a.alpha / lora.rank as f64,
        file.display(),
        lora.base
    );
    println!("  wrote {}", out.display());
    Ok(())
}
