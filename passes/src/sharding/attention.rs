//! How attention is split over the mesh (SEEDS.md, "The attention kernel"): context parallel
//! (heads over the axis) when the heads divide it, else sequence parallel (query rows over the
//! axis, keys and values whole on every device), else not split on that axis. Heads first on
//! `tp` (the projections are already column-split there, so heads come split for free); query
//! rows first on `sp`, the axis whose purpose is sequence parallelism.
//!
//! The op's kind (never its lengths) says what sequence parallelism costs, and the choice
//! records it for the report: only the queries' rows are split, so
//! - self and joint attention (keys from the queries' own sequence, which sequence parallelism
//!   has split) gather their keys and values: every device needs every key;
//! - cross attention's keys and values are the text, which stays replicated: nothing to gather.
//!
//! Joint attention is split like self-attention: its text tokens are rows of the one sequence.
//! The split itself is the same rule for every kind (the seeds apply it to their long
//! self-attention and to the short cross-attention alike).

use vidlower_ir::{AttentionKind, Mesh};

/// Which attention split the pass seeds (`--attention-sharding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttentionSharding {
    /// Context parallel on `tp`, sequence parallel on `sp`, each falling back to the other when
    /// the sizes do not divide.
    #[default]
    Auto,
    /// Heads only.
    Context,
    /// Query rows only.
    Sequence,
    /// No attention seeds: attention takes whatever the weights propagate.
    None,
}

/// The attention dim an axis splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionSplit {
    /// Context parallel: dim 1 of q, k, v and the output.
    Heads,
    /// Sequence parallel: dim 2 of q and the output; k and v stay whole.
    Queries,
}

/// The decision for one attention op.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionChoice {
    /// The op's kind, as the model stated it.
    pub kind: AttentionKind,
    pub heads: i64,
    pub queries: i64,
    pub keys: i64,
    /// (axis, split) per mesh axis that splits this attention.
    pub splits: Vec<(String, AttentionSplit)>,
    /// Why an axis splits nothing here.
    pub notes: Vec<String>,
}

impl AttentionChoice {
    /// Whether splitting the query rows leaves keys and values to gather: they come from the
    /// queries' own (split) sequence in self and joint attention, from the replicated text in
    /// cross attention.
    pub fn gathers_keys(&self) -> bool {
        self.kind != AttentionKind::Cross && self.splits.iter().any(|(_, s)| *s == AttentionSplit::Queries)
    }

    /// The axes to seed per dim of q (and the output) and of k/v, [B, H, S, D].
    pub fn seeds(&self) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        let (mut q, mut kv) = (vec![Vec::new(); 4], vec![Vec::new(); 4]);
        for (axis, split) in &self.splits {
            match split {
                AttentionSplit::Heads => {
                    q[1].push(axis.clone());
                    kv[1].push(axis.clone());
                }
                AttentionSplit::Queries => q[2].push(axis.clone()),
            }
        }
        (q, kv)
    }
}

