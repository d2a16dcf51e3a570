//! `vidlower models`: the families and presets vidlower knows, with their default shapes.

use anyhow::Result;
use vidlower_frontends::family::Defaults;
use vidlower_frontends::registry::{presets, FAMILIES};

fn shape(d: &Defaults) -> String {
    let shift = d.flow_shift.map(|s| format!(", flow_shift {s}")).unwrap_or_default();
    format!(
        "{}x{}, {} frames, {} steps, guidance {}, {} fps{shift}, {} text tokens",
        d.width, d.height, d.frames, d.steps, d.guidance_scale, d.fps, d.max_sequence_length
    )
}

pub fn run() -> Result<()> {
    println!("families (--model-dir DIR, chosen by model_index.json's _class_name; defaults from the checkpoint):");
    for f in FAMILIES {
        println!("  {:<10} {}", f.name(), f.pipeline_classes().join(", "));
    }
    println!("presets (--model NAME, built in, deterministic random weights):");
    for p in presets() {
        println!("  {:<18} {:<10} {}", p.name, p.family, p.description);
        println!("  {:<18} {:<10} {}", "", "", shape(&p.defaults));
    }
    Ok(())
}
