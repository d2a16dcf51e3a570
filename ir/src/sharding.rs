//! Sharding annotations on values: how many shards each dim is split into over the device mesh.
//! The backend passes them through to StableHLO (`mhlo.sharding`); the sharding-propagation pass
//! fills them in from weight rules.

use std::fmt;

/// Tiles per dim; devices beyond their product hold replicas. `[1, 1]` is replicated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sharding {
    pub tiles: Vec<u32>,
}

impl Sharding {
    pub fn replicated(rank: usize) -> Self {
        Sharding { tiles: vec![1; rank] }
    }

    pub fn is_replicated(&self) -> bool {
        self.tiles.iter().all(|&t| t == 1)
    }

    /// Number of distinct shards.
    pub fn shard_count(&self) -> u32 {
        self.tiles.iter().product()
    }

    /// The GSPMD attribute text for a mesh of `devices` devices.
    pub fn gspmd(&self, devices: u32) -> String {
        if self.is_replicated() {
            return "{replicated}".to_string();
        }
        let shards = self.shard_count();
        let tiles: Vec<String> = self.tiles.iter().map(|t| t.to_string()).collect();
        if shards == devices {
            format!("{{devices=[{}]<=[{devices}]}}", tiles.join(","))
        } else {
            let replicas = devices / shards;
            format!("{{devices=[{},{replicas}]<=[{devices}] last_tile_dim_replicate}}", tiles.join(","))
        }
    }

    /// The per-device shard shape of a tensor of `shape`; `None` when a dim does not divide.
    pub fn shard_shape(&self, shape: &[i64]) -> Option<Vec<i64>> {
        shape
            .iter()
            .zip(&self.tiles)
            .map(|(&d, &t)| (d % t as i64 == 0).then_some(d / t as i64))
            .collect()
    }
}

impl fmt::Display for Sharding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tiles: Vec<String> = self.tiles.iter().map(|t| t.to_string()).collect();
        write!(f, "[{}]", tiles.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gspmd_text() {
        assert_eq!(Sharding { tiles: vec![4, 1] }.gspmd(4), "{devices=[4,1]<=[4]}");
        assert_eq!(Sharding { tiles: vec![2, 1] }.gspmd(4), "{devices=[2,1,2]<=[4] last_tile_dim_replicate}");
        assert_eq!(Sharding::replicated(2).gspmd(4), "{replicated}");
        assert_eq!(Sharding { tiles: vec![2, 2] }.shard_shape(&[8, 6]), Some(vec![4, 3]));
        assert_eq!(Sharding { tiles: vec![4] }.shard_shape(&[6]), None);
    }
}
