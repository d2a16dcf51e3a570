//! Host-side sharding: the piece of a tensor each device holds under a `Sharding`, and the
//! reassembly of per-device pieces. Device order is the GSPMD iota order the backend emits
//! (`{devices=[t0,..,tn(,r)]<=[N]}`): device d holds tile d / r, where r = N / shards replicas.

use crate::tensor::HostTensor;
use vidlower_ir::Sharding;

/// The tile coordinate of `device` under `sharding` over `devices` devices.
fn tile_coords(sharding: &Sharding, devices: u32, device: u32) -> Vec<i64> {
    let replicas = devices / sharding.shard_count();
    let mut linear = (device / replicas) as i64;
    let mut coords = vec![0; sharding.tiles.len()];
    for (i, &t) in sharding.tiles.iter().enumerate().rev() {
        coords[i] = linear % t as i64;
        linear /= t as i64;
    }
    coords
}

/// The shard of `t` that `device` holds; `None` if a dim does not divide by its tile count.
pub fn shard_of(t: &HostTensor, sharding: &Sharding, devices: u32, device: u32) -> Option<HostTensor> {
    let shape = sharding.shard_shape(&t.dims)?;
    let coords = tile_coords(sharding, devices, device);
    let start: Vec<i64> = coords.iter().zip(&shape).map(|(c, s)| c * s).collect();
    Some(copy_box(t, &start, &shape))
}

/// Reassembles the full tensor from one shard per device (replicas are taken from their first device).
pub fn unshard(shards: &[HostTensor], sharding: &Sharding, full_dims: &[i64]) -> HostTensor {
    let devices = shards.len() as u32;
    let w = shards[0].dtype.size_in_bytes();
    let mut out = HostTensor { dtype: shards[0].dtype, dims: full_dims.to_vec(), data: vec![0; full_dims.iter().product::<i64>() as usize * w] };
    let shape = &shards[0].dims;
    for d in 0..devices {
        let coords = tile_coords(sharding, devices, d);
        let start: Vec<i64> = coords.iter().zip(shape).map(|(c, s)| c * s).collect();
        for_each_row(shape, |idx| {
            let src = linear(shape, idx) * w;
            let full_idx: Vec<i64> = idx.iter().zip(&start).map(|(i, s)| i + s).collect();
            let dst = linear(full_dims, &full_idx) * w;
            let n = *shape.last().unwrap_or(&1) as usize * w;
            out.data[dst..dst + n].copy_from_slice(&shards[d as usize].data[src..src + n]);
        });
    }
    out
}

/// The box `[start, start + shape)` of `t`, row by row.
fn copy_box(t: &HostTensor, start: &[i64], shape: &[i64]) -> HostTensor {
    let w = t.dtype.size_in_bytes();
    let mut data = Vec::with_capacity(shape.iter().product::<i64>() as usize * w);
    for_each_row(shape, |idx| {
        let full_idx: Vec<i64> = idx.iter().zip(start).map(|(i, s)| i + s).collect();
        let src = linear(&t.dims, &full_idx) * w;
        let n = *shape.last().unwrap_or(&1) as usize * w;
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

    #[test]
    fn shards_and_reassembles() {
        let vals: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let t = HostTensor::from_f32(vec![4, 6], &vals).unwrap();
        let s = Sharding { tiles: vec![2, 2] };
        let shards: Vec<HostTensor> = (0..4).map(|d| shard_of(&t, &s, 4, d).unwrap()).collect();
        assert_eq!(shards[1].to_f32_vec(), vec![3.0, 4.0, 5.0, 9.0, 10.0, 11.0]);
        assert_eq!(unshard(&shards, &s, &[4, 6]), t);
        // Replicated over pairs of devices: devices 0,1 hold the top half.
        let half = Sharding { tiles: vec![2, 1] };
        assert_eq!(shard_of(&t, &half, 4, 1).unwrap(), shard_of(&t, &half, 4, 0).unwrap());
        assert_eq!(shard_of(&t, &half, 4, 2).unwrap().to_f32_vec()[0], 12.0);
        assert!(shard_of(&t, &Sharding { tiles: vec![4, 4] }, 16, 0).is_none(), "6 does not divide by 4");
        // Rank 1 and scalars.
        let v = HostTensor::from_f32(vec![4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(shard_of(&v, &Sharding { tiles: vec![2] }, 2, 1).unwrap().to_f32_vec(), vec![3.0, 4.0]);
    }
}
