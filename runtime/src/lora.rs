//! LoRA adapters (`--lora FILE_OR_DIR[:SCALE]`) merged into a component's weights as they are
//! uploaded: `W + scale * (alpha / r) * B @ A` in f32, then cast to the compute dtype, as diffusers'
//! `load_lora_weights` + `fuse_lora` give. The graph and the executable do not change (the cache
//! still hits); only the uploaded values do.
//!
//! Every file is read, and every key checked against the weights, before anything is uploaded: a key
//! that targets no weight, or factors whose shapes do not fit it, is refused naming the key and the
//! expected shape, so a LoRA is merged whole or not at all.
//!
//! Key styles read (the ones diffusers' Wan / CogVideoX / HunyuanVideo-1.5 loaders take):
//! - diffusers / PEFT: `transformer.<module>.lora_A.weight` / `lora_B.weight` (a bare `<module>.` or
//!   PEFT's `base_model.model.<module>.` also), diffusers' older `lora.down.weight` / `lora.up.weight`
//!   and kohya's `lora_down.weight` / `lora_up.weight`;
//! - Wan's original module names, `diffusion_model.blocks.N.self_attn.q...` (what diffusers'
//!   `_convert_non_diffusers_wan_lora_to_diffusers` maps);
//! - alpha: a `<module>.alpha` key, else diffusers' `lora_adapter_metadata` header or a PEFT
//!   `adapter_config.json` (`lora_alpha`, `alpha_pattern`, `use_rslora`), else alpha = r (scale 1).
//!   (diffusers reads `.alpha` keys only in the converted styles; vidlower honours them in every style.)

use crate::tensor::HostTensor;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoraError {
    #[error("--lora `{spec}`: {message}")]
    Spec { spec: String, message: String },
    #[error("--lora {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("--lora {}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("--lora {}: key `{key}`: {message}", path.display())]
    Key { path: PathBuf, key: String, message: String },
    #[error("--lora {}: key `{key}` targets `{weight}`, which the {component} has no weight named{hint}; nothing was merged", path.display())]
    UnknownWeight { path: PathBuf, key: String, weight: String, component: String, hint: String },
    /// `target`: the weight and its shape, "`blocks.0.attn1.to_q.weight` [24, 24]".
    #[error("--lora {}: key `{key}` is {found:?}, expected {expected:?} to fit {target}; nothing was merged", path.display())]
    Shape { path: PathBuf, key: String, target: String, expected: Vec<i64>, found: Vec<i64> },
}

/// One `--lora` value: a file (or a directory holding one) and how strongly to apply it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub scale: f64,
}

impl FromStr for LoraSpec {
    type Err = String;

    /// `FILE_OR_DIR` or `FILE_OR_DIR:SCALE` (a path that itself ends in `:number` and exists is
    /// taken whole).
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("expected FILE_OR_DIR[:SCALE]".into());
        }
        if let Some((path, scale)) = s.rsplit_once(':') {
            if let (Ok(scale), false) = (scale.parse::<f64>(), Path::new(s).exists()) {
                if !scale.is_finite() {
                    return Err(format!("scale `{scale}` is not a finite number"));
                }
                return Ok(LoraSpec { path: path.into(), scale });
            }
        }
        Ok(LoraSpec { path: s.into(), scale: 1.0 })
    }
}

/// The two factors of one adapted weight and its `alpha / r` (or `alpha / sqrt(r)`, rsLoRA).
struct Factors {
    /// The weight's name in the checkpoint (`blocks.0.attn1.to_q.weight`).
    weight: String,
    /// The file's key of A, for errors.
    down_key: String,
    up_key: String,
    /// A: [r, in]; B: [out, r].
    down: (Vec<i64>, Vec<f32>),
    up: (Vec<i64>, Vec<f32>),
    factor: f64,
}

