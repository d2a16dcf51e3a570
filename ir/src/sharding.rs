//! Sharding annotations on values: for each tensor dim, the mesh axes that split it. The
//! sharding-propagation pass fills them in from weight rules; the backend emits them as Shardy
//! (`sdy.sharding`) or GSPMD (`mhlo.sharding`) attributes; the runtime cuts host tensors into the
//! per-device pieces they describe. Axes are named (not counted) so that a tensor split on one
//! axis of a 2-axis mesh lands on the right devices.

use crate::mesh::Mesh;
use std::fmt;

/// Per tensor dim, the mesh axes that split it (major first); an empty list = not split.
/// Axes not used by any dim hold replicas.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sharding {
    pub dims: Vec<Vec<String>>,
}

impl Sharding {
    /// Every device holds the whole tensor.
    pub fn replicated(rank: usize) -> Self {
        Sharding { dims: vec![Vec::new(); rank] }
    }

    /// No dim is split (on any mesh).
    pub fn is_replicated(&self) -> bool {
        self.dims.iter().all(|d| d.is_empty())
    }

    /// Dim `dim` split over `axis`, the others whole.
    pub fn split(rank: usize, dim: usize, axis: &str) -> Self {
        let mut s = Self::replicated(rank);
        s.dims[dim].push(axis.to_string());
        s
    }

    /// The tensor's rank.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Into how many pieces dim `dim` is cut on `mesh` (axes the mesh lacks count as 1; the
    /// verifier rejects them).
    pub fn shards_of_dim(&self, mesh: &Mesh, dim: usize) -> u32 {
        self.dims[dim].iter().map(|a| mesh.axis_size(a).unwrap_or(1)).product()
    }

    /// The per-device piece's shape for a tensor of `shape`; `None` when a dim does not divide.
    pub fn shard_shape(&self, mesh: &Mesh, shape: &[i64]) -> Option<Vec<i64>> {
        if shape.len() != self.dims.len() {
            return None;
        }
        (0..shape.len())
            .map(|d| {
                let n = i64::from(self.shards_of_dim(mesh, d));
                (shape[d] % n == 0).then_some(shape[d] / n)
            })
            .collect()
    }

    /// Every axis used, dim by dim, major first.
    pub fn axes(&self) -> impl Iterator<Item = &str> {
        self.dims.iter().flatten().map(String::as_str)
    }

    /// Which piece of each dim `device` holds: per dim, the mixed-radix number formed by the
    /// device's coordinates on that dim's axes (major first).
    pub fn tile_index(&self, mesh: &Mesh, device: u32) -> Vec<u32> {
        let coords = mesh.coords(device);
        self.dims
            .iter()
            .map(|axes| {
                axes.iter().fold(0, |acc, a| match mesh.axis_index(a) {
                    Some(i) => acc * mesh.axes[i].size + coords[i],
                    None => acc,
                })
            })
            .collect()
    }

    /// The GSPMD `mhlo.sharding` text. The tile assignment is the mesh's devices (row-major ids)
    /// with the axes reordered as the dims use them, unused axes last as the replica dim; written
    /// as an iota `<=[sizes]T(perm)` when that reorders anything, e.g.
    /// `{devices=[1,4,2]<=[2,4]T(1,0) last_tile_dim_replicate}` for `[{},{tp}]` on `dp=2,tp=4`.
    pub fn gspmd(&self, mesh: &Mesh) -> String {
        let tiles: Vec<u32> = (0..self.dims.len()).map(|d| self.shards_of_dim(mesh, d)).collect();
        let sharded: u32 = tiles.iter().product();
        if sharded == 1 {
            return "{replicated}".to_string();
        }
        let used: Vec<usize> = self.axes().filter_map(|a| mesh.axis_index(a)).collect();
        let unused = (0..mesh.axes.len()).filter(|i| !used.contains(i));
        let perm: Vec<usize> = used.iter().copied().chain(unused).collect();
        let sizes: Vec<u32> = mesh.axes.iter().map(|a| a.size).collect();
        let (sizes, perm) = simplify_iota(&sizes, &perm);
        let iota = if perm.iter().enumerate().all(|(i, &p)| i == p) {
            format!("<=[{}]", mesh.device_count())
        } else {
            format!("<=[{}]T({})", join(&sizes), join(&perm))
        };
        let replicas = mesh.device_count() / sharded;
        if replicas > 1 {
            format!("{{devices=[{},{replicas}]{iota} last_tile_dim_replicate}}", join(&tiles))
        } else {
            format!("{{devices=[{}]{iota}}}", join(&tiles))
        }
    }

    /// The Shardy attribute, e.g. `#sdy.sharding<@mesh, [{"dp"}, {}, {"tp"}]>` (dims closed).
    pub fn sdy(&self, mesh_name: &str) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|axes| format!("{{{}}}", axes.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")))
            .collect();
        format!("#sdy.sharding<@{mesh_name}, [{}]>", dims.join(", "))
    }
}

