//! Go's `math.Log2` on amd64 (Go 1.19 `math/log10.go` `log2` over the
//! assembly `archLog` of `math/log_amd64.s`), operation for operation, for
//! klauspost < 1.9.8's float64 size estimates. Only for positive normal
//! numbers, the only ones those estimates take.

// The constants as `math/log_amd64.s` writes them (decimal, as Go parses them).
/// √2/2 (`HSqrt2`, 7.07106781186547524401e-01).
const HSQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
#[allow(clippy::excessive_precision)]
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
#[allow(clippy::excessive_precision)]
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
#[allow(clippy::excessive_precision)]
const L1: f64 = 6.666_666_666_666_735_130e-1;
#[allow(clippy::excessive_precision)]
const L2: f64 = 3.999_999_999_940_941_908e-1;
#[allow(clippy::excessive_precision)]
const L3: f64 = 2.857_142_874_366_239_149e-1;
#[allow(clippy::excessive_precision)]
const L4: f64 = 2.222_219_843_214_978_396e-1;
#[allow(clippy::excessive_precision)]
const L5: f64 = 1.818_357_216_161_805_012e-1;
#[allow(clippy::excessive_precision)]
const L6: f64 = 1.531_383_769_920_937_332e-1;
#[allow(clippy::excessive_precision)]
const L7: f64 = 1.479_819_860_511_658_591e-1;

/// `x`'s mantissa in [0.5, 1) and exponent (Go `math.Frexp`, normal `x`).
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let frac = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3fe0_0000_0000_0000);
    (frac, ((bits >> 52) & 0x7ff) as i32 - 0x3fe)
}

/// `archLog`.
fn log(x: f64) -> f64 {
    let (mut f1, ki) = frexp(x);
    let mut k = ki as f64;
    // The assembly's "not less than" compare: f1 <= √2/2 takes the branch.
    if f1 <= HSQRT2 {
        k -= 1.0;
        f1 *= 2.0;
    }
    let f = f1 - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (((L7 * s4 + L5) * s4 + L3) * s4 + L1);
    let t2 = s4 * ((L6 * s4 + L4) * s4 + L2);
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// Go `math.Log2`.
pub(super) fn log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return (exp - 1) as f64;
    }
    log(frac) * std::f64::consts::LOG2_E + exp as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn constants_are_the_assembly_s() {
        use super::*;
        let want: [(f64, u64); 10] = [
            (HSQRT2, 0x3fe6_a09e_667f_3bcd),
            (LN2_HI, 0x3fe6_2e42_fee0_0000),
            (LN2_LO, 0x3dea_39ef_3579_3c76),
            (L1, 0x3fe5_5555_5555_5593),
            (L2, 0x3fd9_9999_9997_fa04),
            (L3, 0x3fd2_4924_9422_9359),
            (L4, 0x3fcc_71c5_1d8e_78af),
            (L5, 0x3fc7_4664_96cb_03de),
            (L6, 0x3fc3_9a09_d078_c69f),
            (L7, 0x3fc2_f112_df3e_5244),
        ];
        for (v, bits) in want {
            assert_eq!(v.to_bits(), bits);
        }
    }

    #[test]
    fn powers_of_two_are_exact_and_others_close() {
        for e in -20..20 {
            assert_eq!(super::log2(2f64.powi(e)), e as f64);
        }
        for i in 1..10_000u32 {
            let x = i as f64 / 65535.0;
            assert!((super::log2(x) - x.log2()).abs() < 1e-14, "{x}");
        }
    }
}