/// One LoRA file, parsed.
pub struct LoraFile {
    pub path: PathBuf,
    pub scale: f64,
    /// SHA-256 of the file (a checkpoint resumed under another LoRA is refused).
    pub sha256: String,
    factors: Vec<Factors>,
}

impl LoraFile {
    /// The weights it adapts.
    pub fn weights(&self) -> impl Iterator<Item = &str> {
        self.factors.iter().map(|f| f.weight.as_str())
    }

    /// "style.safetensors x0.7 (rank 4, alpha/r 2)".
    fn label(&self) -> String {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.path.display().to_string());
        let mut ranks: Vec<i64> = self.factors.iter().map(|f| f.down.0[0]).collect();
        ranks.sort_unstable();
        ranks.dedup();
        let mut factors: Vec<String> = self.factors.iter().map(|f| format!("{}", f.factor)).collect();
        factors.sort();
        factors.dedup();
        let ranks = ranks.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("/");
        format!("{name} x{} (rank {ranks}, alpha/r {})", self.scale, factors.join("/"))
    }
}

/// The LoRAs of one run, checked against a component's weights.
pub struct LoraSet {
    files: Vec<LoraFile>,
    /// Weight name -> (file, factor) indices adapting it.
    by_weight: BTreeMap<String, Vec<(usize, usize)>>,
}

impl LoraSet {
    /// Reads every spec's file; nothing is checked against the weights yet.
    pub fn read(specs: &[LoraSpec]) -> Result<LoraSet, LoraError> {
        let files = specs.iter().map(read_file).collect::<Result<Vec<_>, _>>()?;
        let mut by_weight: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            for (j, x) in f.factors.iter().enumerate() {
                by_weight.entry(x.weight.clone()).or_default().push((i, j));
            }
        }
        Ok(LoraSet { files, by_weight })
    }

    pub fn files(&self) -> &[LoraFile] {
        &self.files
    }

    /// Checks every factor against `shape_of` (a weight's stored shape, `None` when there is no
    /// such weight): A must be [r, in] and B [out, r] for a weight [out, in].
    pub fn check(&self, component: &str, shape_of: &dyn Fn(&str) -> Option<Vec<i64>>) -> Result<(), LoraError> {
        for f in &self.files {
            for x in &f.factors {
                let Some(shape) = shape_of(&x.weight) else {
                    let module = x.weight.trim_end_matches(".weight");
                    let hint = if shape_of(&format!("{module}.0.weight")).is_some() {
                        format!(" (did you mean `{module}.0`?)")
                    } else {
                        String::new()
                    };
                    return Err(LoraError::UnknownWeight {
                        path: f.path.clone(),
                        key: x.down_key.clone(),
                        weight: x.weight.clone(),
                        component: component.into(),
                        hint,
                    });
                };
                let shape_err = |key: &str, expected: Vec<i64>, found: &[i64]| LoraError::Shape {
                    path: f.path.clone(),
                    key: key.into(),
                    target: format!("`{}` {shape:?}", x.weight),
                    expected,
                    found: found.to_vec(),
                };
                let [out, inp] = shape[..] else {
                    let expected = vec![x.down.0.first().copied().unwrap_or(1), shape.iter().skip(1).product()];
                    return Err(LoraError::Key {
                        path: f.path.clone(),
                        key: x.down_key.clone(),
                        message: format!(
                            "`{}` is {shape:?}, not a linear [out, in] weight (LoRAs on convolutions are not merged; a factor would be {expected:?})",
                            x.weight
                        ),
                    });
                };
                let r = x.down.0[0];
                if x.down.0 != [r, inp] {
                    return Err(shape_err(&x.down_key, vec![r, inp], &x.down.0));
                }
                if x.up.0 != [out, r] {
                    return Err(shape_err(&x.up_key, vec![out, r], &x.up.0));
                }
            }
        }
        Ok(())
    }

    /// Whether weight `name` is adapted.
    pub fn touches(&self, name: &str) -> bool {
        self.by_weight.contains_key(name)
    }

    /// The weights adapted, by name.
    pub fn weights(&self) -> impl Iterator<Item = &str> {
        self.by_weight.keys().map(|s| s.as_str())
    }

    /// Every LoRA's term for weight `name` ([out, in]), in `--lora` order: `scale * factor * B @ A`
    /// as [`crate::lora_merge`] adds it, for a weight that [`check`](Self::check) accepted.
    pub fn terms(&self, name: &str) -> Vec<crate::lora_merge::MergeTerm<'_>> {
        let Some(list) = self.by_weight.get(name) else { return Vec::new() };
        list.iter()
            .map(|&(i, j)| {
                let (f, x) = (&self.files[i], &self.files[i].factors[j]);
                let rank = x.down.0[0] as usize;
                crate::lora_merge::MergeTerm { up: &x.up.1, down: &x.down.1, rank, coeff: (f.scale * x.factor) as f32 }
            })
            .collect()
    }

    /// "a.safetensors x0.7 (rank 4, alpha/r 2): 20 weights; b.safetensors x1.3 (...): 20 weights".
    pub fn describe(&self) -> String {
        self.files.iter().map(|f| format!("{}: {} weights", f.label(), f.factors.len())).collect::<Vec<_>>().join("; ")
    }

    /// Each LoRA as "file-name xscale sha256", what a run's identity records (the bytes decide,
    /// not where the file lies).
    pub fn identity(&self) -> Vec<String> {
        let name = |p: &Path| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
        self.files.iter().map(|f| format!("{} x{} sha256 {}", name(&f.path), f.scale, &f.sha256[..16])).collect()
    }
}

