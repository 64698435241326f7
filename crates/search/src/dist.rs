//! One key's distribution, and the value at a point `u` of [0, 1).

use toml::Value;

/// How one run key is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// A float, uniform on [low, high].
    Uniform { low: f64, high: f64 },
    /// A float whose logarithm is uniform on [ln low, ln high] (learning rates).
    LogUniform { low: f64, high: f64 },
    /// An integer, each of low..=high equally likely.
    IntUniform { low: i64, high: i64 },
    /// An integer binned from a log-uniform draw: P(k) ∝ ln((k + 1) / k) (latent sizes).
    IntLogUniform { low: i64, high: i64 },
    /// One of the values, each equally likely.
    Choice(Vec<Value>),
}

/// What a distribution may be written as, for error messages.
pub const ALLOWED: &str = "{ uniform = [low, high] }, { log_uniform = [low, high] } (low > 0), \
{ int_uniform = [low, high] }, { int_log_uniform = [low, high] } (low ≥ 1) or { choice = [a, b, …] }";

fn pair_f64(v: &Value) -> Option<(f64, f64)> {
    let num = |v: &Value| match v {
        Value::Float(f) => Some(*f),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    };
    match v.as_array()?.as_slice() {
        [a, b] => Some((num(a)?, num(b)?)),
        _ => None,
    }
}

fn pair_i64(v: &Value) -> Option<(i64, i64)> {
    match v.as_array()?.as_slice() {
        [Value::Integer(a), Value::Integer(b)] => Some((*a, *b)),
        _ => None,
    }
}

impl Dist {
    /// Reads `{ name = [...] }`; the error says what is wrong and what is allowed.
    pub fn parse(value: &Value) -> Result<Dist, String> {
        let table = value
            .as_table()
            .filter(|t| t.len() == 1)
            .ok_or_else(|| format!("{value} is not a distribution; allowed: {ALLOWED}"))?;
        let (name, args) = table.iter().next().expect("one entry");
        let bad = |what: &str| format!("`{name} = {args}`: {what}; allowed: {ALLOWED}");
        let dist = match name.as_str() {
            "uniform" | "log_uniform" => {
                let (low, high) = pair_f64(args).ok_or_else(|| bad("not two numbers"))?;
                if !(low.is_finite() && high.is_finite()) || low >= high {
                    return Err(bad("needs finite low < high"));
                }
                if name == "uniform" {
                    Dist::Uniform { low, high }
                } else if low <= 0.0 {
                    return Err(bad("a log-uniform range needs low > 0"));
                } else {
                    Dist::LogUniform { low, high }
                }
            }
            "int_uniform" | "int_log_uniform" => {
                let (low, high) = pair_i64(args).ok_or_else(|| bad("not two integers"))?;
                if low >= high {
                    return Err(bad("needs low < high"));
                }
                if name == "int_uniform" {
                    Dist::IntUniform { low, high }
                } else if low < 1 {
                    return Err(bad("an integer log-uniform range needs low ≥ 1"));
                } else {
                    Dist::IntLogUniform { low, high }
                }
            }
            "choice" => {
                let values = args
                    .as_array()
                    .filter(|a| a.len() >= 2)
                    .ok_or_else(|| bad("not a list of two or more values"))?;
                Dist::Choice(values.clone())
            }
            _ => return Err(format!("unknown distribution `{name}`; allowed: {ALLOWED}")),
        };
        Ok(dist)
    }

    /// How many distinct values it has (None: as good as unlimited).
    pub fn size(&self) -> Option<u128> {
        match self {
            Dist::Uniform { .. } | Dist::LogUniform { .. } => None,
            Dist::IntUniform { low, high } | Dist::IntLogUniform { low, high } => {
                Some((*high as i128 - *low as i128 + 1) as u128)
            }
            Dist::Choice(values) => Some(values.len() as u128),
        }
    }

    /// The smallest and the largest value, to check each against the key's own rules.
    pub fn extremes(&self) -> Vec<Value> {
        match self {
            Dist::Uniform { low, high } | Dist::LogUniform { low, high } => {
                vec![Value::Float(*low), Value::Float(*high)]
            }
            Dist::IntUniform { low, high } | Dist::IntLogUniform { low, high } => {
                vec![Value::Integer(*low), Value::Integer(*high)]
            }
            Dist::Choice(values) => values.clone(),
        }
    }

