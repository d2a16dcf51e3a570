//! SPMD on virtual CPU devices: a sharded module compiled with `num_partitions = 4` and executed
//! with one shard per device gives what the unsharded module gives on one device.

#[path = "common/pjrt.rs"]
mod common;

use std::time::Instant;

use common::*;
use vidlower_runtime::pjrt::{Buffer, Client, CompileOptions, LoadedExecutable};
use vidlower_runtime::tensor::HostTensor;

/// `tanh(x . w)` and its column sums: row-sharded x and result, replicated w and sums (the sums
/// need an all-reduce across the four devices).
const SHARDED: &str = r#"
module @sharded attributes {mhlo.num_partitions = 4 : i32, mhlo.num_replicas = 1 : i32} {
  func.func public @main(%x: tensor<8x4xf32> {mhlo.sharding = "{devices=[4,1]<=[4]}"},
                         %w: tensor<4x3xf32> {mhlo.sharding = "{replicated}"})
      -> (tensor<8x3xf32> {mhlo.sharding = "{devices=[4,1]<=[4]}"},
          tensor<3xf32> {mhlo.sharding = "{replicated}"}) {
    %0 = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0]
        : (tensor<8x4xf32>, tensor<4x3xf32>) -> tensor<8x3xf32>
    %1 = stablehlo.tanh %0 : tensor<8x3xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %2 = stablehlo.reduce(%1 init: %zero) applies stablehlo.add across dimensions = [0]
        : (tensor<8x3xf32>, tensor<f32>) -> tensor<3xf32>
    return %1, %2 : tensor<8x3xf32>, tensor<3xf32>
  }
}
"#;

/// The same computation with Shardy annotations instead of GSPMD strings.
const SHARDED_SDY: &str = r#"
module @sharded_sdy attributes {mhlo.num_partitions = 4 : i32, mhlo.num_replicas = 1 : i32} {
  sdy.mesh @mesh = <["x"=4]>
  func.func public @main(%x: tensor<8x4xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>},
                         %w: tensor<4x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}, {}]>})
      -> (tensor<8x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{"x"}, {}]>},
          tensor<3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}]>}) {
    %0 = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0]
        : (tensor<8x4xf32>, tensor<4x3xf32>) -> tensor<8x3xf32>
    %1 = stablehlo.tanh %0 : tensor<8x3xf32>
    %zero = stablehlo.constant dense<0.0> : tensor<f32>
    %2 = stablehlo.reduce(%1 init: %zero) applies stablehlo.add across dimensions = [0]
        : (tensor<8x3xf32>, tensor<f32>) -> tensor<3xf32>
    return %1, %2 : tensor<8x3xf32>, tensor<3xf32>
  }
}
"#;

fn x_values() -> Vec<f32> {
    (0..32).map(|i| (i as f32 - 16.0) / 10.0).collect()
}

fn w_values() -> Vec<f32> {
    (0..12).map(|i| ((i * 7) % 5) as f32 / 4.0 - 0.5).collect()
}

