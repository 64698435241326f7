//! Branch-free f32 transcendental functions for the per-pixel kernels: plain arithmetic and
//! selects, so the loops that call them vectorize (std's `expf`/`logf` are calls LLVM cannot).

/// e^x for x ≤ 0, branch-free so loops over it vectorize: Cody–Waite reduction
/// x = n·ln 2 + r, |r| ≤ ln 2 / 2, a degree-6 Taylor polynomial for e^r (relative error
/// < 2e-7), and 2^n built in the exponent bits. Below −87 the result is 0-ish (≤ 1.7e-38).
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    exp_reduced(x.clamp(-87.0, 0.0))
}

/// e^x for x in [−87, 88] (clamped outside), as [`exp_neg`].
#[inline(always)]
pub fn exp_clamped(x: f32) -> f32 {
    exp_reduced(x.clamp(-87.0, 88.0))
}

#[inline(always)]
fn exp_reduced(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest by adding and removing 1.5·2^23: vectorizes without SSE4.1's roundps.
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n sits in the low mantissa bits of `shifted` (|n| ≤ 127 ≪ 2^22): read as an integer
    // there, not by a float-to-int cast, whose saturating NaN rule keeps loops scalar.
    let n_int = shifted.to_bits().wrapping_sub(SHIFTER.to_bits());
    p * f32::from_bits(n_int.wrapping_add(127) << 23)
}

/// ln(1 + e) for e in [0, 1], branch-free: 2·atanh(s) with s = e / (2 + e) ≤ 1/3, seven terms
/// of the series (absolute error < 1e-8).
#[inline(always)]
pub fn ln_1p_unit(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let s2 = s * s;
    2.0 * s
        * (1.0
            + s2 * (1.0 / 3.0
                + s2 * (1.0 / 5.0
                    + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0)))))))
}

/// ln x for a positive, normal x: the exponent from the bits, the mantissa centred on 1
/// (in [√½, √2)) and 2·atanh((m − 1)/(m + 1)) to the s⁹ term (relative error < 1e-7).
#[inline(always)]
pub fn ln_pos(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let bits = x.to_bits();
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    // Selects on floats only: a bool turned into an integer here kept the loops scalar.
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { 0.5 * m } else { m };
    let e = (((bits >> 23) & 0xff) as i32) as f32 - 127.0 + if big { 1.0 } else { 0.0 };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let ln_m = 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 / 9.0))));
    e * LN2_HI + (e * LN2_LO + ln_m)
}

/// 1 − e^{−m} for m ≥ 0, accurate for small m too.
#[inline(always)]
pub fn one_minus_exp_neg(m: f32) -> f32 {
    one_minus_exp_neg_parts(m).om
}

/// 1 − e^{−m}, e^{−m} and the ratio q = (1 − e^{−m})/m for an m ≥ 0, see [`one_minus_exp_neg_parts`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneMinusExpNeg {
    /// 1 − e^{−m}: m·(1 − m/2 + m²/6 − …) to the m⁸ term below ln 2, where 1 − e^{−m} would
    /// cancel.
    pub om: f32,
    /// e^{−m}.
    pub e: f32,
    /// q = q_num / q_den without cancellation (1 at m = 0), left as a fraction so that a
    /// product of several q divides once.
    pub q_num: f32,
    pub q_den: f32,
}

impl OneMinusExpNeg {
    /// q = (1 − e^{−m})/m.
    #[inline(always)]
    pub fn q(self) -> f32 {
        self.q_num / self.q_den
    }
}

/// 1 − e^{−m}, e^{−m} and (1 − e^{−m})/m for m ≥ 0, the first and last without cancellation:
/// for m < ln 2 the ratio is its Taylor series (q_den = 1), above it (1 − e^{−m}) over m.
#[inline(always)]
pub fn one_minus_exp_neg_parts(m: f32) -> OneMinusExpNeg {
    let e = exp_neg(-m);
    let d = -m.min(std::f32::consts::LN_2);
    let ratio = 1.0
        + d * (0.5
            + d * (1.0 / 6.0
                + d * (1.0 / 24.0
                    + d * (1.0 / 120.0
                        + d * (1.0 / 720.0 + d * (1.0 / 5040.0 + d * (1.0 / 40320.0)))))));
    let small = m < std::f32::consts::LN_2;
    let om = if small { -d * ratio } else { 1.0 - e };
    OneMinusExpNeg {
        om,
        e,
        q_num: if small { ratio } else { om },
        q_den: if small { 1.0 } else { m },
    }
}

