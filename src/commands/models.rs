//! `vidlower models`: the families and presets vidlower knows, with their default shapes.

use anyhow::Result;
use vidlower_frontends::registry::{presets, Defaults, Family};

fn shape(d: &Defaults) -> String {
    format!(
        "{}x{}, {} frames, {} steps, guidance {}, {} fps, flow_shift {}, {} text tokens",
        d.width, d.height, d.frames, d.steps, d.guidance_scale, d.fps, d.flow_shift, d.max_sequence_length
    )
}

pub fn run() -> Result<()> {
    println!("families (--model-dir DIR, chosen by model_index.json's _class_name):");
    for f in Family::ALL {
        println!("  {:<10} {:<24} {}", f.name(), f.pipeline_classes().join(", "), shape(&f.defaults()));
    }
    println!("presets (--model NAME, built in, deterministic random weights):");
    for p in presets() {
        println!("  {:<14} {:<6} {}", p.name, p.family.name(), p.description);
        println!("  {:<14} {:<6} {}", "", "", shape(&p.defaults));
    }
    Ok(())
}
