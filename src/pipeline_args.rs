//! Flags that shape the standard pass pipeline (see `vidlower_passes::pipeline_options`): how
//! attention is lowered, base-2 softmax, K smoothing, block sizes, a sliding window, and the
//! device mesh with its sharding rules. Shared by
//! `compile`, `dump-ir`, `exec`, `bench` and the stage commands, so an executable compiled ahead of
//! time is the one a stage asks the cache for.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use vidlower_backends::ShardingFormat;
use vidlower_ir::Mesh;
use vidlower_passes::pipeline_options::{AttentionLowering, Exp2Choice, PipelineOptions, ShardingOptions};
use vidlower_passes::sharding::{AttentionSharding, ShardingRules};
use vidlower_passes::Target;

/// The pipeline flags. Unset values take [`PipelineOptions::default`].
#[derive(Args, Clone, Debug, Default)]
pub struct PipelineArgs {
    /// Attention lowering: auto (per op and per target: on CUDA cuDNN fused attention where it
    /// applies; on CPU vidlower's fused kernel for attention without window and without a mask
    /// or with a key mask, unsharded;
    /// otherwise blockwise for more than 512 keys on CPU (20000 elsewhere), dense below; `compile --explain`
    /// shows each op's choice), dense, blockwise, or cudnn (cuDNN fused attention on CUDA where
    /// it applies, dense elsewhere).
    #[arg(long, value_name = "KIND", value_parser = parse_lowering)]
    pub attention: Option<AttentionLowering>,
    /// Softmax in base 2 with scale*log2(e) folded into Q: auto (default: inside blockwise
    /// attention; dense attention keeps the natural base, faster on CPU in bf16), on, or off.
    #[arg(long, alias = "use_exp2", value_name = "auto|on|off", value_parser = parse_exp2)]
    pub exp2_softmax: Option<Exp2Choice>,
    /// K minus its mean over the sequence before attention (exact): on (default) or off.
    #[arg(long, alias = "use_k_smooth", value_name = "on|off", value_parser = parse_switch)]
    pub k_smooth: Option<bool>,
    /// Blockwise attention: query rows per block, a cap (default 3328).
    #[arg(long, value_name = "N")]
    pub bq: Option<i64>,
    /// Blockwise attention: keys per block, a cap (default 2816).
    #[arg(long, value_name = "N")]
    pub bkv: Option<i64>,
    /// Blockwise attention: keys per score slice inside a key block (default 256).
    #[arg(long, alias = "bkv_compute", value_name = "N")]
    pub bkv_compute: Option<i64>,
    /// Sliding-window attention: LEFT,RIGHT keys around each query (-1 = unbounded side), in
    /// self-attention and among the video tokens of a joint text+video attention (CogVideoX,
    /// HunyuanVideo-1.5: the text tokens still see and are seen by every token).
    #[arg(long, alias = "window_size", value_name = "LEFT,RIGHT", value_parser = parse_window)]
    pub window_size: Option<(i64, i64)>,
    /// Lay the graph out over a device mesh of named axes (dp, fsdp, tp, sp), e.g. dp=2,tp=4;
    /// compiles with num_partitions = the mesh's device count.
    #[arg(long, value_name = "AXIS=N,...", value_parser = parse_mesh)]
    pub mesh: Option<Mesh>,
    /// Weight sharding rules (JSON: [{"pattern": REGEX, "dims": ["tp", null]}], first match
    /// wins) instead of the built-in Wan rules.
    #[arg(long, value_name = "FILE", requires = "mesh")]
    pub rules: Option<PathBuf>,
    /// How attention is split over the mesh: auto (heads on tp when they divide, else query rows;
    /// query rows on sp), context (heads), sequence (query rows), none.
    #[arg(long, value_name = "KIND", value_parser = parse_attention_sharding, requires = "mesh")]
    pub attention_sharding: Option<AttentionSharding>,
    /// Sharding annotations: shardy (default) or gspmd (mhlo.sharding, for plugins without Shardy).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format, requires = "mesh")]
    pub sharding_format: Option<ShardingFormat>,
}

