//! Linear blending of overlapping decoded tiles, as diffusers' `blend_v` / `blend_h`, and the
//! copy of each tile's kept corner into the frame. The arithmetic is torch's on f32 tensors:
//! `a * (1 - y / e) + b * (y / e)` with both weights rounded to f32 and each product rounded
//! before the sum, so an f32 decode blends bit for bit as diffusers does.

use crate::tensor::HostTensor;

/// A stack of images in f32, dims `[..., H, W]` (a VAE's `[B, C, F, H, W]`), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Images {
    pub dims: Vec<i64>,
    pub data: Vec<f32>,
}

impl Images {
    /// The tensor's elements in f32 (tiles are blended in f32 whatever the decoder computed in).
    pub fn from_tensor(t: &HostTensor) -> Self {
        Images { dims: t.dims.clone(), data: t.to_f32_vec() }
    }

    /// Zeros of `dims` (at least two: height and width last).
    pub fn zeros(dims: Vec<i64>) -> Self {
        let n = dims.iter().product::<i64>() as usize;
        Images { dims, data: vec![0.0; n] }
    }

    pub fn into_tensor(self) -> HostTensor {
        HostTensor::from_f32(self.dims, &self.data).expect("data holds the dims' elements")
    }

    pub fn height(&self) -> usize {
        self.dims[self.dims.len() - 2] as usize
    }

    pub fn width(&self) -> usize {
        self.dims[self.dims.len() - 1] as usize
    }

    /// The dims before height and width.
    pub fn lead(&self) -> &[i64] {
        &self.dims[..self.dims.len() - 2]
    }

    fn planes(&self) -> usize {
        self.lead().iter().product::<i64>() as usize
    }
}

/// The two weights of step `i` of a blend over `extent` pixels, as torch rounds them.
fn weights(i: usize, extent: usize) -> (f32, f32) {
    let t = i as f64 / extent as f64;
    ((1.0 - t) as f32, t as f32)
}

/// diffusers' `blend_v`: the first `e = min(a.h, b.h, extent)` rows of `b` fade in from the
/// last `e` rows of `a` (the tile above). `a` and `b` have the same leading dims and width.
pub fn blend_v(a: &Images, b: &mut Images, extent: usize) {
    let (ah, bh, w) = (a.height(), b.height(), b.width());
    debug_assert!(a.lead() == b.lead() && a.width() == w, "blend_v: {:?} above {:?}", a.dims, b.dims);
    let e = extent.min(ah).min(bh);
    for p in 0..b.planes() {
        for y in 0..e {
            let (wa, wb) = weights(y, e);
            let ar = (p * ah + ah - e + y) * w;
            let br = (p * bh + y) * w;
            for x in 0..w {
                b.data[br + x] = a.data[ar + x] * wa + b.data[br + x] * wb;
            }
        }
    }
}

/// diffusers' `blend_h`: the first `e = min(a.w, b.w, extent)` columns of `b` fade in from the
/// last `e` columns of `a` (the tile on the left). Same leading dims and height.
pub fn blend_h(a: &Images, b: &mut Images, extent: usize) {
    let (aw, bw, h) = (a.width(), b.width(), b.height());
    debug_assert!(a.lead() == b.lead() && a.height() == h, "blend_h: {:?} left of {:?}", a.dims, b.dims);
    let e = extent.min(aw).min(bw);
    for row in 0..b.planes() * h {
        let (ar, br) = (row * aw + aw - e, row * bw);
        for x in 0..e {
            let (wa, wb) = weights(x, e);
            b.data[br + x] = a.data[ar + x] * wa + b.data[br + x] * wb;
        }
    }
}

