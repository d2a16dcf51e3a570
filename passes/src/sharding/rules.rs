//! Weight sharding rules: parameter-name patterns mapped to per-dim mesh axes, in torch/diffusers
//! terms (weights keep diffusers' names and torch layouts, so a linear weight is `[out, in]`).
//! The first pattern that matches a weight's whole name decides its sharding; unmatched weights
//! are replicated.
//!
//! Axes the mesh does not have are dropped, so one rule set serves every mesh (the Wan rules name
//! `tp`; on a `dp=8` mesh they shard nothing). A rule dim that does not divide by its axis is
//! dropped with a note for the built-in rules; for rules from a file it is an error naming the file,
//! the pattern and the weight, because the user asked for that layout explicitly.

use regex::Regex;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vidlower_ir::{Mesh, Sharding};

/// Why a rule set could not be read or applied.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RulesError {
    #[error("sharding rules {file}: cannot read: {message}")]
    Read { file: String, message: String },
    #[error("sharding rules {file}: not a JSON list of {{\"pattern\": ..., \"dims\": [...]}} entries: {message}")]
    Json { file: String, message: String },
    #[error("sharding rules {file}: entry {entry} (pattern `{pattern}`): {message}")]
    Entry { file: String, entry: usize, pattern: String, message: String },
    #[error("sharding rules {file}: {weight}: {message}")]
    Indivisible { file: String, weight: String, message: String },
}

/// Where a rule set came from: decides whether an indivisible dim is an error or a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleSource {
    /// Built into vidlower (best effort on any mesh and model size).
    BuiltIn(&'static str),
    /// A `--rules FILE` (explicit: an impossible layout is an error).
    File(PathBuf),
}

impl RuleSource {
    fn describe(&self) -> String {
        match self {
            RuleSource::BuiltIn(name) => format!("built-in {name}"),
            RuleSource::File(p) => p.display().to_string(),
        }
    }
}

/// One rule: a pattern over the whole weight name and, per weight dim, the mesh axis splitting it
/// (`None` = whole). A weight of lower rank takes the leading entries, so one `weight|bias` rule
/// covers a linear layer: `["tp", null]` splits a column-parallel bias too, `[null, "tp"]` leaves
/// a row-parallel bias whole (it is added after the partial sums are reduced). A weight of higher
/// rank than the rule is left replicated, with a note.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The pattern as written (shown in messages).
    pub text: String,
    /// The pattern anchored to whole names.
    pub pattern: Regex,
    pub dims: Vec<Option<String>>,
}

/// An ordered rule list; the first match wins.
#[derive(Clone, Debug)]
pub struct ShardingRules {
    pub rules: Vec<Rule>,
    pub source: RuleSource,
}

/// A rule's verdict on one weight.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightSharding {
    pub sharding: Sharding,
    /// What was dropped and why (axes the mesh lacks are not mentioned: that is by design).
    pub notes: Vec<String>,
}

/// One entry of a rules file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    pattern: String,
    dims: Vec<Option<String>>,
}

impl ShardingRules {
    /// No rules: every weight replicated.
    pub fn none() -> Self {
        ShardingRules { rules: Vec::new(), source: RuleSource::BuiltIn("none") }
    }

