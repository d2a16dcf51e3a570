//! The logical device mesh that shardings refer to: named axes (`dp`, `fsdp`, `tp`, `sp`, ...),
//! first axis major. Devices are numbered row-major over the axes, and that number is the PJRT
//! addressable-device index, so a device's mesh coordinates are an unravel of its id. Naming the
//! axes (rather than counting tiles) is what lets a tensor be split on one axis of a 2-axis mesh
//! and still be laid out on the right devices.

use std::fmt;
use thiserror::Error;

/// Why a mesh description was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MeshError {
    #[error("mesh `{text}`: `{item}` is not `name=size` (e.g. `dp=2,tp=4`)")]
    Syntax { text: String, item: String },
    #[error("mesh axis name `{0}` must be an identifier (letters, digits, `_`; not starting with a digit)")]
    Name(String),
    #[error("mesh axis `{name}` has size {size}; sizes must be >= 1")]
    Size { name: String, size: String },
    #[error("mesh axis `{0}` is named twice")]
    Duplicate(String),
    #[error("a mesh needs at least one axis")]
    Empty,
    #[error("mesh {mesh} has {devices} devices, more than {max}")]
    TooLarge { mesh: String, devices: u64, max: u32 },
}

/// One named mesh axis and the number of devices along it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MeshAxis {
    pub name: String,
    pub size: u32,
}

/// A logical device mesh; see the module doc for the device numbering.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mesh {
    pub axes: Vec<MeshAxis>,
}

impl Mesh {
    /// A mesh from `(name, size)` pairs, checked as [`Mesh::parse`] checks them.
    pub fn new<S: Into<String>>(axes: impl IntoIterator<Item = (S, u32)>) -> Result<Mesh, MeshError> {
        let axes: Vec<MeshAxis> = axes.into_iter().map(|(n, size)| MeshAxis { name: n.into(), size }).collect();
        if axes.is_empty() {
            return Err(MeshError::Empty);
        }
        for (i, a) in axes.iter().enumerate() {
            if !is_identifier(&a.name) {
                return Err(MeshError::Name(a.name.clone()));
            }
            if a.size == 0 {
                return Err(MeshError::Size { name: a.name.clone(), size: "0".into() });
            }
            if axes[..i].iter().any(|b| b.name == a.name) {
                return Err(MeshError::Duplicate(a.name.clone()));
            }
        }
        let mesh = Mesh { axes };
        let devices: u64 = mesh.axes.iter().map(|a| u64::from(a.size)).product();
        if devices > u64::from(u32::MAX) {
            return Err(MeshError::TooLarge { mesh: mesh.to_string(), devices, max: u32::MAX });
        }
        Ok(mesh)
    }

    /// Parses `dp=2,tp=4` (the `--mesh` flag and the IR text header).
    pub fn parse(s: &str) -> Result<Mesh, MeshError> {
        let mut axes = Vec::new();
        for item in s.split(',') {
            let syntax = || MeshError::Syntax { text: s.to_string(), item: item.trim().to_string() };
            let (name, size) = item.split_once('=').ok_or_else(syntax)?;
            let (name, size) = (name.trim(), size.trim());
            if name.is_empty() || size.is_empty() {
                return Err(syntax());
            }
            let n: u32 =
                size.parse().map_err(|_| MeshError::Size { name: name.to_string(), size: size.to_string() })?;
            axes.push((name.to_string(), n));
        }
        Mesh::new(axes)
    }

    /// Number of devices: the product of the axis sizes.
    pub fn device_count(&self) -> u32 {
        self.axes.iter().map(|a| a.size).product()
    }

    /// The size of axis `name`, if the mesh has it.
    pub fn axis_size(&self, name: &str) -> Option<u32> {
        self.axis_index(name).map(|i| self.axes[i].size)
    }

    /// The position of axis `name` (0 = major).
    pub fn axis_index(&self, name: &str) -> Option<usize> {
        self.axes.iter().position(|a| a.name == name)
    }

    /// The mesh coordinates of `device` (one per axis): the row-major unravel of its id.
    pub fn coords(&self, device: u32) -> Vec<u32> {
        let mut rest = device;
        let mut c = vec![0; self.axes.len()];
        for (i, a) in self.axes.iter().enumerate().rev() {
            c[i] = rest % a.size;
            rest /= a.size;
        }
        c
    }
}

impl fmt::Display for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.axes.iter().map(|a| format!("{}={}", a.name, a.size)).collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for Mesh {
    type Err = MeshError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mesh::parse(s)
    }
}

/// Axis names print bare in the IR text and in Shardy's quoted strings, so keep them simple.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_numbers_devices_row_major() {
        let m = Mesh::parse("dp=2, tp=4").unwrap();
        assert_eq!(m.to_string(), "dp=2,tp=4");
        assert_eq!(m.device_count(), 8);
        assert_eq!(m.axis_size("tp"), Some(4));
        assert_eq!(m.axis_size("sp"), None);
        assert_eq!(m.coords(0), vec![0, 0]);
        assert_eq!(m.coords(5), vec![1, 1]);
        assert_eq!(m.coords(3), vec![0, 3]);
        assert_eq!("sp=8".parse::<Mesh>().unwrap().coords(7), vec![7]);
    }

    #[test]
    fn rejects_bad_meshes_saying_why() {
        assert_eq!(Mesh::parse("dp=2,dp=4"), Err(MeshError::Duplicate("dp".into())));
        assert!(matches!(Mesh::parse("dp=0"), Err(MeshError::Size { .. })));
        assert!(matches!(Mesh::parse("dp=x"), Err(MeshError::Size { .. })));
        assert!(matches!(Mesh::parse("dp"), Err(MeshError::Syntax { .. })));
        assert!(matches!(Mesh::parse(""), Err(MeshError::Syntax { .. })));
        assert_eq!(Mesh::parse("2x=2"), Err(MeshError::Name("2x".into())));
        assert!(Mesh::parse("a=65536,b=65536").unwrap_err().to_string().contains("more than"));
        assert!(Mesh::parse("dp=2,tp").unwrap_err().to_string().contains("`tp`"));
    }
}
