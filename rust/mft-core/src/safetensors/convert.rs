//! Conversions between the float dtypes (F64, F32, F16, BF16, F8_E4M3, F8_E5M2).
//!
//! Every value goes through f64 (which holds all of them exactly) and is
//! rounded once, to nearest-even, into the target. The small formats share one
//! encoder parameterised by exponent/mantissa width. Overflow gives inf where
//! the format has one and NaN for F8_E4M3 (the "fn" variant has no inf).
//! `mft.weights.dtypes_ref` is the numpy reference these must match bit for bit.

use super::dtype::Dtype;
use super::{Error, Result};

#[derive(Clone, Copy)]
struct Mini {
    exp_bits: u32,
    man_bits: u32,
    /// E4M3 "fn": no inf, only S.1111.111 is NaN, so the top exponent holds numbers.
    finite_only: bool,
}

const F16: Mini = Mini {
    exp_bits: 5,
    man_bits: 10,
    finite_only: false,
};
const BF16: Mini = Mini {
    exp_bits: 8,
    man_bits: 7,
    finite_only: false,
};
const E4M3: Mini = Mini {
    exp_bits: 4,
    man_bits: 3,
    finite_only: true,
};
const E5M2: Mini = Mini {
    exp_bits: 5,
    man_bits: 2,
    finite_only: false,
};

fn mini(d: Dtype) -> Option<Mini> {
    match d {
        Dtype::F16 => Some(F16),
        Dtype::BF16 => Some(BF16),
        Dtype::F8E4M3 => Some(E4M3),
        Dtype::F8E5M2 => Some(E5M2),
        _ => None,
    }
}

pub fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::F64 | Dtype::F32) || mini(d).is_some()
}

impl Mini {
    fn bias(self) -> i32 {
        (1 << (self.exp_bits - 1)) - 1
    }
    fn exp_max_field(self) -> u32 {
        (1 << self.exp_bits) - 1
    }
    fn nan(self) -> u32 {
        if self.finite_only {
            (self.exp_max_field() << self.man_bits) | ((1 << self.man_bits) - 1)
        } else {
            (self.exp_max_field() << self.man_bits) | (1 << (self.man_bits - 1))
        }
    }
    fn max_finite(self) -> f64 {
        let (e, m) = if self.finite_only {
            (
                self.exp_max_field() as i32 - self.bias(),
                (1u32 << self.man_bits) - 2,
            )
        } else {
            (
                self.exp_max_field() as i32 - 1 - self.bias(),
                (1u32 << self.man_bits) - 1,
            )
        };
        (1.0 + m as f64 / (1u64 << self.man_bits) as f64) * 2f64.powi(e)
    }

    fn decode(self, bits: u32) -> f64 {
        let sign = if bits >> (self.exp_bits + self.man_bits) & 1 == 1 {
            -1.0
        } else {
            1.0
        };
        let e = (bits >> self.man_bits) & self.exp_max_field();
        let m = bits & ((1 << self.man_bits) - 1);
        let scale = (1u64 << self.man_bits) as f64;
        if e == self.exp_max_field() {
            if self.finite_only {
                if m == (1 << self.man_bits) - 1 {
                    return f64::NAN;
                }
            } else {
                return if m == 0 {
                    sign * f64::INFINITY
                } else {
                    f64::NAN
                };
            }
        }
        if e == 0 {
            return sign * (m as f64 / scale) * 2f64.powi(1 - self.bias());
        }
        sign * (1.0 + m as f64 / scale) * 2f64.powi(e as i32 - self.bias())
    }

    fn encode(self, x: f64) -> u32 {
        let sign_bit = if x.is_sign_negative() {
            1u32 << (self.exp_bits + self.man_bits)
        } else {
            0
        };
        if x.is_nan() {
            return self.nan();
        }
        let a = x.abs();
        let overflow = if self.finite_only {
            self.nan()
        } else {
            self.exp_max_field() << self.man_bits
        };
        if a.is_infinite() {
            return sign_bit | overflow;
        }
        let min_normal_exp = 1 - self.bias();
        // Spacing of representable values around `a`: fixed in the subnormal range.
        let e = if a < 2f64.powi(min_normal_exp) {
            min_normal_exp
        } else {
            floor_log2(a)
        };
        let quantum = 2f64.powi(e - self.man_bits as i32);
        let v = round_half_even(a / quantum) * quantum;
        if v > self.max_finite() {
            return sign_bit | overflow;
        }
        if v == 0.0 {
            return sign_bit;
        }
        if v < 2f64.powi(min_normal_exp) {
            return sign_bit | (v / 2f64.powi(min_normal_exp - self.man_bits as i32)) as u32;
        }
        let ve = floor_log2(v);
        let m = ((v / 2f64.powi(ve) - 1.0) * (1u64 << self.man_bits) as f64) as u32;
        sign_bit | (((ve + self.bias()) as u32) << self.man_bits) | m
    }
}