    /// Rules from `(pattern, dims)` pairs; the patterns must match whole names (anchored here).
    pub fn new<'a>(
        source: RuleSource,
        rules: impl IntoIterator<Item = (&'a str, Vec<Option<&'a str>>)>,
    ) -> Result<Self, RulesError> {
        let file = source.describe();
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(entry, (pattern, dims))| {
                let dims = dims.into_iter().map(|d| d.map(str::to_string)).collect();
                Rule::new(pattern, dims).map_err(|message| RulesError::Entry {
                    file: file.clone(),
                    entry,
                    pattern: pattern.to_string(),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ShardingRules { rules, source })
    }

    /// A model family's built-in rules from its table of `(pattern, [dim 0 axis, dim 1 axis])`
    /// (plain data in the family's frontend, e.g. `vidlower_frontends::wan::sharding`), named
    /// `name` in messages.
    ///
    /// # Panics
    /// On a pattern that is not a regex or an axis name that is not one: a built-in table is
    /// code, so that is a programming error (each family tests that its tables compile).
    pub fn built_in(name: &'static str, table: &[(&str, [Option<&str>; 2])]) -> ShardingRules {
        Self::new(RuleSource::BuiltIn(name), table.iter().map(|(p, d)| (*p, d.to_vec())))
            .unwrap_or_else(|e| panic!("invalid built-in sharding rules: {e}"))
    }

    /// Parses a rules file: a JSON list of `{"pattern": "<regex>", "dims": ["tp", null]}`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, RulesError> {
        let name = file.display().to_string();
        let entries: Vec<RuleEntry> =
            serde_json::from_str(text).map_err(|e| RulesError::Json { file: name.clone(), message: e.to_string() })?;
        let pairs: Vec<(&str, Vec<Option<&str>>)> =
            entries.iter().map(|e| (e.pattern.as_str(), e.dims.iter().map(|d| d.as_deref()).collect())).collect();
        Self::new(RuleSource::File(file.to_path_buf()), pairs)
    }

    /// Reads and parses a rules file.
    pub fn from_file(file: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| RulesError::Read { file: file.display().to_string(), message: e.to_string() })?;
        Self::parse(file, &text)
    }

    /// The first rule whose pattern matches `name`.
    pub fn find(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.pattern.is_match(name))
    }

    /// The sharding of weight `name` of `shape` on `mesh`: the first matching rule's axes, minus
    /// axes the mesh lacks or has at size 1 and an axis already used by an earlier dim; `None`
    /// when no rule matches.
    pub fn weight_sharding(
        &self,
        mesh: &Mesh,
        name: &str,
        shape: &[i64],
    ) -> Result<Option<WeightSharding>, RulesError> {
        let Some(rule) = self.find(name) else { return Ok(None) };
        let mut sharding = Sharding::replicated(shape.len());
        let mut notes = Vec::new();
        if rule.dims.len() < shape.len() {
            notes.push(format!(
                "{name}: rank {} but the rule `{}` has {} dims; replicated",
                shape.len(),
                rule.pattern,
                rule.dims.len()
            ));
            return Ok(Some(WeightSharding { sharding, notes }));
        }
        for (dim, axis) in rule.dims.iter().take(shape.len()).enumerate() {
            let Some(axis) = axis else { continue };
            let Some(size) = mesh.axis_size(axis).filter(|&s| s > 1) else { continue };
            if sharding.axes().any(|a| a == axis) {
                notes.push(format!("{name}: axis {axis} already splits another dim; dim {dim} kept whole"));
                continue;
            }
            if shape[dim] % i64::from(size) != 0 {
                if let RuleSource::File(_) = self.source {
                    return Err(RulesError::Indivisible {
                        file: self.source.describe(),
                        weight: name.to_string(),
                        message: format!(
                            "pattern `{}` splits dim {dim} of {shape:?} on {axis}={size}, which does not divide {}",
                            rule.text, shape[dim]
                        ),
                    });
                }
                notes.push(format!("{name}: dim {dim} ({}) does not divide by {axis}={size}; kept whole", shape[dim]));
                continue;
            }
            sharding.dims[dim].push(axis.clone());
        }
        Ok(Some(WeightSharding { sharding, notes }))
    }
}

