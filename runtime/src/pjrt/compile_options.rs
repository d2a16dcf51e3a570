//! `xla.CompileOptionsProto`, encoded by hand: the few fields vidlower sets, no protoc.
//!
//! Field numbers are from openxla/xla `xla/pjrt/proto/compile_options.proto`
//! (CompileOptionsProto, ExecutableBuildOptionsProto) and `xla/xla_data.proto`
//! (DeviceAssignmentProto). An empty proto must never be sent: its `num_replicas = 0` trips a
//! CHECK inside XLA and aborts the process, so replicas and partitions are always written.

/// What vidlower decides at compile time. Everything else keeps XLA's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// SPMD partitions (= devices the executable runs on, one replica each). Must match the
    /// module's `mhlo.num_partitions` when that is set.
    pub num_partitions: u32,
    /// Partition the program from its sharding annotations (GSPMD or Shardy) rather than MPMD.
    pub use_spmd_partitioning: bool,
    /// Use Shardy (`sdy` dialect annotations) instead of GSPMD `mhlo.sharding` strings.
    pub use_shardy_partitioner: bool,
    /// Device id for each partition. `None` lets the client pick its default assignment
    /// (devices 0..N), which is what the CPU plugin needs; set it to pin partitions to devices.
    pub device_assignment: Option<Vec<i64>>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            num_partitions: 1,
            use_spmd_partitioning: false,
            use_shardy_partitioner: false,
            device_assignment: None,
        }
    }
}

// CompileOptionsProto
const COMPILE_EXECUTABLE_BUILD_OPTIONS: u32 = 3;
// ExecutableBuildOptionsProto
const BUILD_DEVICE_ORDINAL: u32 = 1;
const BUILD_NUM_REPLICAS: u32 = 4;
const BUILD_NUM_PARTITIONS: u32 = 5;
const BUILD_USE_SPMD_PARTITIONING: u32 = 6;
const BUILD_DEVICE_ASSIGNMENT: u32 = 9;
const BUILD_USE_SHARDY_PARTITIONER: u32 = 19;
// DeviceAssignmentProto
const ASSIGNMENT_REPLICA_COUNT: u32 = 1;
const ASSIGNMENT_COMPUTATION_COUNT: u32 = 2;
const ASSIGNMENT_COMPUTATION_DEVICES: u32 = 3;
// DeviceAssignmentProto.ComputationDevice
const COMPUTATION_REPLICA_DEVICE_IDS: u32 = 1;

impl CompileOptions {
    /// One device, no partitioning: what every single-device stage uses.
    pub fn single_device() -> Self {
        Self::default()
    }

    /// `num_partitions`-way SPMD with GSPMD (`mhlo.sharding`) annotations.
    pub fn spmd(num_partitions: u32) -> Self {
        CompileOptions {
            num_partitions,
            use_spmd_partitioning: true,
            ..Self::default()
        }
    }

    /// `num_partitions`-way SPMD with Shardy (`sdy.sharding`) annotations.
    pub fn shardy(num_partitions: u32) -> Self {
        CompileOptions {
            use_shardy_partitioner: true,
            ..Self::spmd(num_partitions)
        }
    }

    /// What a module emitted from `graph` in `format` needs: one device without a mesh, else
    /// SPMD over the mesh's devices with the partitioner that reads `format`'s annotations.
    pub fn for_graph(graph: &vidlower_ir::Graph, format: vidlower_backends::ShardingFormat) -> Self {
        match (&graph.mesh, format) {
            (None, _) => Self::single_device(),
            (Some(mesh), vidlower_backends::ShardingFormat::Shardy) => Self::shardy(mesh.device_count()),
            (Some(mesh), vidlower_backends::ShardingFormat::Gspmd) => Self::spmd(mesh.device_count()),
        }
    }

    /// The serialized `CompileOptionsProto` handed to `PJRT_Client_Compile`.
    pub fn to_proto_bytes(&self) -> Vec<u8> {
        let mut build = ProtoWriter::default();
        // -1 is "no device ordinal", the C++ default; 0 would pin the build to device 0.
        build.int64(BUILD_DEVICE_ORDINAL, -1);
        build.int64(BUILD_NUM_REPLICAS, 1);
        build.int64(BUILD_NUM_PARTITIONS, i64::from(self.num_partitions));
        if self.use_spmd_partitioning {
            build.bool(BUILD_USE_SPMD_PARTITIONING, true);
        }
        if let Some(devices) = &self.device_assignment {
            let mut assignment = ProtoWriter::default();
            assignment.int64(ASSIGNMENT_REPLICA_COUNT, 1);
            assignment.int64(ASSIGNMENT_COMPUTATION_COUNT, devices.len() as i64);
            for &device in devices {
                // One computation (partition) per entry, each with its single replica's device.
                let mut computation = ProtoWriter::default();
                computation.packed_int64(COMPUTATION_REPLICA_DEVICE_IDS, &[device]);
                assignment.message(ASSIGNMENT_COMPUTATION_DEVICES, &computation.bytes);
            }
            build.message(BUILD_DEVICE_ASSIGNMENT, &assignment.bytes);
        }
        if self.use_shardy_partitioner {
            build.bool(BUILD_USE_SHARDY_PARTITIONER, true);
        }
        let mut options = ProtoWriter::default();
        options.message(COMPILE_EXECUTABLE_BUILD_OPTIONS, &build.bytes);
        options.bytes
    }
}

