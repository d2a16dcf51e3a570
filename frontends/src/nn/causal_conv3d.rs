//! Causal 3D convolution with its frame cache as explicit graph state (diffusers
//! `WanCausalConv3d` and the `feat_cache` / `feat_idx` protocol around it).
//!
//! A video VAE decodes one latent frame per call. Each causal conv needs the last [`CACHE_T`]
//! frames of its input from the previous call, so a step graph takes those as inputs
//! (`cache.0`, `cache.1`, ...) and returns the updated ones as outputs of the same names and
//! types; the executable is compiled once and fed its own cache outputs.
//!
//! diffusers keeps 0, 1 or 2 frames per conv and pads the missing ones with zeros; holding always
//! exactly two frames, zeros where diffusers has none, gives the same conv inputs and the same
//! later caches. In the first step ([`FrameCache::new`] with `first`), there are no cache inputs:
//! every previous cache is zeros, which is what `feat_cache[i] = None` amounts to.

use vidlower_ir::{Builder, ConvAttrs, Op, Result, TensorType, ValueId};

/// Frames of each conv's input kept for the next step (diffusers `CACHE_T`).
pub const CACHE_T: i64 = 2;

/// One cache slot: graph input and output `name`, for the conv `layer` (its weight prefix).
#[derive(Clone, Debug, PartialEq)]
pub struct CacheSlot {
    pub name: String,
    pub layer: String,
    pub ty: TensorType,
}

/// The cache slots of one step graph, in diffusers' `feat_idx` order.
pub struct FrameCache {
    first: bool,
    slots: Vec<CacheSlot>,
    next: Vec<Option<ValueId>>,
}

impl FrameCache {
    /// `first`: the first step, whose previous caches are all zeros (no cache inputs).
    pub fn new(first: bool) -> Self {
        FrameCache { first, slots: Vec::new(), next: Vec::new() }
    }

    pub fn is_first(&self) -> bool {
        self.first
    }

    /// Opens the next slot for `layer`: returns its index and the previous cache of type `ty`
    /// (input `cache.{index}`, or zeros in the first step). Close it with [`set`](Self::set).
    pub fn open(&mut self, b: &mut Builder, layer: &str, ty: TensorType) -> Result<(usize, ValueId)> {
        let index = self.slots.len();
        let name = format!("cache.{index}");
        let prev = if self.first { b.full(0.0, ty.clone())? } else { b.input(&name, ty.clone())? };
        self.slots.push(CacheSlot { name, layer: layer.to_string(), ty });
        self.next.push(None);
        Ok((index, prev))
    }

    /// The cache slot `index` hands to the next step.
    pub fn set(&mut self, index: usize, value: ValueId) {
        self.next[index] = Some(value);
    }

    /// Declares every slot's next value as an output (`cache.{i}`, after the outputs already
    /// declared) and returns the slots.
    pub fn finish(self, b: &mut Builder) -> Result<Vec<CacheSlot>> {
        for (slot, next) in self.slots.iter().zip(&self.next) {
            let v = next.ok_or_else(|| vidlower_ir::IrError::Value(format!("cache slot {} ({}) was never set", slot.name, slot.layer)))?;
            if b.ty(v) != &slot.ty {
                return Err(vidlower_ir::IrError::Value(format!(
                    "cache slot {} ({}): next value is {}, the slot is {}",
                    slot.name,
                    slot.layer,
                    b.ty(v),
                    slot.ty
                )));
            }
            b.output(&slot.name, v);
        }
        Ok(self.slots)
    }
}

/// `torch.cat([prev, x], dim=2)` and the last [`CACHE_T`] frames of it: the conv's input with
/// its history, and the cache for the next step (diffusers' `cache_x`, zero-padded to two frames).
pub fn with_history(b: &mut Builder, prev: ValueId, x: ValueId) -> Result<(ValueId, ValueId)> {
    let joined = b.concat(&[prev, x], 2)?;
    let t = b.shape(joined)[2];
    let next = b.slice_axis(joined, 2, t - CACHE_T, CACHE_T)?;
    Ok((joined, next))
}

