//! The PJRT binding end to end on a real plugin: load, client, devices, compile, execute,
//! transfers of every dtype, and errors that come back as values instead of aborts.

#[path = "common/pjrt.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use vidlower_runtime::ir::DType;
use vidlower_runtime::pjrt::{CompileOptions, ErrorCode, PjrtError, Plugin, BINDING_API_VERSION};
use vidlower_runtime::tensor::HostTensor;

#[test]
fn plugin_loads_once_and_speaks_major_zero() {
    let plugin = plugin();
    let (major, minor) = plugin.api_version();
    assert_eq!(major, 0);
    assert!(
        minor >= BINDING_API_VERSION.1,
        "plugin minor {minor} older than the binding's"
    );
    assert!(
        Arc::ptr_eq(&plugin, &common::plugin()),
        "a second load returns the same plugin"
    );
    eprintln!("{}: PJRT C API {major}.{minor}", plugin.path().display());
    for (name, value) in plugin.attributes() {
        eprintln!("  attribute {name} = {value}");
    }
}

#[test]
fn load_errors_name_the_path() {
    let err = Plugin::load("/nonexistent/libnot_a_plugin.so").unwrap_err();
    assert!(matches!(err, PjrtError::Load { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/libnot_a_plugin.so"),
        "{err}"
    );

    // A real shared library without `GetPjrtApi`.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    if let Some(libm) = libm {
        let err = Plugin::load(libm).unwrap_err();
        assert!(matches!(err, PjrtError::NoEntryPoint { .. }), "{err:?}");
        assert!(err.to_string().contains("libm"), "{err}");
    }
}

#[test]
fn client_reports_platform_and_devices() {
    let client = cpu_client(1);
    assert_eq!(client.platform_name().unwrap(), "cpu");
    let version = client.platform_version().unwrap();
    let devices = client.devices().unwrap();
    let addressable = client.addressable_devices().unwrap();
    eprintln!("platform cpu, version {version:?}, devices {devices:?}");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices, addressable);
    assert!(devices[0].is_addressable());
    assert!(!devices[0].kind().is_empty());
}

#[test]
fn cpu_device_count_gives_virtual_devices() {
    let client = cpu_client(4);
    let devices = client.addressable_devices().unwrap();
    let mut ids: Vec<i32> = devices.iter().map(|d| d.id()).collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 3]);
}

#[test]
fn compiles_and_executes_add_and_dot_general() {
    let client = cpu_client(1);
    let device = &client.addressable_devices().unwrap()[0];
    let t0 = Instant::now();
    let exe = client
        .compile(ADD_DOT, &CompileOptions::single_device())
        .unwrap();
    let compile = t0.elapsed();
    assert_eq!(exe.num_outputs(), 2);
    assert_eq!(exe.addressable_devices(), std::slice::from_ref(device));
    assert_eq!(exe.num_partitions().unwrap(), 1);

    let a = client
        .buffer_from_host(&HostTensor::from_f32([2, 3], &A).unwrap(), device)
        .unwrap();
    let b = client
        .buffer_from_host(&HostTensor::from_f32([3, 2], &B).unwrap(), device)
        .unwrap();
    let c = client
        .buffer_from_host(&HostTensor::from_f32([2, 2], &C).unwrap(), device)
        .unwrap();
    assert_eq!((a.dtype(), a.dims()), (DType::F32, &[2i64, 3][..]));
    assert_eq!(a.device().unwrap(), *device);

    let mut outputs = exe.execute(&[vec![&a, &b, &c]]).unwrap();
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        outputs = exe.execute(&[vec![&a, &b, &c]]).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "add_dot: compile {compile:?}, execute median {:?} (min {:?})",
        times[10], times[0]
    );

    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].dims(), &[2, 2]);
    assert_eq!(out[1].dims(), &[2, 3]);
    let (sum, sq) = add_dot_expected();
    assert_close(&out[0].to_host().unwrap().to_f32_vec(), &sum, 1e-6);
    assert_close(&out[1].to_host().unwrap().to_f32_vec(), &sq, 1e-6);
    // Inputs are borrowed, not donated: still readable after executing.
    assert_eq!(a.to_host().unwrap().to_f32_vec(), A);
}