    /// The value at `u` ∈ [0, 1): the distribution's quantile function.
    pub fn at(&self, u: f64) -> Value {
        let u = u.clamp(0.0, 1.0 - f64::EPSILON);
        match self {
            Dist::Uniform { low, high } => {
                Value::Float(round4(low + u * (high - low)).clamp(*low, *high))
            }
            Dist::LogUniform { low, high } => {
                let v = (low.ln() + u * (high.ln() - low.ln())).exp();
                Value::Float(round4(v).clamp(*low, *high))
            }
            Dist::IntUniform { low, high } => {
                let span = (*high as f64) - (*low as f64) + 1.0;
                Value::Integer((*low + (u * span).floor() as i64).min(*high))
            }
            Dist::IntLogUniform { low, high } => {
                let (a, b) = ((*low as f64).ln(), (*high as f64 + 1.0).ln());
                let k = (a + u * (b - a)).exp().floor() as i64;
                Value::Integer(k.clamp(*low, *high))
            }
            Dist::Choice(values) => {
                let i = ((u * values.len() as f64).floor() as usize).min(values.len() - 1);
                values[i].clone()
            }
        }
    }
}

/// `v` to four significant digits, through its decimal text (the same on every machine).
fn round4(v: f64) -> f64 {
    format!("{v:.3e}").parse().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(text: &str) -> Result<Dist, String> {
        let value: toml::Table = toml::from_str(&format!("d = {text}")).unwrap();
        Dist::parse(&value["d"])
    }

    #[test]
    fn every_form_parses_and_bad_ones_say_why() {
        assert_eq!(
            dist("{ log_uniform = [1e-4, 1e-2] }"),
            Ok(Dist::LogUniform {
                low: 1e-4,
                high: 1e-2
            })
        );
        assert_eq!(
            dist("{ uniform = [0, 4] }"),
            Ok(Dist::Uniform {
                low: 0.0,
                high: 4.0
            })
        );
        assert!(dist("{ int_uniform = [2, 64] }").is_ok());
        assert!(dist("{ choice = [\"bernoulli\", \"gaussian\"] }").is_ok());
        for (text, says) in [
            ("{ normal = [0, 1] }", "unknown distribution `normal`"),
            ("{ uniform = [4, 1] }", "low < high"),
            ("{ log_uniform = [0, 1] }", "low > 0"),
            ("{ int_uniform = [2.5, 64] }", "not two integers"),
            ("{ int_log_uniform = [0, 64] }", "low ≥ 1"),
            ("{ choice = [1] }", "two or more"),
            ("[1, 2]", "not a distribution"),
            (
                "{ uniform = [0, 1], choice = [1, 2] }",
                "not a distribution",
            ),
        ] {
            let err = dist(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains("allowed:"), "{text}: {err}");
        }
    }

    #[test]
    fn values_stay_in_range_and_hit_both_ends() {
        let int = Dist::IntUniform { low: 2, high: 5 };
        let seen: Vec<i64> = (0..400)
            .map(|i| int.at(i as f64 / 400.0).as_integer().unwrap())
            .collect();
        // Equal quarters of [0, 1) give each of 2, 3, 4, 5 exactly 100 times.
        for k in 2..=5 {
            assert_eq!(seen.iter().filter(|&&v| v == k).count(), 100, "{k}");
        }
        let log = Dist::LogUniform {
            low: 1e-4,
            high: 1e-2,
        };
        assert_eq!(log.at(0.0).as_float(), Some(1e-4));
        assert_eq!(log.at(0.5).as_float(), Some(1e-3));
        assert!(log.at(1.0).as_float().unwrap() <= 1e-2);
        let c = Dist::Choice(vec![Value::from("a"), Value::from("b"), Value::from("c")]);
        assert_eq!(c.at(0.0), Value::from("a"));
        assert_eq!(c.at(0.5), Value::from("b"));
        assert_eq!(c.at(0.999), Value::from("c"));
    }

    #[test]
    fn the_integer_log_uniform_weights_each_size_by_its_log_width() {
        // P(k) = ln((k + 1) / k) / ln((high + 1) / low): counted on a fine grid of u.
        let d = Dist::IntLogUniform { low: 2, high: 64 };
        let n = 1_000_000;
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..n {
            *counts
                .entry(d.at((i as f64 + 0.5) / n as f64).as_integer().unwrap())
                .or_insert(0usize) += 1;
        }
        assert_eq!(counts.keys().next(), Some(&2));
        assert_eq!(counts.keys().last(), Some(&64));
        let total = (65.0f64 / 2.0).ln();
        for (k, c) in counts {
            let p = ((k as f64 + 1.0) / k as f64).ln() / total;
            assert!((c as f64 / n as f64 - p).abs() < 1e-4, "{k}: {c} vs {p}");
        }
    }

    #[test]
    fn floats_keep_four_significant_digits() {
        let d = Dist::Uniform {
            low: 0.1,
            high: 4.0,
        };
        let v = d.at(0.123456789).as_float().unwrap();
        assert_eq!(v, 0.5815);
        assert_eq!(round4(3.14159e-4), 3.142e-4);
    }
}