impl std::fmt::Display for AttentionChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.kind.name();
        let keys = match self.kind {
            AttentionKind::Cross => "text keys replicated",
            AttentionKind::SelfAttention | AttentionKind::Joint => "keys gathered",
        };
        let splits: Vec<String> = self
            .splits
            .iter()
            .map(|(a, s)| match s {
                AttentionSplit::Heads => format!("heads on {a} (context parallel)"),
                AttentionSplit::Queries => format!("queries on {a} (sequence parallel, {keys})"),
            })
            .collect();
        let what = if splits.is_empty() { "not split".to_string() } else { splits.join(", ") };
        write!(f, "{kind} attention, {} heads, {} queries x {} keys: {what}", self.heads, self.queries, self.keys)?;
        for n in &self.notes {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

/// Decides how the `kind` attention of `heads` heads, `queries` rows and `keys` keys is split on
/// `mesh`. Only the `tp` and `sp` axes split attention (`dp` and `fsdp` reach it through the
/// batch).
pub fn choose(
    mode: AttentionSharding,
    mesh: &Mesh,
    kind: AttentionKind,
    heads: i64,
    queries: i64,
    keys: i64,
) -> AttentionChoice {
    let mut choice = AttentionChoice { kind, heads, queries, keys, splits: Vec::new(), notes: Vec::new() };
    if mode == AttentionSharding::None {
        return choice;
    }
    let (mut heads_left, mut queries_left) = (heads, queries);
    for axis in mesh.axes.iter().filter(|a| a.size > 1 && (a.name == "tp" || a.name == "sp")) {
        let n = i64::from(axis.size);
        let order: &[AttentionSplit] = match (mode, axis.name.as_str()) {
            (AttentionSharding::Context, _) => &[AttentionSplit::Heads],
            (AttentionSharding::Sequence, _) => &[AttentionSplit::Queries],
            (_, "tp") => &[AttentionSplit::Heads, AttentionSplit::Queries],
            _ => &[AttentionSplit::Queries, AttentionSplit::Heads],
        };
        let fits = |s: &AttentionSplit| match s {
            AttentionSplit::Heads => heads_left % n == 0,
            AttentionSplit::Queries => queries_left % n == 0,
        };
        match order.iter().find(|s| fits(s)) {
            Some(&split) => {
                match split {
                    AttentionSplit::Heads => heads_left /= n,
                    AttentionSplit::Queries => queries_left /= n,
                }
                choice.splits.push((axis.name.clone(), split));
            }
            None => choice.notes.push(format!(
                "neither {heads_left} heads nor {queries_left} queries divide by {}={n}; replicated on {}",
                axis.name, axis.name
            )),
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttentionSplit::{Heads, Queries};

    fn splits(mode: AttentionSharding, mesh: &str, heads: i64, queries: i64) -> Vec<(String, AttentionSplit)> {
        choose(mode, &Mesh::parse(mesh).unwrap(), AttentionKind::SelfAttention, heads, queries, 512).splits
    }

    fn on(axis: &str, s: AttentionSplit) -> (String, AttentionSplit) {
        (axis.to_string(), s)
    }

    #[test]
    fn context_parallel_when_heads_divide_else_sequence_parallel() {
        use AttentionSharding::*;
        assert_eq!(splits(Auto, "dp=2,tp=4", 8, 64), [on("tp", Heads)]);
        assert_eq!(splits(Auto, "dp=2,tp=4", 2, 64), [on("tp", Queries)]);
        assert_eq!(splits(Auto, "tp=8", 40, 75600), [on("tp", Heads)]);
        assert_eq!(splits(Auto, "tp=8", 12, 75600), [on("tp", Queries)], "Wan 1.3B's 12 heads on 8 devices");
        assert_eq!(splits(Auto, "sp=8", 8, 64), [on("sp", Queries)]);
        assert_eq!(splits(Auto, "sp=8", 8, 60), [on("sp", Heads)]);
        assert_eq!(splits(Auto, "tp=2,sp=4", 8, 64), [on("tp", Heads), on("sp", Queries)]);
        assert_eq!(splits(Context, "tp=4", 2, 64), []);
        assert_eq!(splits(Sequence, "tp=4", 8, 64), [on("tp", Queries)]);
        assert_eq!(splits(None, "tp=4", 8, 64), []);
        assert_eq!(splits(Auto, "dp=8", 8, 64), [], "dp reaches attention through the batch only");
    }

    #[test]
    fn indivisible_sizes_are_noted_and_seeds_follow_the_splits() {
        let c = choose(AttentionSharding::Auto, &Mesh::parse("tp=4").unwrap(), AttentionKind::SelfAttention, 2, 6, 30_000);
        assert!(c.splits.is_empty());
        assert_eq!(c.notes, ["neither 2 heads nor 6 queries divide by tp=4; replicated on tp"]);
        assert!(c.to_string().starts_with("self attention, 2 heads, 6 queries x 30000 keys: not split"));

        let c = choose(AttentionSharding::Auto, &Mesh::parse("tp=2,sp=4").unwrap(), AttentionKind::Joint, 8, 64, 16);
        let (q, kv) = c.seeds();
        assert_eq!(q, [vec![], vec!["tp".to_string()], vec!["sp".to_string()], vec![]]);
        assert_eq!(kv, [vec![], vec!["tp".to_string()], vec![], vec![]]);
    }

    #[test]
    fn the_kind_not_the_lengths_says_whether_keys_are_gathered() {
        let sp = Mesh::parse("sp=4").unwrap();
        // Equal lengths (a joint text+video sequence, or text as long as the video): only the
        // kind tells the text keys (replicated) from the sequence's own (gathered).
        let at = |kind| choose(AttentionSharding::Auto, &sp, kind, 2, 64, 64);
        let (self_, cross, joint) = (at(AttentionKind::SelfAttention), at(AttentionKind::Cross), at(AttentionKind::Joint));
        assert_eq!((self_.gathers_keys(), cross.gathers_keys(), joint.gathers_keys()), (true, false, true));
        assert_eq!(cross.to_string(), "cross attention, 2 heads, 64 queries x 64 keys: queries on sp (sequence parallel, text keys replicated)");
        assert_eq!(joint.to_string(), "joint attention, 2 heads, 64 queries x 64 keys: queries on sp (sequence parallel, keys gathered)");
        // Short self-attention and long cross attention are not mistaken for each other either.
        let cross_long = choose(AttentionSharding::Auto, &sp, AttentionKind::Cross, 2, 64, 30_000);
        assert!(!cross_long.gathers_keys() && cross_long.to_string().starts_with("cross attention"));
        // The split rule is the same for every kind (the seeds' one rule).
        assert_eq!((&self_.splits, &joint.splits), (&cross.splits, &cross.splits));
        // Heads only: nothing to gather.
        let tp = choose(AttentionSharding::Auto, &Mesh::parse("tp=2").unwrap(), AttentionKind::SelfAttention, 2, 64, 64);
        assert!(!tp.gathers_keys());
    }
}