fn floor_log2(a: f64) -> i32 {
    let bits = a.to_bits();
    let field = ((bits >> 52) & 0x7ff) as i32;
    if field == 0 {
        // f64 subnormal: far below every target's range; only the magnitude matters.
        return -1075 + (64 - (bits & ((1 << 52) - 1)).leading_zeros() as i32);
    }
    field - 1023
}

fn round_half_even(q: f64) -> f64 {
    let r = q.round();
    if (r - q).abs() == 0.5 && r % 2.0 != 0.0 {
        r - q.signum()
    } else {
        r
    }
}

fn read(d: Dtype, b: &[u8]) -> f64 {
    match d {
        Dtype::F64 => f64::from_le_bytes(b.try_into().unwrap()),
        Dtype::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
        Dtype::F16 | Dtype::BF16 => mini(d)
            .unwrap()
            .decode(u16::from_le_bytes(b.try_into().unwrap()) as u32),
        _ => mini(d).unwrap().decode(b[0] as u32),
    }
}

fn write(d: Dtype, x: f64, out: &mut [u8]) {
    match d {
        Dtype::F64 => out.copy_from_slice(&x.to_le_bytes()),
        Dtype::F32 => out.copy_from_slice(&(x as f32).to_le_bytes()),
        Dtype::F16 | Dtype::BF16 => {
            out.copy_from_slice(&(mini(d).unwrap().encode(x) as u16).to_le_bytes())
        }
        _ => out[0] = mini(d).unwrap().encode(x) as u8,
    }
}

/// Converts `src` (elements of `from`) into `out` (elements of `to`); both
/// must be float dtypes and the lengths must agree on the element count.
pub fn convert(from: Dtype, src: &[u8], to: Dtype, out: &mut [u8]) -> Result<()> {
    if !is_float(from) || !is_float(to) {
        return Err(Error::Invalid(format!(
            "cannot convert {} to {}: only float dtypes convert",
            from.name(),
            to.name()
        )));
    }
    let (fs, ts) = (from.size(), to.size());
    if !src.len().is_multiple_of(fs)
        || out.len() / ts != src.len() / fs
        || !out.len().is_multiple_of(ts)
    {
        return Err(Error::Invalid(format!(
            "convert {} -> {}: {} source bytes do not match {} output bytes",
            from.name(),
            to.name(),
            src.len(),
            out.len()
        )));
    }
    if from == to {
        out.copy_from_slice(src);
        return Ok(());
    }
    if from == Dtype::BF16 && to == Dtype::F32 {
        // The hot path when widening checkpoints: exact, just a shift.
        for (s, o) in src.chunks_exact(2).zip(out.chunks_exact_mut(4)) {
            o.copy_from_slice(&[0, 0, s[0], s[1]]);
        }
        return Ok(());
    }
    for (s, o) in src.chunks_exact(fs).zip(out.chunks_exact_mut(ts)) {
        write(to, read(from, s), o);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(to: Dtype, x: f64) -> f64 {
        let mut out = vec![0u8; to.size()];
        convert(Dtype::F64, &x.to_le_bytes(), to, &mut out).unwrap();
        let mut back = [0u8; 8];
        convert(to, &out, Dtype::F64, &mut back).unwrap();
        f64::from_le_bytes(back)
    }

    #[test]
    fn known_values() {
        assert_eq!(one(Dtype::F16, 1.0 / 3.0), 0.333251953125);
        assert_eq!(one(Dtype::F16, 65520.0), f64::INFINITY); // ties to even overflow
        assert_eq!(one(Dtype::F16, 2f64.powi(-24)), 2f64.powi(-24)); // smallest subnormal
        assert_eq!(one(Dtype::BF16, 1.00390625), 1.0); // tie -> even
        assert_eq!(one(Dtype::F8E4M3, 448.0), 448.0);
        assert!(one(Dtype::F8E4M3, 1000.0).is_nan());
        assert_eq!(one(Dtype::F8E5M2, 57344.0), 57344.0);
        assert_eq!(one(Dtype::F8E5M2, 1e6), f64::INFINITY);
        assert_eq!(one(Dtype::F8E4M3, -0.0).to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn every_small_value_round_trips() {
        for d in [Dtype::F16, Dtype::BF16, Dtype::F8E4M3, Dtype::F8E5M2] {
            let m = mini(d).unwrap();
            for bits in 0..(1u32 << (m.exp_bits + m.man_bits + 1)) {
                let x = m.decode(bits);
                if x.is_nan() {
                    continue;
                }
                assert_eq!(m.encode(x), bits, "{} {bits:#x} {x}", d.name());
            }
        }
    }

    #[test]
    fn refuses_ints() {
        assert!(convert(Dtype::I32, &[0; 4], Dtype::F32, &mut [0; 4]).is_err());
    }
}
