//! `vidlower bench --upload`: how fast a component's weights reach the device, against how fast
//! the same files read from the page cache. Reports a plain read of the files, the
//! one-weight-at-a-time upload vidlower used before, and the fast upload (mapped bytes, parallel
//! conversion, transfers in flight), in GB/s of stored bytes, as medians of `--repeats`, with
//! their ratios. `--random-weights DTYPE` first writes deterministic random weights for the
//! component's graph (a model dir holding only configs will do) and removes them afterwards.
//! With `--lora`, the fast upload merges the LoRAs and is timed again without them, in the same
//! run: what the merge adds to a warm start.

use crate::args::ModelSelection;
use crate::session::Session;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vidlower_frontends::family::{Component, Sizes};
use vidlower_frontends::random_weights::random_weight;
use vidlower_ir::{DType, TensorType};
use vidlower_runtime::float_convert::convert_floats;
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::timing::format_duration;
use vidlower_runtime::weight_upload::{upload_from_store, upload_one_at_a_time, UploadOptions, WeightParam};
use vidlower_runtime::lora::LoraSpec;
use vidlower_runtime::weights::WeightStore;

/// `lora`: `--lora` given with `--random-weights`, attached once the weights exist (it is checked
/// against them); a LoRA attached by the caller otherwise is used as is.
pub fn run(m: &mut ModelSelection, random: Option<DType>, lora: &[LoraSpec], repeats: u32, session: &Session) -> Result<()> {
    let c = m.single("bench --upload")?;
    let folder = m.model.dir().join(c.component().folder());
    // Written here when asked, removed when done (also on error).
    let sizes = m.sizes(c)?;
    let written = match random {
        Some(dtype) => Some(RandomWeights::write(m, c.component(), &sizes, dtype, &folder)?),
        None => None,
    };
    if !lora.is_empty() {
        m.model.set_lora(lora)?;
    }
    let store = m.weights(c)?;
    let dtype = m.dtype(&store);
    let mut weights: BTreeMap<String, TensorType> = BTreeMap::new();
    for g in m.model.graphs(c.component(), &sizes, dtype)? {
        for (name, ty) in g.graph.weights() {
            weights.insert(name.to_string(), ty.clone());
        }
    }
    let params: Vec<WeightParam> = weights.iter().map(|(name, ty)| WeightParam { name, ty, sharding: None }).collect();
    let files: Vec<&Path> = store.files().collect();
    let file_bytes: u64 = files.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let stored: u64 = params.iter().map(|p| stored_bytes(&store, p.name, p.ty)).sum();
    let device_bytes: u64 = params.iter().map(|p| p.ty.num_elements() as u64 * p.ty.dtype.size_in_bytes() as u64).sum();
    println!("plugin: {}", session.describe_plugin());
    println!(
        "{}: {} weights, stored {} ({}), uploaded as {dtype} ({}); {} file(s), {}",
        c.name(),
        params.len(),
        gb(stored),
        store.stored_dtype().map_or("?".into(), |d| d.to_string()),
        gb(device_bytes),
        files.len(),
        gb(file_bytes)
    );
    // The same weights without the LoRAs, to time the fast upload without merging.
    let unmerged = match store.lora() {
        Some(lora) => {
            println!("lora: {}", lora.describe());
            Some(WeightStore::open(&folder)?)
        }
        None => None,
    };
    let device = session.client.addressable_devices()?.into_iter().next().context("the client has no devices")?;
    // Warm the page cache once, as a process starting on a cached checkpoint finds it.
    read_files(&files)?;
    let mut read = Vec::new();
    let mut old = Vec::new();
    let mut new = Vec::new();
    let mut without_lora = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        read_files(&files)?;
        read.push(start.elapsed());
        let start = Instant::now();
        let buffers = upload_one_at_a_time(&store, &params, &session.client, &device)?;
        old.push(start.elapsed());
        drop(buffers);
        let start = Instant::now();
        let buffers = upload_from_store(&store, &params, std::slice::from_ref(&device), &UploadOptions::default())?;
        new.push(start.elapsed());
        drop(buffers);
        if let Some(unmerged) = &unmerged {
            let start = Instant::now();
            let buffers = upload_from_store(unmerged, &params, std::slice::from_ref(&device), &UploadOptions::default())?;
            without_lora.push(start.elapsed());
            drop(buffers);
        }
    }
    let (read, old, new) = (median(read), median(old), median(new));
    let rate = |d: Duration, bytes: u64| bytes as f64 / d.as_secs_f64() / 1e9;
    println!("plain read     {:>10}  {:6.2} GB/s  (the files from the page cache)", format_duration(read), rate(read, file_bytes));
    println!("old upload     {:>10}  {:6.2} GB/s  {:5.2}x the plain read", format_duration(old), rate(old, stored), ratio(old, read));
    println!("fast upload    {:>10}  {:6.2} GB/s  {:5.2}x the plain read, {:.2}x faster than the old", format_duration(new), rate(new, stored), ratio(new, read), ratio(old, new));
    if !without_lora.is_empty() {
        let plain = median(without_lora);
        println!(
            "without LoRA   {:>10}  {:6.2} GB/s  the merge adds {} ({:.2}x the upload without it)",
            format_duration(plain),
            rate(plain, stored),
            format_duration(new.saturating_sub(plain)),
            ratio(new, plain)
        );
    }
    println!("(medians of {repeats}; GB/s of stored bytes)");
    drop(store);
    drop(written);
    Ok(())
}

fn stored_bytes(store: &WeightStore, name: &str, ty: &TensorType) -> u64 {
    let d = store.dtype_of(name).unwrap_or(ty.dtype);
    ty.num_elements() as u64 * d.size_in_bytes() as u64
}

fn read_files(files: &[&Path]) -> Result<()> {
    for p in files {
        let bytes = std::fs::read(p).with_context(|| p.display().to_string())?;
        std::hint::black_box(&bytes);
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// A random-weights file written for the benchmark, deleted on drop.
struct RandomWeights(std::path::PathBuf);

impl RandomWeights {
    fn write(m: &ModelSelection, c: Component, sizes: &Sizes, dtype: DType, folder: &Path) -> Result<Self> {
        let path = folder.join("bench-upload-random.safetensors");
        if std::fs::read_dir(folder).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "safetensors")))) {
            anyhow::bail!("--random-weights: {} already holds safetensors files; give a model dir with configs only", folder.display());
        }
        let mut weights: BTreeMap<String, TensorType> = BTreeMap::new();
        for g in m.model.graphs(c, sizes, DType::F32)? {
            for (name, ty) in g.graph.weights() {
                weights.insert(name.to_string(), ty.with_dtype(dtype));
            }
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let tensors: Vec<(String, HostTensor)> = weights
            .into_iter()
            .map(|(name, ty)| {
                let values: Vec<u8> = random_weight(0, &name, &ty).iter().flat_map(|v| v.to_ne_bytes()).collect();
                let data = convert_floats(&values, DType::F32, dtype, threads);
                Ok((name, HostTensor::new(dtype, ty.shape.clone(), data)?))
            })
            .collect::<Result<_>>()?;
        let file = RandomWeights(path);
        vidlower_runtime::safetensors_io::save(&file.0, &tensors)?;
        Ok(file)
    }
}

impl Drop for RandomWeights {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