#[test]
fn generic_form_compiles() {
    let generic = r#"
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<3xf32>) -> tensor<3xf32>, sym_name = "main", sym_visibility = "public"}> ({
  ^bb0(%arg0: tensor<3xf32>):
    %0 = "stablehlo.add"(%arg0, %arg0) : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
    "func.return"(%0) : (tensor<3xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let client = cpu_client(1);
    let device = &client.addressable_devices().unwrap()[0];
    let exe = client.compile(generic, &CompileOptions::default()).unwrap();
    let x = client
        .buffer_from_host(
            &HostTensor::from_f32([3], &[1.0, -2.0, 0.5]).unwrap(),
            device,
        )
        .unwrap();
    let out = exe.execute(&[vec![&x]]).unwrap();
    assert_eq!(
        out[0][0].to_host().unwrap().to_f32_vec(),
        vec![2.0, -4.0, 1.0]
    );
}

/// One tensor per dtype with values that survive the dtype exactly.
fn sample(dtype: DType) -> HostTensor {
    use half::{bf16, f16};
    let v = [0.0f32, 1.0, -2.0, 3.5, 100.0, -0.25];
    let dims = [2i64, 3];
    match dtype {
        DType::F32 => HostTensor::from_slice(dims, &v),
        DType::F64 => HostTensor::from_slice(dims, &v.map(f64::from)),
        DType::BF16 => HostTensor::from_slice(dims, &v.map(bf16::from_f32)),
        DType::F16 => HostTensor::from_slice(dims, &v.map(f16::from_f32)),
        DType::I1 => HostTensor::from_slice(dims, &[true, false, false, true, true, false]),
        DType::I8 => HostTensor::from_slice(dims, &[0i8, 1, -2, 3, 100, -128]),
        DType::U8 => HostTensor::from_slice(dims, &[0u8, 1, 2, 3, 100, 255]),
        DType::I32 => HostTensor::from_slice(dims, &[0i32, 1, -2, 3, 100, i32::MIN]),
        DType::I64 => HostTensor::from_slice(dims, &[0i64, 1, -2, 3, 100, -(1 << 40)]),
    }
    .unwrap()
}

#[test]
fn every_dtype_round_trips_and_matches_its_mlir_type() {
    let client = cpu_client(1);
    let device = &client.addressable_devices().unwrap()[0];
    for dtype in DType::ALL {
        let host = sample(dtype);
        let buffer = client.buffer_from_host(&host, device).unwrap();
        assert_eq!(
            (buffer.dtype(), buffer.dims()),
            (dtype, &host.dims[..]),
            "{dtype}"
        );
        assert_eq!(
            buffer.to_host().unwrap(),
            host,
            "{dtype}: host -> device -> host"
        );

        // Through a program too: the buffer must be what the MLIR type says, and converting
        // it on the device must agree with converting it on the host.
        let t = format!("tensor<2x3x{}>", dtype.mlir_name());
        let module = format!(
            "func.func public @main(%x: {t}) -> ({t}, tensor<2x3xf32>) {{\n\
             %0 = stablehlo.convert %x : ({t}) -> tensor<2x3xf32>\n\
             return %x, %0 : {t}, tensor<2x3xf32>\n}}"
        );
        let exe = client
            .compile(&module, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{dtype}: {e}"));
        let out = exe.execute(&[vec![&buffer]]).unwrap();
        assert_eq!(out[0][0].to_host().unwrap(), host, "{dtype}: identity");
        assert_eq!(
            out[0][1].to_host().unwrap().to_f32_vec(),
            host.to_f32_vec(),
            "{dtype}: convert"
        );
    }
}

#[test]
fn scalars_and_empty_tensors_transfer() {
    let client = cpu_client(1);
    let device = &client.addressable_devices().unwrap()[0];
    for host in [
        HostTensor::scalar(2.5f32),
        HostTensor::zeros(DType::BF16, [0, 4]).unwrap(),
    ] {
        let buffer = client.buffer_from_host(&host, device).unwrap();
        assert_eq!(buffer.to_host().unwrap(), host);
    }
}

#[test]
fn invalid_mlir_is_an_error_with_the_plugins_message() {
    let client = cpu_client(1);
    let err = client
        .compile(
            "func.func @main( this is not mlir",
            &CompileOptions::default(),
        )
        .unwrap_err();
    eprintln!("invalid MLIR: {err}");
    match &err {
        PjrtError::Plugin { call, message, .. } => {
            assert_eq!(*call, "PJRT_Client_Compile");
            assert!(!message.is_empty());
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
    // Well-formed MLIR that is not valid StableHLO (operand types disagree).
    let bad = "func.func public @main(%x: tensor<2xf32>, %y: tensor<3xf32>) -> tensor<2xf32> {\n\
               %0 = stablehlo.add %x, %y : (tensor<2xf32>, tensor<3xf32>) -> tensor<2xf32>\n\
               return %0 : tensor<2xf32>\n}";
    let err = client.compile(bad, &CompileOptions::default()).unwrap_err();
    eprintln!("ill-typed StableHLO: {err}");
    assert!(err.code().is_some(), "{err:?}");
    // The client is still usable afterwards.
    client.compile(ADD_DOT, &CompileOptions::default()).unwrap();
}

#[test]
fn misuse_is_an_error_not_a_crash() {
    let client = cpu_client(1);
    let device = &client.addressable_devices().unwrap()[0];
    let exe = client.compile(ADD_DOT, &CompileOptions::default()).unwrap();
    let a = client
        .buffer_from_host(&HostTensor::from_f32([2, 3], &A).unwrap(), device)
        .unwrap();

    // Argument lists for two devices on a one-device executable: caught before the plugin.
    let err = exe.execute(&[vec![&a], vec![&a]]).unwrap_err();
    assert!(matches!(err, PjrtError::Usage(_)), "{err:?}");

    // Too few arguments and the wrong dtype/shape: the plugin's to reject.
    let err = exe.execute(&[vec![&a]]).unwrap_err();
    eprintln!("too few arguments: {err}");
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument), "{err:?}");
    let wrong = client
        .buffer_from_host(&HostTensor::from_f64([3, 2], &[0.0; 6]).unwrap(), device)
        .unwrap();
    let err = exe.execute(&[vec![&a, &wrong, &a]]).unwrap_err();
    eprintln!("wrong argument types: {err}");
    assert!(err.code().is_some(), "{err:?}");

    // A tensor whose bytes disagree with its shape never reaches the plugin.
    let broken = HostTensor {
        dtype: DType::F32,
        dims: vec![4],
        data: vec![0; 3],
    };
    let err = client.buffer_from_host(&broken, device).unwrap_err();
    assert!(matches!(err, PjrtError::Tensor(_)), "{err:?}");

    // Buffers and devices cannot cross clients.
    let other = cpu_client(1);
    let other_device = &other.addressable_devices().unwrap()[0];
    let err = client
        .buffer_from_host(&HostTensor::scalar(1.0f32), other_device)
        .unwrap_err();
    assert!(matches!(err, PjrtError::Usage(_)), "{err:?}");
    let foreign = other
        .buffer_from_host(&HostTensor::from_f32([2, 3], &A).unwrap(), other_device)
        .unwrap();
    let err = exe
        .execute(&[vec![&foreign, &foreign, &foreign]])
        .unwrap_err();
    assert!(matches!(err, PjrtError::Usage(_)), "{err:?}");
}

#[test]
fn fingerprint_is_stable_for_the_same_program() {
    let client = cpu_client(1);
    let first = client
        .compile(ADD_DOT, &CompileOptions::default())
        .unwrap()
        .fingerprint()
        .unwrap();
    let second = client
        .compile(ADD_DOT, &CompileOptions::default())
        .unwrap()
        .fingerprint()
        .unwrap();
    eprintln!("fingerprint: {first:?}");
    assert_eq!(first, second);
}