/// The safetensors file a `--lora` path names, and the adapter config beside it, if any.
fn locate(spec: &LoraSpec) -> Result<(PathBuf, Option<PathBuf>), LoraError> {
    let p = &spec.path;
    let spec_err = |message: String| LoraError::Spec { spec: p.display().to_string(), message };
    if p.is_file() {
        let config = p.parent().map(|d| d.join("adapter_config.json")).filter(|c| c.is_file());
        return Ok((p.clone(), config));
    }
    if !p.is_dir() {
        return Err(spec_err("no such file or directory".into()));
    }
    let config = Some(p.join("adapter_config.json")).filter(|c| c.is_file());
    // diffusers' `save_lora_weights` name, then PEFT's `save_pretrained` name, then a lone file.
    for name in ["pytorch_lora_weights.safetensors", "adapter_model.safetensors"] {
        if p.join(name).is_file() {
            return Ok((p.join(name), config));
        }
    }
    let io = |source| LoraError::Io { path: p.clone(), source };
    let mut found = Vec::new();
    for e in std::fs::read_dir(p).map_err(io)? {
        let e = e.map_err(io)?.path();
        if e.extension().is_some_and(|x| x == "safetensors") {
            found.push(e);
        }
    }
    match found.len() {
        1 => Ok((found.remove(0), config)),
        0 => Err(spec_err("the directory holds no *.safetensors file".into())),
        _ => Err(spec_err(format!(
            "the directory holds {} *.safetensors files and no pytorch_lora_weights.safetensors; name the file",
            found.len()
        ))),
    }
}

/// Which factor a key holds.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Part {
    Down,
    Up,
    Alpha,
}

