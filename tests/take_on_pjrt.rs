//! `take` (gather) runs on the CPU plugin with the semantics infer.rs states: table dims before
//! the axis, then the index dims, then the table dims after it.

mod common;

use std::collections::HashMap;
use vidlower_ir::{Builder, DType, TensorType};
use vidlower_runtime::tensor::HostTensor;

#[test]
fn take_gathers_along_any_axis() {
    let client = common::cpu_client(1);
    let table: Vec<f32> = (0..24).map(|v| v as f32).collect(); // [2, 3, 4]
    for (axis, idx_shape, idx) in [(0usize, vec![3i64], vec![1i64, 0, 1]), (1, vec![2, 2], vec![2, 0, 1, 1]), (2, vec![1], vec![3])] {
        let mut b = Builder::new("take");
        let t = b.input("table", TensorType::new(DType::F32, vec![2, 3, 4])).unwrap();
        let i = b.input("idx", TensorType::new(DType::I64, idx_shape.clone())).unwrap();
        let y = b.take(t, i, axis).unwrap();
        b.output("y", y);
        let g = b.finish().unwrap();
        let want_shape = b_shape(&[2, 3, 4], &idx_shape, axis);
        let p = common::program(&client, g, &[], &HashMap::new());
        let inputs = HashMap::from([
            ("table".to_string(), HostTensor::from_f32(vec![2, 3, 4], &table).unwrap()),
            ("idx".to_string(), HostTensor::from_slice(idx_shape.clone(), &idx).unwrap()),
        ]);
        let out = p.run(&inputs).unwrap().remove(0).1;
        assert_eq!(out.dims, want_shape, "axis {axis}");
        // Reference: y[pre, j, post] = table[pre, idx[j], post].
        let (pre, post): (usize, usize) = ([2usize, 3, 4][..axis].iter().product(), [2usize, 3, 4][axis + 1..].iter().product());
        let n = [2usize, 3, 4][axis];
        let mut want = Vec::new();
        for a in 0..pre {
            for &j in &idx {
                for c in 0..post {
                    want.push(table[(a * n + j as usize) * post + c]);
                }
            }
        }
        assert_eq!(out.to_f32_vec(), want, "axis {axis}");
    }
}

fn b_shape(table: &[i64], idx: &[i64], axis: usize) -> Vec<i64> {
    let mut s = table[..axis].to_vec();
    s.extend(idx);
    s.extend(&table[axis + 1..]);
    s
}