/// diffusers `WanCausalConv3d(in, out, kernel, padding=padding)` on `x` [B, C, T, H, W], stride 1:
/// zero padding `padding` on each side of H and W, `2 * padding[0]` frames of history in front
/// (from the cache when a temporal padding is asked for, else none). Weights
/// `{prefix}.weight` [out, in, kt, kh, kw] and `{prefix}.bias`.
pub fn causal_conv3d(
    b: &mut Builder,
    cache: &mut FrameCache,
    x: ValueId,
    prefix: &str,
    out_channels: i64,
    kernel: [i64; 3],
    padding: [i64; 3],
) -> Result<ValueId> {
    let mut attrs = ConvAttrs::simple(3, 0);
    attrs.padding = vec![(0, 0), (padding[1], padding[1]), (padding[2], padding[2])];
    let time_pad = 2 * padding[0];
    if time_pad == 0 {
        // `_padding[4] == 0`: diffusers ignores any cache (1x1x1 shortcuts, post_quant_conv).
        return b.conv(x, prefix, out_channels, &kernel, attrs, true);
    }
    let mut prev_shape = b.shape(x);
    prev_shape[2] = CACHE_T;
    let (slot, prev) = cache.open(b, prefix, TensorType::new(b.dtype(x), prev_shape))?;
    let (joined, next) = with_history(b, prev, x)?;
    cache.set(slot, next);
    // diffusers pads `2p - cached` zero frames in front (negative: crops), for `2p` in all.
    let rank = b.shape(joined).len();
    let mut low = vec![0; rank];
    low[2] = time_pad - CACHE_T;
    let input = if low[2] == 0 { joined } else { b.pad(joined, &low, &vec![0; rank], 0.0)? };
    b.conv(input, prefix, out_channels, &kernel, attrs, true)
}

/// torch `nn.Conv2d` applied to every frame of `x` [B, C, T, H, W] (the `(b t) c h w` reshape
/// in diffusers), as one 3D convolution with a depth-1 kernel, so no frame transposes are needed.
/// Weight `{prefix}.weight` [out, in, k, k] as stored, and `{prefix}.bias`.
pub fn conv2d_per_frame(b: &mut Builder, x: ValueId, prefix: &str, out_channels: i64, kernel: i64, padding: i64) -> Result<ValueId> {
    let t = b.ty(x).clone();
    let w = b.weight(&format!("{prefix}.weight"), TensorType::new(t.dtype, vec![out_channels, t.shape[1], kernel, kernel]))?;
    let w = b.reshape(w, &[out_channels, t.shape[1], 1, kernel, kernel])?;
    let mut attrs = ConvAttrs::simple(3, padding);
    attrs.padding[0] = (0, 0);
    let y = b.op(Op::Convolution(attrs), &[x, w])?;
    let bias = b.weight(&format!("{prefix}.bias"), TensorType::new(t.dtype, vec![out_channels]))?;
    let shape = b.shape(y);
    let bias = b.broadcast_in_dim(bias, &shape, &[1])?;
    b.add(y, bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::DType;

    #[test]
    fn step_graph_carries_two_frames_per_conv() {
        for first in [true, false] {
            let mut b = Builder::new("t");
            let x = b.input("x", TensorType::new(DType::F32, vec![1, 4, 2, 5, 5])).unwrap();
            let mut cache = FrameCache::new(first);
            let y = causal_conv3d(&mut b, &mut cache, x, "conv", 6, [3, 3, 3], [1, 1, 1]).unwrap();
            let y = causal_conv3d(&mut b, &mut cache, y, "short", 6, [1, 1, 1], [0, 0, 0]).unwrap();
            assert_eq!(b.shape(y), vec![1, 6, 2, 5, 5]);
            b.output("y", y);
            let slots = cache.finish(&mut b).unwrap();
            assert_eq!(
                slots,
                vec![CacheSlot { name: "cache.0".into(), layer: "conv".into(), ty: TensorType::new(DType::F32, vec![1, 4, 2, 5, 5]) }]
            );
            let g = b.finish().unwrap();
            assert_eq!(g.find_input("cache.0").is_some(), !first);
            assert_eq!(g.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["y", "cache.0"]);
        }
    }
}