/// ln(1 − e^d) for d < 0: the log of the part of a probability that `d` (a log-ratio of two
/// CDFs) leaves over. Needs d ≤ −1e-30 to be finite.
#[inline(always)]
pub fn ln_1m_exp(d: f32) -> f32 {
    ln_pos(one_minus_exp_neg(-d))
}

/// (softplus(a), sigmoid(a)) = (log(1 + e^a), 1 / (1 + e^-a)), from one e^-|a|.
#[inline(always)]
pub fn softplus_sigmoid(a: f32) -> (f32, f32) {
    let e = exp_neg(-a.abs());
    let inv = 1.0 / (1.0 + e);
    (
        a.max(0.0) + ln_1p_unit(e),
        if a >= 0.0 { inv } else { e * inv },
    )
}

/// 1 / (1 + e^-a) without overflow.
#[inline(always)]
pub fn sigmoid(a: f32) -> f32 {
    softplus_sigmoid(a).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_log1p_match_libm() {
        let mut a = -90.0f32;
        while a <= 0.0 {
            let (got, want) = (exp_neg(a), f64::from(a).exp());
            assert!(
                (f64::from(got) - want).abs() <= 3e-7 * want + 1e-37,
                "exp({a}) = {got} vs {want}"
            );
            a += 0.0137;
        }
        for i in 0..=1000 {
            let e = i as f32 / 1000.0;
            let (got, want) = (ln_1p_unit(e), f64::from(e).ln_1p());
            assert!(
                (f64::from(got) - want).abs() <= 2e-7 * want + 1e-9,
                "ln1p({e}) = {got} vs {want}"
            );
        }
        for &a in &[-200.0f32, -20.0, -1.0, 0.0, 1e-3, 3.0, 50.0, 200.0] {
            let (sp, sg) = softplus_sigmoid(a);
            let (a64, sp64) = (f64::from(a), f64::from(a).exp().ln_1p());
            let sp_want = if a > 30.0 { a64 } else { sp64 };
            assert!(
                (f64::from(sp) - sp_want).abs() <= 1e-6 * (1.0 + sp_want),
                "softplus({a})"
            );
            assert!(
                (f64::from(sg) - 1.0 / (1.0 + (-a64).exp())).abs() <= 1e-6,
                "sigmoid({a})"
            );
        }
    }

    #[test]
    fn ln_exp_and_one_minus_exp_match_libm() {
        let mut x = 1e-30f32;
        while x < 1e30 {
            let (got, want) = (f64::from(ln_pos(x)), f64::from(x).ln());
            assert!(
                (got - want).abs() <= 2e-7 * want.abs().max(1.0),
                "ln({x}) = {got} vs {want}"
            );
            x *= 1.37;
        }
        let mut a = -87.0f32;
        while a < 88.0 {
            let (got, want) = (f64::from(exp_clamped(a)), f64::from(a).exp());
            assert!(
                (got - want).abs() <= 3e-7 * want,
                "exp({a}) = {got} vs {want}"
            );
            a += 0.173;
        }
        let at0 = one_minus_exp_neg_parts(0.0);
        assert_eq!((at0.q(), at0.om, at0.e), (1.0, 0.0, 1.0));
        let mut m = 1e-9f32;
        while m < 100.0 {
            let (got, want) = (f64::from(one_minus_exp_neg(m)), -(-f64::from(m)).exp_m1());
            assert!(
                (got - want).abs() <= 3e-7 * want,
                "1-exp(-{m}) = {got} vs {want}"
            );
            let parts = one_minus_exp_neg_parts(m);
            let (ratio, om, e) = (parts.q(), parts.om, parts.e);
            assert_eq!(om.to_bits(), one_minus_exp_neg(m).to_bits(), "m = {m}");
            let ratio_want = want / f64::from(m);
            assert!(
                (f64::from(ratio) - ratio_want).abs() <= 3e-7 * ratio_want,
                "(1-exp(-{m}))/{m} = {ratio} vs {ratio_want}"
            );
            assert_eq!(e, exp_neg(-m));
            let (got, want) = (f64::from(ln_1m_exp(-m)), (-(-f64::from(m)).exp_m1()).ln());
            assert!(
                (got - want).abs() <= 3e-7 * want.abs().max(1.0),
                "ln(1-exp(-{m}))"
            );
            m *= 1.11;
        }
    }
}