/// The module (checkpoint name without `.weight`) and part a key holds.
fn parse_key(key: &str) -> Result<(String, Part), String> {
    const PARTS: [(&str, Part); 7] = [
        (".lora_A.weight", Part::Down),
        (".lora_B.weight", Part::Up),
        (".lora_down.weight", Part::Down),
        (".lora_up.weight", Part::Up),
        (".lora.down.weight", Part::Down),
        (".lora.up.weight", Part::Up),
        (".alpha", Part::Alpha),
    ];
    let Some((module, part)) = PARTS.iter().find_map(|(suffix, part)| key.strip_suffix(suffix).map(|m| (m, *part))) else {
        let unsupported = [".lora_B.bias", ".diff_b", ".diff", "dora_scale", "lora_magnitude_vector", ".lokr_"];
        return Err(match unsupported.iter().find(|u| key.contains(*u)) {
            Some(u) => format!("`{u}` (bias, full-weight diff, DoRA or LoKr) keys are not supported; only LoRA A/B factors and alphas"),
            None => "not a LoRA key (expected <module>.lora_A.weight / lora_B.weight, lora_down / lora_up, lora.down / lora.up, or .alpha)".into(),
        });
    };
    if let Some(rest) = module.strip_prefix("diffusion_model.") {
        return Ok((wan_original_module(rest)?, part));
    }
    let module = module.strip_prefix("base_model.model.").unwrap_or(module);
    if let Some(rest) = module.strip_prefix("transformer.") {
        return Ok((rest.to_string(), part));
    }
    for other in ["text_encoder.", "text_encoder_2.", "transformer_2.", "unet.", "vae.", "lora_unet_", "lora_te"] {
        if module.starts_with(other) {
            return Err(format!("this is a LoRA for `{}`; vidlower merges LoRAs into the transformer only", other.trim_end_matches('.')));
        }
    }
    Ok((module.to_string(), part))
}

/// Wan's original module names as diffusers' WanTransformer3DModel names them (the map of
/// diffusers' `_convert_non_diffusers_wan_lora_to_diffusers`).
fn wan_original_module(m: &str) -> Result<String, String> {
    let unknown = || format!("`diffusion_model.{m}` is not a Wan module vidlower maps (blocks.N.self_attn|cross_attn.q|k|v|o|k_img|v_img, blocks.N.ffn.0|2, text_embedding.0|2, time_embedding.0|2, time_projection.1, head.head, img_emb.proj.1|3)");
    if let Some(rest) = m.strip_prefix("blocks.") {
        let (n, rest) = rest.split_once('.').ok_or_else(unknown)?;
        n.parse::<usize>().map_err(|_| unknown())?;
        let mapped = match rest {
            "ffn.0" => "ffn.net.0.proj".to_string(),
            "ffn.2" => "ffn.net.2".to_string(),
            _ => {
                let (attn, proj) = rest.split_once('.').ok_or_else(unknown)?;
                let attn = match attn {
                    "self_attn" => "attn1",
                    "cross_attn" => "attn2",
                    _ => return Err(unknown()),
                };
                let proj = match (attn, proj) {
                    (_, "q") => "to_q",
                    (_, "k") => "to_k",
                    (_, "v") => "to_v",
                    (_, "o") => "to_out.0",
                    ("attn2", "k_img") => "add_k_proj",
                    ("attn2", "v_img") => "add_v_proj",
                    _ => return Err(unknown()),
                };
                format!("{attn}.{proj}")
            }
        };
        return Ok(format!("blocks.{n}.{mapped}"));
    }
    let mapped = match m {
        "text_embedding.0" => "condition_embedder.text_embedder.linear_1",
        "text_embedding.2" => "condition_embedder.text_embedder.linear_2",
        "time_embedding.0" => "condition_embedder.time_embedder.linear_1",
        "time_embedding.2" => "condition_embedder.time_embedder.linear_2",
        "time_projection.1" => "condition_embedder.time_proj",
        "head.head" => "proj_out",
        "img_emb.proj.1" => "condition_embedder.image_embedder.ff.net.0.proj",
        "img_emb.proj.3" => "condition_embedder.image_embedder.ff.net.2",
        _ => return Err(unknown()),
    };
    Ok(mapped.into())
}

/// Alpha settings from diffusers' `lora_adapter_metadata` header or PEFT's adapter_config.json.
#[derive(Default)]
struct AdapterConfig {
    lora_alpha: Option<f64>,
    alpha_pattern: Vec<(String, f64)>,
    use_rslora: bool,
}

