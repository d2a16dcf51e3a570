//! Host-side sharding: the piece of a tensor each device holds under a `Sharding` over a `Mesh`,
//! and the reassembly of per-device pieces. Device `d` is the mesh point `mesh.coords(d)` (the
//! row-major numbering the backend's Shardy and GSPMD annotations both describe), and it holds,
//! in each dim, the piece numbered by its coordinates on that dim's axes
//! ([`Sharding::tile_index`]); axes no dim uses hold replicas.

use crate::tensor::HostTensor;
use thiserror::Error;
use vidlower_ir::{Mesh, Sharding};

/// Why a tensor could not be cut into, or put back from, per-device pieces.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ShardError {
    #[error("a {dims:?} tensor cannot be cut by sharding {sharding} on mesh {mesh}: a dim does not divide by its shard count (or the rank differs)")]
    NotDivisible { dims: Vec<i64>, sharding: String, mesh: String },
    #[error("no piece for device {device} (or a replica of it) under sharding {sharding} on mesh {mesh}")]
    MissingPiece { device: u32, sharding: String, mesh: String },
    #[error("device {device}'s piece is {got:?} (or of another dtype); sharding {sharding} of a {dims:?} tensor gives {expected:?}")]
    PieceShape { device: u32, got: Vec<i64>, expected: Vec<i64>, sharding: String, dims: Vec<i64> },
}

/// The shape of each piece of a `dims` tensor, or why there is none.
fn piece_shape(sharding: &Sharding, mesh: &Mesh, dims: &[i64]) -> Result<Vec<i64>, ShardError> {
    sharding.shard_shape(mesh, dims).ok_or_else(|| ShardError::NotDivisible {
        dims: dims.to_vec(),
        sharding: sharding.to_string(),
        mesh: mesh.to_string(),
    })
}

/// Where `device`'s piece starts in the full tensor.
fn piece_start(sharding: &Sharding, mesh: &Mesh, device: u32, piece: &[i64]) -> Vec<i64> {
    sharding.tile_index(mesh, device).iter().zip(piece).map(|(&t, &s)| i64::from(t) * s).collect()
}

/// The piece of `t` that `device` holds.
pub fn shard_of(t: &HostTensor, sharding: &Sharding, mesh: &Mesh, device: u32) -> Result<HostTensor, ShardError> {
    let shape = piece_shape(sharding, mesh, &t.dims)?;
    let start = piece_start(sharding, mesh, device, &shape);
    Ok(copy_box(t, &start, &shape))
}

/// The first device holding each distinct piece under `sharding`: the devices whose pieces
/// [`unshard`] needs (one per piece, replicas skipped).
pub fn piece_holders(sharding: &Sharding, mesh: &Mesh) -> Vec<u32> {
    let mut seen = std::collections::HashSet::new();
    (0..mesh.device_count()).filter(|&d| seen.insert(sharding.tile_index(mesh, d))).collect()
}

/// Reassembles the full `full_dims` tensor from `(device, piece)` pairs that cover every piece
/// (all devices, or just the [`piece_holders`]); a piece given twice is read once.
pub fn unshard(pieces: &[(u32, HostTensor)], sharding: &Sharding, mesh: &Mesh, full_dims: &[i64]) -> Result<HostTensor, ShardError> {
    let shape = piece_shape(sharding, mesh, full_dims)?;
    let holders = piece_holders(sharding, mesh);
    let Some((_, first)) = pieces.first() else {
        return Err(ShardError::MissingPiece { device: holders[0], sharding: sharding.to_string(), mesh: mesh.to_string() });
    };
    let w = first.dtype.size_in_bytes();
    let elements = full_dims.iter().product::<i64>() as usize;
    let mut out = HostTensor { dtype: first.dtype, dims: full_dims.to_vec(), data: vec![0; elements * w] };
    let n = *shape.last().unwrap_or(&1) as usize * w;
    for &holder in &holders {
        let tile = sharding.tile_index(mesh, holder);
        let (d, piece) = pieces
            .iter()
            .find(|(d, _)| sharding.tile_index(mesh, *d) == tile)
            .ok_or_else(|| ShardError::MissingPiece { device: holder, sharding: sharding.to_string(), mesh: mesh.to_string() })?;
        if piece.dims != shape || piece.dtype != first.dtype {
            return Err(ShardError::PieceShape {
                device: *d,
                got: piece.dims.clone(),
                expected: shape,
                sharding: sharding.to_string(),
                dims: full_dims.to_vec(),
            });
        }
        let start = piece_start(sharding, mesh, *d, &shape);
        for_each_row(&shape, |idx| {
            let src = linear(&shape, idx) * w;
            let full_idx: Vec<i64> = idx.iter().zip(&start).map(|(i, s)| i + s).collect();
            let dst = linear(full_dims, &full_idx) * w;
            out.data[dst..dst + n].copy_from_slice(&piece.data[src..src + n]);
        });
    }
    Ok(out)
}

