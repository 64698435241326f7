//! Which vector width the direct conv kernels and the element-wise loops run at,
//! chosen at run time, and the CPU line printed beside every figure (a speed holds only on the
//! CPU it was measured on).

use std::sync::OnceLock;

/// The environment variable that caps the direct conv kernels' width: `avx512`, `avx2`, or
/// `none` (im2col + gemm). Unset: the widest this CPU runs. For benchmarks and tests of one
/// path on a CPU that has several.
pub const CONV_SIMD_VAR: &str = "VAELAB_CONV_SIMD";
/// The same for the element-wise loops, each pixel's likelihood and the Adam update (`none`:
/// their portable build).
pub const LOOP_SIMD_VAR: &str = "VAELAB_LOOP_SIMD";

/// A vector width the direct conv kernels are written for. The kernels take only widths from
/// [`Simd::available`] (directly or through [`conv_simd`]), so the one they get runs here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    /// 16 f32 lanes (AVX-512F, with AVX2 and FMA).
    Avx512,
    /// 8 f32 lanes (AVX2 with FMA).
    Avx2,
}

/// A value of [`CONV_SIMD_VAR`] or [`LOOP_SIMD_VAR`] (the first field) this CPU cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimdError {
    #[error("{0}={1:?} is not a width: allowed are avx512, avx2 and none")]
    Unknown(&'static str, String),
    #[error("{0}={1} but this CPU lacks it (it runs: {2})")]
    Unsupported(&'static str, &'static str, String),
}

impl Simd {
    /// Every width this CPU runs, widest first.
    pub fn available() -> Vec<Simd> {
        [Simd::Avx512, Simd::Avx2]
            .into_iter()
            .filter(|s| s.runs_here())
            .collect()
    }

    /// The name [`CONV_SIMD_VAR`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512",
            Simd::Avx2 => "avx2",
        }
    }

    fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                // The 16-lane kernels share the 8-lane transposes and stores (every AVX-512
                // CPU has AVX2 and FMA; checked, so that sharing them stays sound).
                Simd::Avx512 => {
                    std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx2")
                        && std::is_x86_feature_detected!("fma")
                }
                Simd::Avx2 => {
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// The width `value` of the variable `var` asks for (`None`: no vector kernel of ours), or
/// the widest available when unset.
fn choose(var: &'static str, value: Option<&str>) -> Result<Option<Simd>, SimdError> {
    let widest = Simd::available().first().copied();
    let Some(v) = value else {
        return Ok(widest);
    };
    let want = match v.trim().to_ascii_lowercase().as_str() {
        "none" => return Ok(None),
        "avx512" => Simd::Avx512,
        "avx2" => Simd::Avx2,
        _ => return Err(SimdError::Unknown(var, v.to_string())),
    };
    if want.runs_here() {
        Ok(Some(want))
    } else {
        let have: Vec<&str> = Simd::available().iter().map(|s| s.name()).collect();
        let have = if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        };
        Err(SimdError::Unsupported(var, want.name(), have))
    }
}

/// The width the variable `var` picks, read once into `cell`. Set but empty
/// (`VAELAB_CONV_SIMD= cmd`) reads as unset.
fn read_once(
    cell: &'static OnceLock<Result<Option<Simd>, SimdError>>,
    var: &'static str,
) -> Result<Option<Simd>, SimdError> {
    cell.get_or_init(|| {
        let value = std::env::var(var).ok();
        choose(var, value.as_deref().filter(|v| !v.trim().is_empty()))
    })
    .clone()
}

/// The direct conv kernels' width for this process (read once); the runner checks it before
/// any run starts, so a bad value is bad input, not a failed run.
pub fn conv_simd() -> Result<Option<Simd>, SimdError> {
    static CHOICE: OnceLock<Result<Option<Simd>, SimdError>> = OnceLock::new();
    read_once(&CHOICE, CONV_SIMD_VAR)
}

/// The element-wise loops' width for this process (read once: the likelihood's pixel loop and
/// the Adam update), checked by the runner beside [`conv_simd`]. The widths give the same
/// numbers to the bit: each element's arithmetic is the same at every width (Rust never fuses a
/// multiply and an add by itself) and the sums keep their order.
pub fn loop_simd() -> Result<Option<Simd>, SimdError> {
    static CHOICE: OnceLock<Result<Option<Simd>, SimdError>> = OnceLock::new();
    read_once(&CHOICE, LOOP_SIMD_VAR)
}