/// Drops size-1 axes and merges axes that stay adjacent and in order under `perm`, so the iota
/// text is the short form XLA prints (`<=[2,4]T(1,0)`, not `<=[1,2,4]T(0,2,1)`).
fn simplify_iota(sizes: &[u32], perm: &[usize]) -> (Vec<u32>, Vec<usize>) {
    // Groups of consecutive source axes that appear consecutively in `perm`.
    let kept: Vec<usize> = perm.iter().copied().filter(|&p| sizes[p] > 1).collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &p in &kept {
        match groups.last_mut() {
            Some(g) if *g.last().unwrap() + 1 == p || skip_ones(sizes, *g.last().unwrap(), p) => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    // Each group becomes one axis; number the groups by their source position.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| groups[g][0]);
    let new_sizes: Vec<u32> = order.iter().map(|&g| groups[g].iter().map(|&p| sizes[p]).product()).collect();
    let mut new_perm = vec![0; groups.len()];
    for (pos, &g) in order.iter().enumerate() {
        new_perm[g] = pos;
    }
    (new_sizes, new_perm)
}

/// Whether every axis strictly between `a` and `b` (with `a < b`) has size 1.
fn skip_ones(sizes: &[u32], a: usize, b: usize) -> bool {
    a < b && sizes[a + 1..b].iter().all(|&s| s == 1)
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// The IR text form: `[{dp},{},{tp}]`; a dim split over two axes is `{dp,tp}`.
impl fmt::Display for Sharding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(|axes| format!("{{{}}}", axes.join(","))).collect();
        write!(f, "[{}]", dims.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(dims: &[&[&str]]) -> Sharding {
        Sharding { dims: dims.iter().map(|d| d.iter().map(|a| a.to_string()).collect()).collect() }
    }

    #[test]
    fn gspmd_text_orders_devices_by_mesh_axes() {
        let m = Mesh::parse("dp=2,tp=4").unwrap();
        assert_eq!(s(&[&["dp"], &[], &["tp"]]).gspmd(&m), "{devices=[2,1,4]<=[8]}");
        assert_eq!(s(&[&[], &["tp"]]).gspmd(&m), "{devices=[1,4,2]<=[2,4]T(1,0) last_tile_dim_replicate}");
        assert_eq!(s(&[&["dp"], &[]]).gspmd(&m), "{devices=[2,1,4]<=[8] last_tile_dim_replicate}");
        assert_eq!(s(&[&["tp"], &["dp"]]).gspmd(&m), "{devices=[4,2]<=[2,4]T(1,0)}");
        assert_eq!(s(&[&["dp", "tp"]]).gspmd(&m), "{devices=[8]<=[8]}");
        assert_eq!(s(&[&["tp", "dp"]]).gspmd(&m), "{devices=[8]<=[2,4]T(1,0)}");
        assert_eq!(Sharding::replicated(2).gspmd(&m), "{replicated}");
        let m3 = Mesh::parse("dp=2,fsdp=1,tp=4").unwrap();
        assert_eq!(s(&[&[], &["tp"]]).gspmd(&m3), "{devices=[1,4,2]<=[2,4]T(1,0) last_tile_dim_replicate}");
        let m3 = Mesh::parse("a=2,b=3,c=4").unwrap();
        assert_eq!(s(&[&["b"], &["c"]]).gspmd(&m3), "{devices=[3,4,2]<=[2,12]T(1,0) last_tile_dim_replicate}");
        assert_eq!(s(&[&["c"], &["a"]]).gspmd(&m3), "{devices=[4,2,3]<=[6,4]T(1,0) last_tile_dim_replicate}");
    }

    #[test]
    fn sdy_text_and_display() {
        let x = s(&[&["dp"], &[], &["dp", "tp"]]);
        assert_eq!(x.sdy("mesh"), r#"#sdy.sharding<@mesh, [{"dp"}, {}, {"dp", "tp"}]>"#);
        assert_eq!(x.to_string(), "[{dp},{},{dp,tp}]");
        assert_eq!(Sharding::replicated(0).sdy("mesh"), "#sdy.sharding<@mesh, []>");
        assert_eq!(Sharding::split(2, 1, "tp"), s(&[&[], &["tp"]]));
    }

    #[test]
    fn shard_shapes_and_tiles() {
        let m = Mesh::parse("dp=2,tp=4").unwrap();
        let x = s(&[&["dp"], &["tp"]]);
        assert_eq!(x.shard_shape(&m, &[4, 8]), Some(vec![2, 2]));
        assert_eq!(x.shard_shape(&m, &[4, 6]), None, "6 does not divide by 4");
        assert_eq!(x.shard_shape(&m, &[4]), None, "rank mismatch");
        assert_eq!(x.tile_index(&m, 6), vec![1, 2]);
        assert_eq!(s(&[&["tp", "dp"]]).tile_index(&m, 6), vec![5]);
        assert_eq!(s(&[&[], &["tp"]]).tile_index(&m, 5), vec![0, 1]);
        assert_eq!(x.axes().collect::<Vec<_>>(), ["dp", "tp"]);
        assert!(!x.is_replicated() && Sharding::replicated(3).is_replicated());
    }
}
