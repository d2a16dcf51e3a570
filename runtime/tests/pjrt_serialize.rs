//! `PJRT_Executable_Serialize` / `DeserializeAndLoad` round trip on a real plugin.

#[path = "common/pjrt.rs"]
mod common;

use std::time::Instant;

use common::*;
use vidlower_runtime::pjrt::{Client, CompileOptions, LoadedExecutable, PjrtError};
use vidlower_runtime::tensor::HostTensor;

fn run(client: &Client, exe: &LoadedExecutable) -> Vec<Vec<f32>> {
    let device = &exe.addressable_devices()[0];
    let a = client
        .buffer_from_host(&HostTensor::from_f32([2, 3], &A).unwrap(), device)
        .unwrap();
    let b = client
        .buffer_from_host(&HostTensor::from_f32([3, 2], &B).unwrap(), device)
        .unwrap();
    let c = client
        .buffer_from_host(&HostTensor::from_f32([2, 2], &C).unwrap(), device)
        .unwrap();
    let out = exe.execute(&[vec![&a, &b, &c]]).unwrap();
    out[0]
        .iter()
        .map(|b| b.to_host().unwrap().to_f32_vec())
        .collect()
}

#[test]
fn serialized_executable_runs_the_same() {
    let client = cpu_client(1);
    let t0 = Instant::now();
    let exe = client
        .compile(ADD_DOT, &CompileOptions::single_device())
        .unwrap();
    let compile = t0.elapsed();
    let bytes = exe.serialize().unwrap();
    assert!(!bytes.is_empty());

    let t1 = Instant::now();
    let loaded = client.deserialize_executable(&bytes).unwrap();
    let load = t1.elapsed();
    eprintln!(
        "serialized {} bytes; compile {compile:?}, deserialize {load:?}",
        bytes.len()
    );
    assert_eq!(loaded.num_outputs(), exe.num_outputs());
    assert_eq!(loaded.addressable_devices(), exe.addressable_devices());
    assert_eq!(loaded.fingerprint().unwrap(), exe.fingerprint().unwrap());

    let (sum, sq) = add_dot_expected();
    let original = run(&client, &exe);
    let restored = run(&client, &loaded);
    assert_close(&original[0], &sum, 1e-6);
    assert_close(&original[1], &sq, 1e-6);
    assert_eq!(original, restored);

    // A fresh client (as in a later process reading the cache) loads it too.
    drop((exe, loaded));
    let fresh = cpu_client(1);
    let reloaded = fresh.deserialize_executable(&bytes).unwrap();
    assert_eq!(run(&fresh, &reloaded), original);
}

#[test]
fn garbage_bytes_are_an_error() {
    let client = cpu_client(1);
    let err = client
        .deserialize_executable(b"definitely not an executable")
        .unwrap_err();
    eprintln!("garbage: {err}");
    assert!(
        matches!(
            err,
            PjrtError::Plugin {
                call: "PJRT_Executable_DeserializeAndLoad",
                ..
            }
        ),
        "{err:?}"
    );
}