/// Just enough of the protobuf wire format: varints and length-delimited fields.
#[derive(Default)]
struct ProtoWriter {
    bytes: Vec<u8>,
}

const WIRE_VARINT: u32 = 0;
const WIRE_LEN: u32 = 2;

impl ProtoWriter {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from(field << 3 | wire_type));
    }

    /// `int64`/`int32` fields: negative values are sign-extended to 10 bytes, as protobuf does.
    fn int64(&mut self, field: u32, v: i64) {
        self.tag(field, WIRE_VARINT);
        self.varint(v as u64);
    }

    fn bool(&mut self, field: u32, v: bool) {
        self.tag(field, WIRE_VARINT);
        self.varint(u64::from(v));
    }

    fn message(&mut self, field: u32, body: &[u8]) {
        self.tag(field, WIRE_LEN);
        self.varint(body.len() as u64);
        self.bytes.extend_from_slice(body);
    }

    /// A `repeated int64` in the packed encoding, proto3's default.
    fn packed_int64(&mut self, field: u32, values: &[i64]) {
        let mut body = ProtoWriter::default();
        for &v in values {
            body.varint(v as u64);
        }
        self.message(field, &body.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `device_ordinal = -1`: tag 0x08, then -1 as a 10-byte varint.
    const ORDINAL: [u8; 11] = [
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];

    fn expected(build_tail: &[u8]) -> Vec<u8> {
        let mut build = ORDINAL.to_vec();
        build.extend_from_slice(build_tail);
        let mut out = vec![0x1a, build.len() as u8];
        out.extend(build);
        out
    }

    #[test]
    fn single_device_bytes() {
        let bytes = CompileOptions::single_device().to_proto_bytes();
        // num_replicas (field 4) = 1, num_partitions (field 5) = 1.
        assert_eq!(bytes, expected(&[0x20, 0x01, 0x28, 0x01]));
        assert_eq!(bytes.len(), 17);
    }

    #[test]
    fn spmd_bytes() {
        let bytes = CompileOptions::spmd(4).to_proto_bytes();
        // ... num_partitions = 4, use_spmd_partitioning (field 6) = true.
        assert_eq!(bytes, expected(&[0x20, 0x01, 0x28, 0x04, 0x30, 0x01]));
    }

    #[test]
    fn shardy_bytes() {
        let bytes = CompileOptions::shardy(2).to_proto_bytes();
        // use_shardy_partitioner is field 19: tag (19 << 3) = 152 = varint 0x98 0x01.
        assert_eq!(
            bytes,
            expected(&[0x20, 0x01, 0x28, 0x02, 0x30, 0x01, 0x98, 0x01, 0x01])
        );
    }

    #[test]
    fn device_assignment_bytes() {
        let options = CompileOptions {
            device_assignment: Some(vec![0, 1]),
            ..CompileOptions::spmd(2)
        };
        let bytes = options.to_proto_bytes();
        #[rustfmt::skip]
        let assignment = [
            0x4a, 14,               // device_assignment (field 9), 14 bytes
            0x08, 0x01,             //   replica_count = 1
            0x10, 0x02,             //   computation_count = 2
            0x1a, 3, 0x0a, 1, 0x00, //   computation_devices { replica_device_ids: [0] }
            0x1a, 3, 0x0a, 1, 0x01, //   computation_devices { replica_device_ids: [1] }
        ];
        let mut tail = vec![0x20, 0x01, 0x28, 0x02, 0x30, 0x01];
        tail.extend_from_slice(&assignment);
        assert_eq!(bytes, expected(&tail));
    }

    #[test]
    fn options_for_a_graph_follow_its_mesh_and_the_format() {
        use vidlower_backends::ShardingFormat;
        let mut g = vidlower_ir::Graph::new("g");
        assert_eq!(CompileOptions::for_graph(&g, ShardingFormat::Shardy), CompileOptions::single_device());
        g.mesh = Some(vidlower_ir::Mesh::parse("dp=2,tp=4").unwrap());
        assert_eq!(CompileOptions::for_graph(&g, ShardingFormat::Shardy), CompileOptions::shardy(8));
        assert_eq!(CompileOptions::for_graph(&g, ShardingFormat::Gspmd), CompileOptions::spmd(8));
    }

    #[test]
    fn varints_match_the_protobuf_spec() {
        let mut w = ProtoWriter::default();
        w.varint(300);
        assert_eq!(w.bytes, [0xac, 0x02]);
        let mut w = ProtoWriter::default();
        w.int64(1, 150);
        assert_eq!(w.bytes, [0x08, 0x96, 0x01]);
    }
}