/// Copies the top-left `keep` (height, width) of `tile` to `(y, x)` of `frame`, cut at the
/// frame's edges: diffusers' `tile[..., :stride_h, :stride_w]`, concatenated and cropped.
pub fn paste(frame: &mut Images, tile: &Images, (y, x): (usize, usize), keep: (usize, usize)) {
    let (fh, fw, th, tw) = (frame.height(), frame.width(), tile.height(), tile.width());
    let h = keep.0.min(th).min(fh.saturating_sub(y));
    let w = keep.1.min(tw).min(fw.saturating_sub(x));
    for p in 0..tile.planes() {
        for r in 0..h {
            let src = (p * th + r) * tw;
            let dst = (p * fh + y + r) * fw + x;
            frame.data[dst..dst + w].copy_from_slice(&tile.data[src..src + w]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(dims: Vec<i64>, f: impl Fn(usize) -> f32) -> Images {
        let n = dims.iter().product::<i64>() as usize;
        Images { dims, data: (0..n).map(f).collect() }
    }

    /// diffusers' loop, literally, on nested indices: the reference for the fast version.
    fn blend_v_reference(a: &Images, b: &Images, extent: usize) -> Images {
        let (ah, bh, w) = (a.height(), b.height(), b.width());
        let e = extent.min(ah).min(bh);
        let mut out = b.clone();
        for p in 0..b.planes() {
            for y in 0..e {
                for x in 0..w {
                    let av = a.data[p * ah * w + (ah - e + y) * w + x];
                    let bv = b.data[p * bh * w + y * w + x];
                    let t = y as f64 / e as f64; // Python's float, cast to the tensor's f32
                    out.data[p * bh * w + y * w + x] = av * (1.0 - t) as f32 + bv * t as f32;
                }
            }
        }
        out
    }

    #[test]
    fn blend_v_fades_rows() {
        let a = filled(vec![2, 5, 3], |_| 1.0);
        let mut b = filled(vec![2, 4, 3], |_| 0.0);
        blend_v(&a, &mut b, 4);
        // Row y of b becomes 1 - y/4: 1, 0.75, 0.5, 0.25 (b's own value is 0).
        let col: Vec<f32> = (0..4).map(|y| b.data[12 + y * 3 + 1]).collect();
        assert_eq!(col, [1.0, 0.75, 0.5, 0.25]);
        // The extent is cut to the shorter tile.
        let a = filled(vec![1, 6, 2], |i| i as f32);
        let b0 = filled(vec![1, 2, 2], |i| 100.0 + i as f32);
        let mut b = b0.clone();
        blend_v(&a, &mut b, 4);
        assert_eq!(b, blend_v_reference(&a, &b0, 4));
        assert_eq!(&b.data[..2], &a.data[8..10], "row 0 is all `a`'s second-to-last row");
        assert_eq!(b.data[2], a.data[10] * 0.5 + b0.data[2] * 0.5);
    }

    #[test]
    fn blend_h_matches_blend_v_transposed() {
        let (h, wa, wb) = (3, 5, 4);
        let a = filled(vec![2, h, wa], |i| (i as f32 * 0.37).sin());
        let b0 = filled(vec![2, h, wb], |i| (i as f32 * 0.91).cos());
        let t = |m: &Images| {
            let (r, c) = (m.height(), m.width());
            let mut out = Images::zeros(vec![2, c as i64, r as i64]);
            for p in 0..2 {
                for y in 0..r {
                    for x in 0..c {
                        out.data[p * r * c + x * r + y] = m.data[p * r * c + y * c + x];
                    }
                }
            }
            out
        };
        for extent in [0, 2, 3, 9] {
            let mut b = b0.clone();
            blend_h(&a, &mut b, extent);
            assert_eq!(t(&b), blend_v_reference(&t(&a), &t(&b0), extent), "extent {extent}");
        }
    }

    #[test]
    fn paste_keeps_the_corner_and_cuts_at_edges() {
        let tile = filled(vec![1, 3, 3], |i| 1.0 + i as f32);
        let mut frame = Images::zeros(vec![1, 4, 5]);
        paste(&mut frame, &tile, (0, 0), (2, 2));
        paste(&mut frame, &tile, (2, 3), (2, 2));
        #[rustfmt::skip]
        let want = [
            1.0, 2.0, 0.0, 0.0, 0.0,
            4.0, 5.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 1.0, 2.0,
            0.0, 0.0, 0.0, 4.0, 5.0,
        ];
        assert_eq!(frame.data, want);
        paste(&mut frame, &tile, (3, 4), (3, 3));
        assert_eq!(frame.data[19], 1.0, "cut to the 1x1 left at the corner");
    }
}
