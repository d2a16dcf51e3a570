//! Every PJRT object the binding creates is destroyed: compiling and executing in a loop keeps
//! the resident set flat. Its own test binary, so no other test allocates meanwhile.

#[path = "common/pjrt.rs"]
mod common;

use common::*;
use vidlower_runtime::pjrt::CompileOptions;
use vidlower_runtime::tensor::HostTensor;

const WARM_UP: usize = 20;
const ITERATIONS: usize = 200;
// Measured growth is 2-3 MB on both CPU plugins; leaking every executable adds ~35 MB, every buffer ~40 MB.
const MAX_GROWTH: u64 = 15 << 20;

#[test]
fn compile_execute_loop_does_not_leak() {
    let client = cpu_client(1);
    let device = client.addressable_devices().unwrap()[0].clone();
    // Large enough inputs that leaked buffers would show (each iteration moves ~3 MB).
    let big = HostTensor::from_f32([256, 1024], &vec![0.5; 256 * 1024]).unwrap();
    let big_module = "func.func public @main(%x: tensor<256x1024xf32>) -> tensor<256x1024xf32> {\n\
                      %0 = stablehlo.multiply %x, %x : tensor<256x1024xf32>\n\
                      return %0 : tensor<256x1024xf32>\n}";
    let mut baseline = 0;
    for i in 0..ITERATIONS {
        if i == WARM_UP {
            baseline = rss_bytes();
        }
        let exe = client.compile(ADD_DOT, &CompileOptions::default()).unwrap();
        let a = client
            .buffer_from_host(&HostTensor::from_f32([2, 3], &A).unwrap(), &device)
            .unwrap();
        let b = client
            .buffer_from_host(&HostTensor::from_f32([3, 2], &B).unwrap(), &device)
            .unwrap();
        let c = client
            .buffer_from_host(&HostTensor::from_f32([2, 2], &C).unwrap(), &device)
            .unwrap();
        let out = exe.execute(&[vec![&a, &b, &c]]).unwrap();
        assert_eq!(
            out[0][0].to_host().unwrap().to_f32_vec(),
            add_dot_expected().0
        );

        // Errors are objects too, and so are serialized executables and big buffers.
        assert!(client
            .compile("not mlir", &CompileOptions::default())
            .is_err());
        if i % 10 == 0 {
            let _ = client
                .deserialize_executable(&exe.serialize().unwrap())
                .unwrap();
            let exe = client
                .compile(big_module, &CompileOptions::default())
                .unwrap();
            let x = client.buffer_from_host(&big, &device).unwrap();
            let _ = exe.execute(&[vec![&x]]).unwrap()[0][0].to_host().unwrap();
        }
    }
    let end = rss_bytes();
    let growth = end.saturating_sub(baseline);
    eprintln!(
        "RSS after warm-up {:.1} MB, after {ITERATIONS} iterations {:.1} MB (growth {:.1} MB)",
        baseline as f64 / 1e6,
        end as f64 / 1e6,
        growth as f64 / 1e6
    );
    assert!(
        growth < MAX_GROWTH,
        "RSS grew by {growth} bytes over {} iterations",
        ITERATIONS - WARM_UP
    );
}
