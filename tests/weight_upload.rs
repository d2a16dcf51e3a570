//! The fast weight upload (mapped bytes straight to the device, parallel conversion, several
//! transfers in flight) gives exactly what the one-at-a-time path gives: for weights stored in
//! the graph's dtype and in another, on one device and cut over a mesh, with tight in-flight
//! bounds and loose ones; and its errors name the weight and the file.

mod common;

use vidlower_ir::{DType, Mesh, Sharding, TensorType};
use vidlower_runtime::safetensors_io::save;
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weight_upload::{upload_from_store, upload_one_at_a_time, UploadOptions, WeightParam};
use vidlower_runtime::weights::WeightStore;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7 + seed * 13) as f32 * 0.37).sin() * 3.0).collect()
}

fn tensor(dims: &[i64], seed: usize, dtype: DType) -> HostTensor {
    let n = dims.iter().product::<i64>() as usize;
    HostTensor::from_f32(dims.to_vec(), &values(n, seed)).unwrap().convert(dtype)
}

/// A two-file store: bf16 weights (one big enough to be converted on several threads, one of
/// odd length so the tensor after it starts unaligned) and f32 weights.
fn mixed_store(dir: &std::path::Path) -> (WeightStore, Vec<(String, TensorType)>) {
    let bf16 = vec![
        ("blocks.0.ffn.weight".to_string(), tensor(&[1536, 1536], 1, DType::BF16)),
        ("blocks.0.norm.weight".to_string(), tensor(&[3], 2, DType::BF16)),
        ("blocks.0.proj.weight".to_string(), tensor(&[64, 33], 3, DType::F32)),
    ];
    let f32 = vec![
        ("head.weight".to_string(), tensor(&[96, 40], 4, DType::F32)),
        ("head.bias".to_string(), tensor(&[40], 5, DType::F32)),
    ];
    save(&dir.join("model-00001-of-00002.safetensors"), &bf16).unwrap();
    save(&dir.join("model-00002-of-00002.safetensors"), &f32).unwrap();
    // The graph: f32 everywhere (bf16 -> f32 conversions and mapped f32), plus one bf16
    // weight read as stored (mapped bf16) and one f32 weight narrowed to bf16.
    let ty = |d: &[i64], dtype| TensorType::new(dtype, d.to_vec());
    let params = vec![
        ("blocks.0.ffn.weight".to_string(), ty(&[1536, 1536], DType::F32)),
        ("blocks.0.norm.weight".to_string(), ty(&[3], DType::BF16)),
        ("blocks.0.proj.weight".to_string(), ty(&[64, 33], DType::F32)),
        ("head.weight".to_string(), ty(&[96, 40], DType::BF16)),
        ("head.bias".to_string(), ty(&[40], DType::F32)),
    ];
    (WeightStore::open(dir).unwrap(), params)
}

fn unsharded(params: &[(String, TensorType)]) -> Vec<WeightParam<'_>> {
    params.iter().map(|(name, ty)| WeightParam { name, ty, sharding: None }).collect()
}

#[test]
fn fast_upload_equals_the_one_at_a_time_path_on_one_device() {
    let dir = tempfile::tempdir().unwrap();
    let (store, params) = mixed_store(dir.path());
    let client = common::cpu_client(1);
    let device = client.addressable_devices().unwrap().remove(0);
    let slow = upload_one_at_a_time(&store, &unsharded(&params), &client, &device).unwrap();
    let tight = UploadOptions { max_in_flight: 1, max_owned_bytes: 0, convert_threads: 3 };
    let loose = UploadOptions { max_in_flight: 64, max_owned_bytes: usize::MAX, convert_threads: 1 };
    for options in [UploadOptions::default(), tight, loose] {
        let fast = upload_from_store(&store, &unsharded(&params), std::slice::from_ref(&device), &options).unwrap();
        assert_eq!(fast.len(), params.len());
        for (((name, ty), f), s) in params.iter().zip(&fast).zip(&slow) {
            assert_eq!(f.len(), 1, "{name}: one buffer per device");
            let got = f[0].to_host().unwrap();
            assert_eq!((got.dtype, &got.dims), (ty.dtype, &ty.shape), "{name} ({options:?})");
            assert!(got == s.to_host().unwrap(), "{name}: fast upload differs from the slow path ({options:?})");
            assert!(got == store.load(name, ty).unwrap(), "{name}: device bytes differ from WeightStore::load ({options:?})");
        }
    }
}

#[test]
fn fast_upload_cuts_sharded_weights_and_shares_replicated_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (store, params) = mixed_store(dir.path());
    let client = common::cpu_client(2);
    let devices = client.addressable_devices().unwrap();
    let mesh = Mesh::parse("tp=2").unwrap();
    let shardings: Vec<Sharding> = params
        .iter()
        .map(|(name, ty)| if name.ends_with("ffn.weight") || name == "head.weight" { Sharding::split(ty.rank(), 0, "tp") } else { Sharding::replicated(ty.rank()) })
        .collect();
    let list: Vec<WeightParam> =
        params.iter().zip(&shardings).map(|((name, ty), s)| WeightParam { name, ty, sharding: Some((s, &mesh)) }).collect();
    let fast = upload_from_store(&store, &list, &devices, &UploadOptions { max_in_flight: 2, ..Default::default() }).unwrap();
    for (((name, ty), s), bufs) in params.iter().zip(&shardings).zip(&fast) {
        let whole = store.load(name, ty).unwrap();
        for (d, b) in bufs.iter().enumerate() {
            let expected = vidlower_runtime::shard::shard_of(&whole, s, &mesh, d as u32).unwrap();
            assert!(b.to_host().unwrap() == expected, "{name}: device {d}'s piece differs");
            assert_eq!(b.device().unwrap(), devices[d], "{name}: piece {d} on the wrong device");
        }
    }
}

#[test]
fn fast_upload_errors_name_the_weight_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut params) = mixed_store(dir.path());
    let client = common::cpu_client(1);
    let devices = client.addressable_devices().unwrap();
    params[4].1 = TensorType::new(DType::F32, vec![41]);
    let e = upload_from_store(&store, &unsharded(&params), &devices, &UploadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("`head.bias`") && e.contains("model-00002-of-00002.safetensors") && e.contains("[41]"), "{e}");
    params[4].0 = "head.missing".into();
    let e = upload_from_store(&store, &unsharded(&params), &devices, &UploadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("`head.missing` is missing"), "{e}");
}