impl AdapterConfig {
    /// From a JSON object whose keys may carry a `transformer.` prefix (diffusers' metadata).
    fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("the adapter config is not a JSON object")?;
        let get = |k: &str| obj.get(&format!("transformer.{k}")).or_else(|| obj.get(k));
        if get("use_dora").and_then(|d| d.as_bool()) == Some(true) {
            return Err("a DoRA adapter (use_dora) is not supported".into());
        }
        let mut alpha_pattern = Vec::new();
        if let Some(p) = get("alpha_pattern").and_then(|p| p.as_object()) {
            for (k, v) in p {
                let a = v.as_f64().ok_or_else(|| format!("alpha_pattern `{k}`: not a number"))?;
                alpha_pattern.push((k.clone(), a));
            }
        }
        Ok(AdapterConfig {
            lora_alpha: get("lora_alpha").and_then(|a| a.as_f64()),
            alpha_pattern,
            use_rslora: get("use_rslora").and_then(|b| b.as_bool()).unwrap_or(false),
        })
    }

    /// PEFT's pattern lookup (`(.*\.)?(pattern)$` on the module name; diffusers writes `^name` for an
    /// exact name), for literal patterns.
    fn alpha_of(&self, module: &str) -> Option<f64> {
        let hit = |p: &str| match p.strip_prefix('^') {
            Some(exact) => module == exact,
            None => module == p || module.ends_with(&format!(".{p}")),
        };
        self.alpha_pattern.iter().find(|(p, _)| hit(p)).map(|(_, a)| *a).or(self.lora_alpha)
    }
}

