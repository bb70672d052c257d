//! Copying the intersection of two boxes of one N-d tensor, each stored in
//! C order in its own buffer, clipped to the tensor's global shape (so vocab
//! padding rows are never read as data).

/// Copies the part of the global tensor that both boxes (and the global
/// shape) contain from `src` into `dst`; returns how many elements it copied.
#[allow(clippy::too_many_arguments)]
pub fn copy_intersection(
    elem: usize,
    global: &[u64],
    src: &[u8],
    src_off: &[u64],
    src_shape: &[u64],
    dst: &mut [u8],
    dst_off: &[u64],
    dst_shape: &[u64],
) -> u64 {
    let n = global.len();
    if n == 0 {
        dst[..elem].copy_from_slice(&src[..elem]);
        return 1;
    }
    let mut lo = vec![0u64; n];
    let mut hi = vec![0u64; n];
    for d in 0..n {
        lo[d] = src_off[d].max(dst_off[d]);
        hi[d] = (src_off[d] + src_shape[d])
            .min(dst_off[d] + dst_shape[d])
            .min(global[d]);
        if hi[d] <= lo[d] {
            return 0;
        }
    }
    let strides = |shape: &[u64]| {
        let mut s = vec![elem as u64; n];
        for d in (0..n - 1).rev() {
            s[d] = s[d + 1] * shape[d + 1];
        }
        s
    };
    let (ss, ds) = (strides(src_shape), strides(dst_shape));
    // Trailing dims both boxes hold whole merge into one contiguous run.
    let mut split = n - 1;
    let mut run = (hi[n - 1] - lo[n - 1]) * elem as u64;
    while split > 0 {
        let d = split;
        let full = |off: &[u64], shape: &[u64]| lo[d] == off[d] && hi[d] == off[d] + shape[d];
        if !(full(src_off, src_shape) && full(dst_off, dst_shape)) {
            break;
        }
        split -= 1;
        run *= hi[split] - lo[split];
    }
    let run = run as usize;
    let mut idx: Vec<u64> = lo[..split].to_vec();
    let mut copied = 0u64;
    loop {
        let mut so = (lo[split] - src_off[split]) * ss[split];
        let mut doff = (lo[split] - dst_off[split]) * ds[split];
        for d in 0..split {
            so += (idx[d] - src_off[d]) * ss[d];
            doff += (idx[d] - dst_off[d]) * ds[d];
        }
        let (so, doff) = (so as usize, doff as usize);
        dst[doff..doff + run].copy_from_slice(&src[so..so + run]);
        copied += (run / elem) as u64;
        // Odometer over the outer dims.
        let mut d = split;
        loop {
            if d == 0 {
                return copied;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < hi[d] {
                break;
            }
            idx[d] = lo[d];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_and_row_pieces_reassemble() {
        // Global 4x6 of u8 0..24, split into 2 column pieces (axis 1) then
        // copied into 2 row pieces (axis 0) and back into the whole.
        let global = [4u64, 6];
        let whole: Vec<u8> = (0..24).collect();
        let mut cols = vec![vec![0u8; 12], vec![0u8; 12]];
        for (k, c) in cols.iter_mut().enumerate() {
            let n = copy_intersection(
                1,
                &global,
                &whole,
                &[0, 0],
                &[4, 6],
                c,
                &[0, 3 * k as u64],
                &[4, 3],
            );
            assert_eq!(n, 12);
        }
        assert_eq!(cols[1][..3], [3, 4, 5]);
        let mut back = vec![0u8; 24];
        for (k, c) in cols.iter().enumerate() {
            copy_intersection(
                1,
                &global,
                c,
                &[0, 3 * k as u64],
                &[4, 3],
                &mut back,
                &[0, 0],
                &[4, 6],
            );
        }
        assert_eq!(back, whole);
    }

    #[test]
    fn padding_is_not_read() {
        // Global 3 rows; a source piece stores rows 2..4 where row 3 is padding.
        let src = [7u8, 9];
        let mut dst = [0u8; 3];
        let n = copy_intersection(1, &[3], &src, &[2], &[2], &mut dst, &[0], &[3]);
        assert_eq!((n, dst), (1, [0, 0, 7]));
        let mut scalar = [0u8; 4];
        assert_eq!(
            copy_intersection(4, &[], &[1, 2, 3, 4], &[], &[], &mut scalar, &[], &[]),
            1
        );
    }
}