/// The unsharded program (annotations stripped) on one device: the reference.
fn single_device_result(client: &Client) -> (Vec<f32>, Vec<f32>) {
    let plain = SHARDED
        .replace(r#" {mhlo.sharding = "{devices=[4,1]<=[4]}"}"#, "")
        .replace(r#" {mhlo.sharding = "{replicated}"}"#, "")
        .replace(
            "attributes {mhlo.num_partitions = 4 : i32, mhlo.num_replicas = 1 : i32} ",
            "",
        );
    let exe = client
        .compile(&plain, &CompileOptions::single_device())
        .unwrap();
    assert_eq!(exe.addressable_devices().len(), 1);
    let device = &exe.addressable_devices()[0];
    let x = client
        .buffer_from_host(&HostTensor::from_f32([8, 4], &x_values()).unwrap(), device)
        .unwrap();
    let w = client
        .buffer_from_host(&HostTensor::from_f32([4, 3], &w_values()).unwrap(), device)
        .unwrap();
    let out = exe.execute(&[vec![&x, &w]]).unwrap();
    let y = out[0][0].to_host().unwrap().to_f32_vec();
    let sums = out[0][1].to_host().unwrap().to_f32_vec();
    // And against a host computation, so the reference itself is checked.
    let expected: Vec<f32> = matmul(&x_values(), &w_values(), 8, 4, 3)
        .iter()
        .map(|v| v.tanh())
        .collect();
    assert_close(&y, &expected, 1e-5);
    (y, sums)
}

/// Uploads row shard `d` of x and a full copy of w to each of the executable's devices, runs it,
/// and reassembles the row-sharded output; also returns every device's copy of the sums.
fn run_sharded(client: &Client, exe: &LoadedExecutable) -> (Vec<f32>, Vec<Vec<f32>>) {
    let devices = exe.addressable_devices();
    assert_eq!(devices.len(), 4);
    let x = x_values();
    let w = HostTensor::from_f32([4, 3], &w_values()).unwrap();
    let inputs: Vec<(Buffer, Buffer)> = devices
        .iter()
        .enumerate()
        .map(|(d, device)| {
            let shard = HostTensor::from_f32([2, 4], &x[d * 8..(d + 1) * 8]).unwrap();
            (
                client.buffer_from_host(&shard, device).unwrap(),
                client.buffer_from_host(&w, device).unwrap(),
            )
        })
        .collect();
    let args: Vec<Vec<&Buffer>> = inputs.iter().map(|(x, w)| vec![x, w]).collect();
    let outputs = exe.execute(&args).unwrap();
    assert_eq!(outputs.len(), 4);
    let mut y = Vec::new();
    let mut sums = Vec::new();
    for (d, out) in outputs.iter().enumerate() {
        assert_eq!(out[0].dims(), &[2, 3], "device {d} holds a 2-row shard");
        assert_eq!(out[0].device().unwrap(), devices[d]);
        y.extend(out[0].to_host().unwrap().to_f32_vec());
        assert_eq!(out[1].dims(), &[3], "device {d} holds the replicated sums");
        sums.push(out[1].to_host().unwrap().to_f32_vec());
    }
    (y, sums)
}

fn check_matches_single_device(client: &Client, exe: &LoadedExecutable) {
    let (y_ref, sums_ref) = single_device_result(client);
    let (y, sums) = run_sharded(client, exe);
    assert_close(&y, &y_ref, 1e-5);
    for s in sums {
        assert_close(&s, &sums_ref, 1e-5);
    }
}

#[test]
fn gspmd_on_four_virtual_devices_matches_one_device() {
    let client = cpu_client(4);
    let t0 = Instant::now();
    let exe = client.compile(SHARDED, &CompileOptions::spmd(4)).unwrap();
    eprintln!("4-way GSPMD compile {:?}", t0.elapsed());
    assert_eq!(exe.num_partitions().unwrap(), 4);
    assert_eq!(exe.num_outputs(), 2);
    check_matches_single_device(&client, &exe);
}

#[test]
fn shardy_on_four_virtual_devices_matches_one_device() {
    let client = cpu_client(4);
    let exe = client
        .compile(SHARDED_SDY, &CompileOptions::shardy(4))
        .unwrap();
    check_matches_single_device(&client, &exe);
}

#[test]
fn explicit_device_assignment_orders_the_devices() {
    let client = cpu_client(4);
    // Partition p on device 3 - p: argument list p must then live on device 3 - p.
    let options = CompileOptions {
        device_assignment: Some(vec![3, 2, 1, 0]),
        ..CompileOptions::spmd(4)
    };
    let exe = client.compile(SHARDED, &options).unwrap();
    let ids: Vec<i32> = exe.addressable_devices().iter().map(|d| d.id()).collect();
    eprintln!("addressable devices under assignment [3,2,1,0]: {ids:?}");
    check_matches_single_device(&client, &exe);
}

#[test]
fn sharded_executable_survives_serialization() {
    let client = cpu_client(4);
    let exe = client.compile(SHARDED, &CompileOptions::spmd(4)).unwrap();
    let loaded = client
        .deserialize_executable(&exe.serialize().unwrap())
        .unwrap();
    assert_eq!(loaded.addressable_devices(), exe.addressable_devices());
    assert_eq!(run_sharded(&client, &loaded), run_sharded(&client, &exe));
}