/// The box `[start, start + shape)` of `t`, row by row.
fn copy_box(t: &HostTensor, start: &[i64], shape: &[i64]) -> HostTensor {
    let w = t.dtype.size_in_bytes();
    let mut data = Vec::with_capacity(shape.iter().product::<i64>() as usize * w);
    let n = *shape.last().unwrap_or(&1) as usize * w;
    for_each_row(shape, |idx| {
        let full_idx: Vec<i64> = idx.iter().zip(start).map(|(i, s)| i + s).collect();
        let src = linear(&t.dims, &full_idx) * w;
        data.extend_from_slice(&t.data[src..src + n]);
    });
    HostTensor { dtype: t.dtype, dims: shape.to_vec(), data }
}

/// Calls `f` with the index of the first element of every innermost row of `shape`.
fn for_each_row(shape: &[i64], mut f: impl FnMut(&[i64])) {
    if shape.contains(&0) {
        return;
    }
    let r = shape.len();
    let mut idx = vec![0i64; r];
    loop {
        f(&idx);
        // Advance every dim but the last (rows are copied whole).
        let mut k = r.saturating_sub(1);
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

fn linear(dims: &[i64], idx: &[i64]) -> usize {
    idx.iter().zip(dims).fold(0i64, |acc, (i, d)| acc * d + i) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharding(dims: &[&[&str]]) -> Sharding {
        Sharding { dims: dims.iter().map(|d| d.iter().map(|a| a.to_string()).collect()).collect() }
    }

    fn iota(dims: Vec<i64>) -> HostTensor {
        let n = dims.iter().product::<i64>();
        HostTensor::from_f32(dims, &(0..n).map(|v| v as f32).collect::<Vec<_>>()).unwrap()
    }

    fn all_pieces(t: &HostTensor, s: &Sharding, mesh: &Mesh) -> Vec<HostTensor> {
        (0..mesh.device_count()).map(|d| shard_of(t, s, mesh, d).unwrap()).collect()
    }

    /// `unshard` from every device's piece, and from the holders' pieces alone.
    fn join(pieces: &[HostTensor], s: &Sharding, mesh: &Mesh, dims: &[i64]) -> HostTensor {
        let all: Vec<(u32, HostTensor)> = pieces.iter().cloned().enumerate().map(|(d, p)| (d as u32, p)).collect();
        let full = unshard(&all, s, mesh, dims).unwrap();
        let few: Vec<(u32, HostTensor)> = piece_holders(s, mesh).into_iter().map(|d| (d, pieces[d as usize].clone())).collect();
        assert_eq!(unshard(&few, s, mesh, dims).unwrap(), full);
        full
    }

    #[test]
    fn both_axes_of_a_two_axis_mesh() {
        let mesh = Mesh::parse("dp=2,tp=2").unwrap();
        let t = iota(vec![4, 6]);
        let s = sharding(&[&["dp"], &["tp"]]);
        let pieces = all_pieces(&t, &s, &mesh);
        // Device 1 = (dp 0, tp 1): top rows, right columns.
        assert_eq!(pieces[1].to_f32_vec(), vec![3.0, 4.0, 5.0, 9.0, 10.0, 11.0]);
        assert_eq!(join(&pieces, &s, &mesh, &[4, 6]), t);
    }

    /// Split on the minor axis only: devices that differ only in `dp` hold the same piece, and
    /// consecutive devices hold different pieces (a tile-count view would get this wrong).
    #[test]
    fn minor_axis_only_on_a_two_axis_mesh() {
        let mesh = Mesh::parse("dp=2,tp=4").unwrap();
        let t = iota(vec![3, 8]);
        let s = sharding(&[&[], &["tp"]]);
        let pieces = all_pieces(&t, &s, &mesh);
        for d in 0..4 {
            assert_eq!(pieces[d], pieces[d + 4], "devices {d} and {} differ only in dp", d + 4);
            assert_eq!(pieces[d].dims, vec![3, 2]);
            assert_eq!(pieces[d].to_f32_vec()[0], 2.0 * d as f32, "device {d} holds columns {}..", 2 * d);
        }
        assert_eq!(join(&pieces, &s, &mesh, &[3, 8]), t);
        // Major axis only: devices 0..4 share the top half.
        let s = sharding(&[&["dp"], &[]]);
        let t = iota(vec![2, 8]);
        let pieces = all_pieces(&t, &s, &mesh);
        assert!(pieces[..4].iter().all(|p| p.to_f32_vec() == (0..8).map(|v| v as f32).collect::<Vec<_>>()));
        assert_eq!(pieces[4].to_f32_vec()[0], 8.0);
        assert_eq!(join(&pieces, &s, &mesh, &[2, 8]), t);
    }

    #[test]
    fn two_axes_on_one_dim_major_first() {
        let mesh = Mesh::parse("dp=2,tp=4").unwrap();
        let t = iota(vec![8, 2]);
        for axes in [["dp", "tp"], ["tp", "dp"]] {
            let s = sharding(&[&axes, &[]]);
            let pieces = all_pieces(&t, &s, &mesh);
            for d in 0..8u32 {
                let c = mesh.coords(d);
                let row = if axes[0] == "dp" { c[0] * 4 + c[1] } else { c[1] * 2 + c[0] };
                assert_eq!(pieces[d as usize].to_f32_vec(), vec![2.0 * row as f32, 2.0 * row as f32 + 1.0], "{axes:?} device {d}");
            }
            assert_eq!(join(&pieces, &s, &mesh, &[8, 2]), t);
        }
    }

    #[test]
    fn replicated_scalars_and_errors() {
        let mesh = Mesh::parse("tp=4").unwrap();
        let scalar = HostTensor::from_f32(vec![], &[7.0]).unwrap();
        let pieces = all_pieces(&scalar, &Sharding::replicated(0), &mesh);
        assert_eq!(join(&pieces, &Sharding::replicated(0), &mesh, &[]), scalar);
        assert_eq!(piece_holders(&Sharding::replicated(0), &mesh), [0]);
        assert_eq!(piece_holders(&Sharding::split(2, 1, "dp"), &Mesh::parse("dp=2,tp=4").unwrap()), [0, 4]);
        let v = iota(vec![6]);
        let e = shard_of(&v, &Sharding::split(1, 0, "tp"), &mesh, 0).unwrap_err();
        assert!(e.to_string().contains("[6]") && e.to_string().contains("tp=4"), "{e}");
        let split = Sharding::split(1, 0, "tp");
        let two: Vec<(u32, HostTensor)> = (0..2).map(|d| (d, shard_of(&iota(vec![4]), &split, &mesh, d).unwrap())).collect();
        let e = unshard(&two, &split, &mesh, &[4]).unwrap_err();
        assert_eq!(e, ShardError::MissingPiece { device: 2, sharding: "[{tp}]".into(), mesh: "tp=4".into() });
        let whole: Vec<(u32, HostTensor)> = (0..4).map(|d| (d, iota(vec![4]))).collect();
        let e = unshard(&whole, &split, &mesh, &[4]);
        assert!(matches!(e, Err(ShardError::PieceShape { device: 0, .. })), "{e:?}");
    }
}
