//! Every input that changes the compiled code changes the cache key.

use std::collections::HashSet;

use vidlower_runtime::cache::CacheKey;

#[derive(Clone)]
struct Inputs {
    hlo: String,
    options: Vec<u8>,
    platform: String,
    version: String,
    api: (u32, u32),
    device_kind: String,
    devices: usize,
    xla_flags: String,
}

impl Inputs {
    fn key(&self) -> CacheKey {
        CacheKey::new(
            &self.hlo,
            &self.options,
            &self.platform,
            &self.version,
            self.api,
            &self.device_kind,
            self.devices,
            &self.xla_flags,
        )
    }
}

fn base() -> Inputs {
    Inputs {
        hlo: "func.func @main(%a: tensor<2xf32>) -> tensor<2xf32> { return %a : tensor<2xf32> }"
            .into(),
        options: vec![0x0a, 0x02, 0x08, 0x01],
        platform: "cpu".into(),
        version: "xla 0.81".into(),
        api: (0, 81),
        device_kind: "cpu".into(),
        devices: 1,
        xla_flags: String::new(),
    }
}

#[test]
fn key_is_deterministic_64_hex() {
    let key = base().key();
    assert_eq!(key, base().key());
    assert_eq!(key.as_str().len(), 64);
    assert!(key
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(key.to_string(), key.as_str());
}

#[test]
fn each_field_changes_the_key() {
    let variants: Vec<(&str, Inputs)> = vec![
        ("base", base()),
        (
            "XLA_FLAGS",
            Inputs {
                xla_flags: "--xla_cpu_enable_fast_math=true".into(),
                ..base()
            },
        ),
        (
            "stablehlo text",
            Inputs {
                hlo: base().hlo.replace("f32", "f16"),
                ..base()
            },
        ),
        (
            "compile options",
            Inputs {
                options: vec![0x0a, 0x02, 0x08, 0x02],
                ..base()
            },
        ),
        (
            "platform name",
            Inputs {
                platform: "cuda".into(),
                ..base()
            },
        ),
        (
            "platform version",
            Inputs {
                version: "xla 0.115".into(),
                ..base()
            },
        ),
        (
            "api major",
            Inputs {
                api: (1, 81),
                ..base()
            },
        ),
        (
            "api minor",
            Inputs {
                api: (0, 82),
                ..base()
            },
        ),
        (
            "device kind",
            Inputs {
                device_kind: "NVIDIA H100 80GB HBM3".into(),
                ..base()
            },
        ),
        (
            "device count",
            Inputs {
                devices: 8,
                ..base()
            },
        ),
    ];
    let mut seen = HashSet::new();
    for (field, inputs) in &variants {
        assert!(
            seen.insert(inputs.key()),
            "changing the {field} did not change the key"
        );
    }
}

#[test]
fn fields_do_not_run_into_each_other() {
    // Without length prefixes these pairs would hash the same byte stream.
    let a = Inputs {
        platform: "cp".into(),
        version: "uxla".into(),
        ..base()
    };
    let b = Inputs {
        platform: "cpu".into(),
        version: "xla".into(),
        ..base()
    };
    assert_ne!(a.key(), b.key());
    let a = Inputs {
        hlo: "x".into(),
        options: vec![],
        ..base()
    };
    let b = Inputs {
        hlo: String::new(),
        options: b"x".to_vec(),
        ..base()
    };
    assert_ne!(a.key(), b.key());
    let a = Inputs {
        api: (0x0100, 0),
        ..base()
    };
    let b = Inputs {
        api: (0, 0x0100),
        ..base()
    };
    assert_ne!(a.key(), b.key());
}

#[test]
fn parse_accepts_keys_and_rejects_anything_else() {
    let key = base().key();
    assert_eq!(CacheKey::parse(key.as_str()), Some(key.clone()));
    assert_eq!(
        CacheKey::parse(&key.as_str().to_ascii_uppercase()),
        Some(key.clone())
    );
    assert_eq!(CacheKey::parse(&format!(" {key}\n")), Some(key.clone()));
    assert_eq!(CacheKey::parse(&key.as_str()[..63]), None);
    assert_eq!(CacheKey::parse(&format!("{key}0")), None);
    assert_eq!(CacheKey::parse(&"g".repeat(64)), None);
    assert_eq!(CacheKey::parse("../../etc/passwd"), None);
}