impl Rule {
    /// A rule from a pattern (anchored to the whole name) and per-dim axes.
    pub fn new(text: &str, dims: Vec<Option<String>>) -> Result<Rule, String> {
        let pattern = Regex::new(&format!("^(?:{text})$")).map_err(|e| format!("bad regex: {e}"))?;
        for axis in dims.iter().flatten() {
            if axis.is_empty() || !axis.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("axis `{axis}` is not a mesh axis name (dp, fsdp, tp, sp, ...)"));
            }
        }
        Ok(Rule { text: text.to_string(), pattern, dims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(s: &str) -> Mesh {
        Mesh::parse(s).unwrap()
    }

    fn rules() -> ShardingRules {
        let file = r#"[
            {"pattern": "blocks\\.\\d+\\.attn1\\.to_q\\.(weight|bias)", "dims": ["tp", null]},
            {"pattern": "blocks\\.\\d+\\.attn1\\.to_.*", "dims": [null, "tp"]},
            {"pattern": "proj_out\\.weight", "dims": ["fsdp", "tp"]}
        ]"#;
        ShardingRules::parse(Path::new("rules.json"), file).unwrap()
    }

    #[test]
    fn first_match_wins_and_unmatched_are_replicated() {
        let (r, m) = (rules(), mesh("dp=2,tp=4"));
        let s = |name: &str, shape: &[i64]| r.weight_sharding(&m, name, shape).unwrap().map(|w| w.sharding.to_string());
        assert_eq!(s("blocks.3.attn1.to_q.weight", &[8, 8]).unwrap(), "[{tp},{}]");
        assert_eq!(s("blocks.3.attn1.to_q.bias", &[8]).unwrap(), "[{tp}]", "a bias takes the leading entries");
        let conv = r.weight_sharding(&m, "blocks.3.attn1.to_q.weight", &[8, 8, 1]).unwrap().unwrap();
        assert!(conv.sharding.is_replicated() && conv.notes[0].contains("rank 3"), "{:?}", conv.notes);
        assert_eq!(s("blocks.3.attn1.to_k.weight", &[8, 8]).unwrap(), "[{},{tp}]");
        assert_eq!(s("blocks.3.attn2.to_q.weight", &[8, 8]), None);
        assert_eq!(s("xblocks.3.attn1.to_q.weight", &[8, 8]), None, "patterns match whole names");
        // fsdp is not in the mesh: dropped, so the same rules serve dp/tp-only meshes.
        assert_eq!(s("proj_out.weight", &[8, 8]).unwrap(), "[{},{tp}]");
        let dp_only = r.weight_sharding(&mesh("dp=8"), "blocks.0.attn1.to_q.weight", &[8, 8]).unwrap().unwrap();
        assert!(dp_only.sharding.is_replicated());
    }

    #[test]
    fn indivisible_dims_are_errors_for_files_and_notes_for_built_ins() {
        let err = rules().weight_sharding(&mesh("tp=4"), "blocks.0.attn1.to_q.weight", &[6, 8]).unwrap_err();
        assert!(matches!(err, RulesError::Indivisible { .. }), "{err}");
        assert!(err.to_string().contains("dim 0 of [6, 8] on tp=4, which does not divide 6"), "{err}");
        assert!(err.to_string().contains("rules.json") && err.to_string().contains("blocks.0.attn1.to_q.weight"));

        let built_in = ShardingRules::new(RuleSource::BuiltIn("test"), [("w", vec![Some("tp"), Some("tp")])]).unwrap();
        let w = built_in.weight_sharding(&mesh("tp=4"), "w", &[6, 8]).unwrap().unwrap();
        assert_eq!(w.sharding.to_string(), "[{},{tp}]");
        assert!(w.notes[0].contains("does not divide by tp=4"), "{:?}", w.notes);
        let w = built_in.weight_sharding(&mesh("tp=4"), "w", &[8, 8]).unwrap().unwrap();
        assert_eq!(w.sharding.to_string(), "[{tp},{}]", "an axis splits one dim only");
    }

    #[test]
    fn built_in_tables_become_rules_and_a_bad_table_is_a_programming_error() {
        let r = ShardingRules::built_in("test table", &[(r"a\.\d+\.weight", [Some("tp"), None])]);
        assert_eq!(r.source, RuleSource::BuiltIn("test table"));
        let w = r.weight_sharding(&mesh("tp=2"), "a.3.weight", &[4, 4]).unwrap().unwrap();
        assert_eq!(w.sharding.to_string(), "[{tp},{}]");
        let bad = std::panic::catch_unwind(|| ShardingRules::built_in("bad", &[("b(", [None, None])]));
        let message = *bad.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("built-in bad") && message.contains("b("), "{message}");
    }

    #[test]
    fn file_errors_name_the_file_and_the_entry() {
        let p = Path::new("my_rules.json");
        let err = ShardingRules::parse(p, "{\"pattern\": 1}").unwrap_err();
        assert!(matches!(err, RulesError::Json { .. }) && err.to_string().starts_with("sharding rules my_rules.json"));
        let err = ShardingRules::parse(p, r#"[{"pattern": "a", "dims": [], "x": 1}]"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
        let err =
            ShardingRules::parse(p, r#"[{"pattern": "a", "dims": []}, {"pattern": "b(", "dims": []}]"#).unwrap_err();
        assert!(matches!(&err, RulesError::Entry { entry: 1, pattern, .. } if pattern == "b("), "{err}");
        assert!(err.to_string().contains("bad regex"));
        let err = ShardingRules::parse(p, r#"[{"pattern": "a", "dims": ["t p"]}]"#).unwrap_err();
        assert!(err.to_string().contains("entry 0") && err.to_string().contains("`t p`"), "{err}");
        let err = ShardingRules::from_file(Path::new("/nonexistent/rules.json")).unwrap_err();
        assert!(matches!(err, RulesError::Read { .. }) && err.to_string().contains("/nonexistent/rules.json"));
    }
}