impl PipelineArgs {
    /// The options the flags give for `target` (the plugin's platform), checked.
    pub fn options(&self, target: Target) -> Result<PipelineOptions> {
        let mut o = PipelineOptions { target, ..Default::default() };
        if let Some(a) = self.attention {
            o.attention = a;
        }
        o.exp2_softmax = self.exp2_softmax.unwrap_or(o.exp2_softmax);
        o.k_smooth = self.k_smooth.unwrap_or(o.k_smooth);
        for (flag, value, slot) in [
            ("--bq", self.bq, &mut o.blocks.bq),
            ("--bkv", self.bkv, &mut o.blocks.bkv),
            ("--bkv-compute", self.bkv_compute, &mut o.blocks.bkv_compute),
        ] {
            if let Some(v) = value {
                if v < 1 {
                    bail!("{flag} must be at least 1 (got {v})");
                }
                *slot = v;
            }
        }
        let blocks_given = self.bq.is_some() || self.bkv.is_some() || self.bkv_compute.is_some();
        if blocks_given && matches!(o.attention, AttentionLowering::Dense | AttentionLowering::Cudnn) {
            bail!("--bq, --bkv and --bkv-compute size blockwise attention; they do not apply to --attention {}", o.attention);
        }
        o.window = self.window_size;
        if let Some(mesh) = &self.mesh {
            let rules = match &self.rules {
                Some(path) => {
                    let rules = ShardingRules::from_file(path)?;
                    // An explicit file is written for a mesh: an axis this one lacks is a typo or
                    // the wrong file, not something to drop quietly as the built-in rules do.
                    for rule in &rules.rules {
                        if let Some(axis) = rule.dims.iter().flatten().find(|a| mesh.axis_index(a).is_none()) {
                            let have: Vec<_> = mesh.axes.iter().map(|a| a.name.as_str()).collect();
                            bail!(
                                "--rules {}: rule `{}` names mesh axis `{axis}`, which --mesh does not have (its axes: {})",
                                path.display(),
                                rule.text,
                                have.join(", ")
                            );
                        }
                    }
                    Some(rules)
                }
                None => None,
            };
            let attention = self.attention_sharding.unwrap_or_default();
            let gspmd = self.sharding_format == Some(ShardingFormat::Gspmd);
            o.sharding = Some(ShardingOptions { mesh: mesh.clone(), rules, attention, gspmd });
        }
        Ok(o)
    }

    /// Devices the session needs: the mesh's, else one.
    pub fn devices(&self) -> u32 {
        self.mesh.as_ref().map_or(1, Mesh::device_count)
    }

    /// How shardings are written.
    pub fn format(&self) -> ShardingFormat {
        self.sharding_format.unwrap_or_default()
    }

    /// The flags that were given, for commands that refuse them next to an explicit `--passes`.
    pub fn given(&self) -> Option<&'static str> {
        [
            ("--attention", self.attention.is_some()),
            ("--exp2-softmax", self.exp2_softmax.is_some()),
            ("--k-smooth", self.k_smooth.is_some()),
            ("--bq", self.bq.is_some()),
            ("--bkv", self.bkv.is_some()),
            ("--bkv-compute", self.bkv_compute.is_some()),
            ("--window-size", self.window_size.is_some()),
            ("--mesh", self.mesh.is_some()),
        ]
        .into_iter()
        .find(|(_, g)| *g)
        .map(|(f, _)| f)
    }
}

fn parse_lowering(s: &str) -> Result<AttentionLowering, String> {
    s.parse()
}

fn parse_mesh(s: &str) -> Result<Mesh, String> {
    Mesh::parse(s).map_err(|e| e.to_string())
}

fn parse_attention_sharding(s: &str) -> Result<AttentionSharding, String> {
    match s {
        "auto" => Ok(AttentionSharding::Auto),
        "context" => Ok(AttentionSharding::Context),
        "sequence" => Ok(AttentionSharding::Sequence),
        "none" => Ok(AttentionSharding::None),
        _ => Err(format!("expected auto, context, sequence or none, got `{s}`")),
    }
}

fn parse_format(s: &str) -> Result<ShardingFormat, String> {
    match s {
        "shardy" | "sdy" => Ok(ShardingFormat::Shardy),
        "gspmd" => Ok(ShardingFormat::Gspmd),
        _ => Err(format!("expected shardy or gspmd, got `{s}`")),
    }
}

fn parse_exp2(s: &str) -> Result<Exp2Choice, String> {
    s.parse()
}

fn parse_switch(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got `{s}`")),
    }
}

fn parse_window(s: &str) -> Result<(i64, i64), String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let side = |p: &str| p.parse::<i64>().map_err(|_| format!("expected LEFT,RIGHT as two integers, got `{s}`"));
    match parts[..] {
        [l, r] => Ok((side(l)?, side(r)?)),
        // One number: the seeds' symmetric window.
        [w] => side(w).map(|w| (w, w)),
        _ => Err(format!("expected LEFT,RIGHT as two integers, got `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_are_checked() {
        assert_eq!(parse_window("128, 64"), Ok((128, 64)));
        assert_eq!(parse_window("256"), Ok((256, 256)));
        assert!(parse_window("1,2,3").unwrap_err().contains("LEFT,RIGHT"));
        assert_eq!(parse_switch("off"), Ok(false));
        assert!(parse_switch("maybe").is_err());
        let args = PipelineArgs { attention: Some(AttentionLowering::Dense), bkv: Some(512), ..Default::default() };
        assert!(args.options(Target::Cpu).unwrap_err().to_string().contains("do not apply to --attention dense"));
        let zero = PipelineArgs { bq: Some(0), ..Default::default() };
        assert_eq!(zero.options(Target::Cpu).unwrap_err().to_string(), "--bq must be at least 1 (got 0)");
        let some = PipelineArgs { bkv_compute: Some(128), window_size: Some((8, 8)), ..Default::default() };
        let o = some.options(Target::Cpu).unwrap();
        assert_eq!((o.blocks.bkv_compute, o.window, o.exp2_softmax), (128, Some((8, 8)), Exp2Choice::Auto));
    }
}
