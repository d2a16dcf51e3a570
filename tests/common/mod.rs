//! Shared by the integration tests: a client on the CPU plugin (found, or fetched as a user's
//! first run would), and graph -> executable helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use vidlower_backends::{emit_module, EmitOptions};
use vidlower_ir::{Graph, TensorType};
use vidlower_runtime::pjrt::{Client, CompileOptions, NamedValue, Plugin};
use vidlower_runtime::plugin::{self, PluginKind, PluginSpec};
use vidlower_runtime::program::{ParamKind, Program, Signature};
use vidlower_runtime::tensor::HostTensor;

/// A CPU client with `devices` virtual devices.
pub fn cpu_client(devices: u32) -> Client {
    let c = plugin::resolve_or_install(&PluginSpec::Kind(PluginKind::Cpu)).expect("a CPU PJRT plugin");
    let p = Plugin::load(&c.path).expect("the CPU plugin loads");
    let opts = [("cpu_device_count".to_string(), NamedValue::Int64(devices as i64))];
    Client::new(&p, &opts).expect("a CPU client")
}

/// The StableHLO of `graph` after `passes` (names from the registry).
pub fn lower(graph: Graph, passes: &[&str]) -> (Graph, String) {
    let run = vidlower_passes::PassManager::from_names(passes).unwrap().run(graph).unwrap();
    let module = emit_module(&run.graph, &EmitOptions::default()).unwrap();
    (run.graph, module)
}

/// Compiles `graph` (after `passes`) and binds weights from `weights`.
pub fn program(client: &Client, graph: Graph, passes: &[&str], weights: &HashMap<String, HostTensor>) -> Program {
    let (graph, module) = lower(graph, passes);
    let exe = client.compile(&module, &CompileOptions::single_device()).unwrap_or_else(|e| panic!("{e}\n{module}"));
    let mut p = Program::new(exe, Signature::of(&graph), client).unwrap();
    p.upload_weights(&mut |name, _| weights.get(name).cloned()).unwrap();
    p
}

/// Seeded uniform values for every param of `graph`: (weights, inputs).
pub fn random_params(graph: &Graph, seed: u64) -> (HashMap<String, HostTensor>, HashMap<String, HostTensor>) {
    let (mut w, mut x) = (HashMap::new(), HashMap::new());
    for (name, kind, ty) in Signature::of(graph).params {
        let v = vidlower_frontends::random_weights::random_weight(seed, &name, &ty);
        let t = HostTensor::from_f32(ty.shape.clone(), &v).unwrap().convert(ty.dtype);
        match kind {
            ParamKind::Weight => w.insert(name, t),
            ParamKind::Input => x.insert(name, t),
        };
    }
    (w, x)
}

/// Max |a - b| / (1 + |b|) over all elements: relative for large values, absolute near 0.
pub fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| if x.is_nan() && y.is_nan() { 0.0 } else { (x - y).abs() / (1.0 + y.abs()) }).fold(0.0, f64::max)
}

pub fn ty_of(t: &HostTensor) -> TensorType {
    TensorType::new(t.dtype, t.dims.clone())
}

/// A parsed JSON value, for reading golden-file metadata (the test crate has no serde_json).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Reads and parses `path`; panics naming the file on failure.
    pub fn read(path: &std::path::Path) -> Json {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut p = JsonParser { s: text.as_bytes(), i: 0 };
        p.value().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The member `key` of an object; panics when absent.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(members) => &members.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no key `{key}`")).1,
            _ => panic!("`{key}` looked up in a non-object"),
        }
    }

    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    pub fn num(&self) -> f64 {
        match self {
            Json::Num(n) => *n,
            other => panic!("expected a number, got {other:?}"),
        }
    }

    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }

    /// An array of integers.
    pub fn i64s(&self) -> Vec<i64> {
        self.arr().iter().map(|v| v.num() as i64).collect()
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        let rest = &self.s[self.i..];
        for (word, v) in [(&b"null"[..], Json::Null), (b"true", Json::Bool(true)), (b"false", Json::Bool(false))] {
            if rest.starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        match rest.first() {
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    } else {
                        self.eat(b']')?;
                        return Ok(Json::Arr(items));
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    members.push((k, self.value()?));
                    self.ws();
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    } else {
                        self.eat(b'}')?;
                        return Ok(Json::Obj(members));
                    }
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                text.parse().map(Json::Num).map_err(|_| format!("bad value at byte {start}"))
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out: Vec<u16> = Vec::new();
        let mut bytes = Vec::new();
        let flush = |bytes: &mut Vec<u8>, out: &mut Vec<u16>| {
            out.extend(String::from_utf8(std::mem::take(bytes)).unwrap().encode_utf16());
        };
        loop {
            let c = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    flush(&mut bytes, &mut out);
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    match e {
                        b'u' => {
                            let hex = std::str::from_utf8(&self.s[self.i..self.i + 4]).map_err(|e| e.to_string())?;
                            out.push(u16::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                            self.i += 4;
                        }
                        b'n' => out.push(b'\n' as u16),
                        b't' => out.push(b'\t' as u16),
                        b'r' => out.push(b'\r' as u16),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        other => out.push(other as u16),
                    }
                }
                c => bytes.push(c),
            }
        }
        flush(&mut bytes, &mut out);
        String::from_utf16(&out).map_err(|e| e.to_string())
    }
}