/// Reads and parses one LoRA.
fn read_file(spec: &LoraSpec) -> Result<LoraFile, LoraError> {
    let (path, config_path) = locate(spec)?;
    let bytes = std::fs::read(&path).map_err(|source| LoraError::Io { path: path.clone(), source })?;
    let format = |message: String| LoraError::Format { path: path.clone(), message };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| format(format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
    let header_config = meta.metadata().as_ref().and_then(|m| m.get("lora_adapter_metadata")).cloned();
    let config = match (header_config, config_path) {
        (Some(text), _) => {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format(format!("lora_adapter_metadata: {e}")))?;
            AdapterConfig::from_json(&v).map_err(|m| format(format!("lora_adapter_metadata: {m}")))?
        }
        (None, Some(c)) => {
            let text = std::fs::read_to_string(&c).map_err(|source| LoraError::Io { path: c.clone(), source })?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| LoraError::Format { path: c.clone(), message: e.to_string() })?;
            AdapterConfig::from_json(&v).map_err(|message| LoraError::Format { path: c.clone(), message })?
        }
        (None, None) => AdapterConfig::default(),
    };

    // module -> (down, up, alpha), each with its key.
    type Slot = Option<(String, Vec<i64>, Vec<f32>)>;
    let mut modules: BTreeMap<String, (Slot, Slot, Option<f64>)> = BTreeMap::new();
    let mut names: Vec<String> = file.names().into_iter().cloned().collect();
    names.sort();
    for key in names {
        let key_err = |message: String| LoraError::Key { path: path.clone(), key: key.clone(), message };
        let (module, part) = parse_key(&key).map_err(key_err)?;
        let view = file.tensor(&key).map_err(|e| key_err(e.to_string()))?;
        let dtype = match view.dtype() {
            Dtype::F32 => vidlower_ir::DType::F32,
            Dtype::BF16 => vidlower_ir::DType::BF16,
            Dtype::F16 => vidlower_ir::DType::F16,
            Dtype::F64 => vidlower_ir::DType::F64,
            d => return Err(key_err(format!("dtype {d:?} (expected F32, BF16, F16 or F64)"))),
        };
        let dims: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = HostTensor::new(dtype, dims.clone(), view.data().to_vec()).map_err(|e| key_err(e.to_string()))?;
        let slot = modules.entry(module).or_default();
        match part {
            Part::Alpha => {
                let v = t.to_f64_vec();
                if v.len() != 1 {
                    return Err(key_err(format!("an alpha is one number, this is {dims:?}")));
                }
                slot.2 = Some(v[0]);
            }
            Part::Down | Part::Up => {
                if dims.len() != 2 {
                    return Err(key_err(format!("a LoRA factor is 2-D ([r, in] or [out, r]), this is {dims:?}")));
                }
                let s = if part == Part::Down { &mut slot.0 } else { &mut slot.1 };
                if s.is_some() {
                    return Err(key_err("a second factor for the same module (two key spellings in one file)".into()));
                }
                *s = Some((key.clone(), dims, t.to_f32_vec()));
            }
        }
    }
    let mut factors = Vec::new();
    for (module, (down, up, alpha)) in modules {
        let (down, up) = match (down, up) {
            (Some(d), Some(u)) => (d, u),
            (Some((k, ..)), None) | (None, Some((k, ..))) => {
                return Err(LoraError::Key { path: path.clone(), key: k, message: format!("`{module}` has only one of its two factors (A/down and B/up)") })
            }
            (None, None) => {
                return Err(LoraError::Key { path: path.clone(), key: format!("{module}.alpha"), message: "an alpha without factors".into() })
            }
        };
        let r = down.1[0];
        if r < 1 {
            return Err(LoraError::Key { path: path.clone(), key: down.0, message: "rank 0".into() });
        }
        let alpha = alpha.or_else(|| config.alpha_of(&module)).unwrap_or(r as f64);
        let factor = if config.use_rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 };
        factors.push(Factors {
            weight: format!("{module}.weight"),
            down_key: down.0,
            up_key: up.0,
            down: (down.1, down.2),
            up: (up.1, up.2),
            factor,
        });
    }
    if factors.is_empty() {
        return Err(format(format!("no LoRA factors in {} tensors", file.len())));
    }
    let sha256 = crate::stages::checkpoint::sha256(&bytes);
    Ok(LoraFile { path, scale: spec.scale, sha256, factors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_scale() {
        assert_eq!("a.safetensors:0.7".parse::<LoraSpec>().unwrap(), LoraSpec { path: "a.safetensors".into(), scale: 0.7 });
        assert_eq!("dir/x".parse::<LoraSpec>().unwrap(), LoraSpec { path: "dir/x".into(), scale: 1.0 });
        assert_eq!("C:dir".parse::<LoraSpec>().unwrap().path, PathBuf::from("C:dir"));
        assert!("a:inf".parse::<LoraSpec>().is_err());
    }

    #[test]
    fn keys_map_to_modules() {
        let k = |s: &str| parse_key(s).unwrap();
        assert_eq!(k("transformer.blocks.0.attn1.to_q.lora_A.weight"), ("blocks.0.attn1.to_q".into(), Part::Down));
        assert_eq!(k("blocks.0.ff.net.2.lora.up.weight"), ("blocks.0.ff.net.2".into(), Part::Up));
        assert_eq!(k("diffusion_model.blocks.3.self_attn.o.lora_up.weight"), ("blocks.3.attn1.to_out.0".into(), Part::Up));
        assert_eq!(k("diffusion_model.blocks.3.cross_attn.k_img.alpha"), ("blocks.3.attn2.add_k_proj".into(), Part::Alpha));
        assert_eq!(k("diffusion_model.blocks.1.ffn.0.lora_down.weight"), ("blocks.1.ffn.net.0.proj".into(), Part::Down));
        assert_eq!(k("diffusion_model.head.head.lora_A.weight"), ("proj_out".into(), Part::Down));
        for bad in ["transformer.blocks.0.attn1.to_q.lora_B.bias", "text_encoder.x.lora_A.weight", "diffusion_model.blocks.0.norm3.lora_A.weight", "foo"] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }
}