/// Runs a body compiled once per width and picked by `$width` (an `Option<Simd>` from
/// [`conv_simd`] or [`loop_simd`], so one this CPU runs; `None`: the baseline build): the body
/// goes into a plain function and into AVX-512 and AVX2 + FMA copies, which LLVM vectorizes
/// each for its ISA. Per element the copies do the same arithmetic (Rust never fuses a multiply
/// and an add by itself), so a loop that keeps its sums in order gives the same bits at each.
///
/// `at_width!(width, |x: &mut [f32], k: f32| { for v in x { *v *= k } }, (data, 2.0))`
#[macro_export]
macro_rules! at_width {
    ($width:expr, |$($p:ident: $t:ty),* $(,)?| $body:block, ($($arg:expr),* $(,)?)) => {{
        #[inline(always)]
        fn baseline($($p: $t),*) $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512($($p: $t),*) {
            baseline($($p),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($p: $t),*) {
            baseline($($p),*)
        }
        let width: Option<$crate::Simd> = $width;
        // The arguments are evaluated here, outside the unsafe blocks.
        let ($($p,)*) = ($($arg,)*);
        match width {
            // SAFETY: `conv_simd` and `loop_simd` offer only widths this CPU runs.
            #[cfg(target_arch = "x86_64")]
            Some($crate::Simd::Avx512) => unsafe { avx512($($p),*) },
            #[cfg(target_arch = "x86_64")]
            Some($crate::Simd::Avx2) => unsafe { avx2($($p),*) },
            _ => baseline($($p),*),
        }
    }};
}

/// This CPU as a benchmark row states it: model name, family/model, AVX-512 flags and AVX2,
/// and the conv kernels' width.
pub fn cpu_line() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = |choice: Result<Option<Simd>, SimdError>, none: &str| match choice {
        Ok(Some(s)) => s.name().to_string(),
        Ok(None) => none.to_string(),
        Err(e) => e.to_string(),
    };
    format!(
        "{}; direct conv kernels: {}; element-wise loops: {}",
        describe(&info),
        name(conv_simd(), "im2col+gemm"),
        name(loop_simd(), "portable")
    )
}

/// "model name, family F model M, flags" from the first processor of a /proc/cpuinfo text.
fn describe(cpuinfo: &str) -> String {
    let first = cpuinfo.split("\n\n").next().unwrap_or("");
    let field = |key: &str| {
        first.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let flags = field("flags").unwrap_or_default();
    let avx512: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| f.starts_with("avx512"))
        .collect();
    let avx2 = flags.split_whitespace().any(|f| f == "avx2");
    let vector = match (avx512.is_empty(), avx2) {
        (false, _) => avx512.join(" "),
        (true, true) => "avx2, no avx512".to_string(),
        (true, false) => "no avx2, no avx512".to_string(),
    };
    format!(
        "CPU {} (family {} model {}), {}",
        field("model name").unwrap_or_else(|| "unknown".into()),
        field("cpu family").unwrap_or_else(|| "?".into()),
        field("model").unwrap_or_else(|| "?".into()),
        vector
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_width_the_cpu_lacks_or_a_misspelling_is_refused_by_name() {
        let var = LOOP_SIMD_VAR;
        assert_eq!(choose(var, Some("none")), Ok(None));
        assert_eq!(choose(var, None), Ok(Simd::available().first().copied()));
        let err = choose(var, Some("avx-512")).unwrap_err().to_string();
        assert!(err.contains("VAELAB_LOOP_SIMD") && err.contains("avx512, avx2 and none"));
        for s in [Simd::Avx512, Simd::Avx2] {
            let got = choose(CONV_SIMD_VAR, Some(s.name()));
            if Simd::available().contains(&s) {
                assert_eq!(got, Ok(Some(s)));
            } else {
                assert!(matches!(got, Err(SimdError::Unsupported(..))));
            }
        }
    }

    #[test]
    fn the_cpu_line_names_family_model_and_avx512_flags() {
        let zen4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n\
                    model name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx avx2 fma avx512f avx512bw\n\n\
                    processor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            describe(zen4),
            "CPU AMD EPYC 9R14 (family 25 model 17), avx512f avx512bw"
        );
        let zen1 =
            "cpu family\t: 23\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7551\nflags\t: avx avx2 fma\n";
        assert_eq!(
            describe(zen1),
            "CPU AMD EPYC 7551 (family 23 model 1), avx2, no avx512"
        );
    }
}
