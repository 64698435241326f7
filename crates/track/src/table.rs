//! The Parquet tables of a run.

use crate::{stage_with, Staged, TrackError};
use polars::prelude::*;
use std::path::Path;

/// One epoch of one split, as stored in `metrics.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub run_id: String,
    pub epoch: u32,
    pub split: &'static str,
    pub loss: f64,
    pub neg_elbo: Option<f64>,
    pub recon: f64,
    pub kl: Option<f64>,
    pub kl_weighted: Option<f64>,
    pub beta: f64,
    pub kl_per_dim: Option<Vec<f64>>,
    pub active_units: Option<u32>,
    /// Active units per stochastic layer, z₁ first (null for the AE and in files written
    /// before the column existed).
    pub active_by_layer: Option<Vec<u32>>,
    /// −E_q log P(k|z) of the quantized test images, bits/dim (null in training rows).
    pub recon_bpd: Option<f64>,
    /// −ELBO with that mass, bits/dim (null for the AE and in training rows).
    pub elbo_bpd: Option<f64>,
    /// I_q(x; z) on the test images (test rows of VAE runs).
    pub mi: Option<f64>,
    /// Encoder (E-step) updates in the epoch (train rows).
    pub encoder_updates: Option<u64>,
    /// Decoder (M-step) updates in the epoch (train rows).
    pub decoder_updates: Option<u64>,
    pub seconds: f64,
    pub samples_per_sec: f64,
}

/// A typed, nullable value of a one-row table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(Option<i64>),
    Float(Option<f64>),
    Str(Option<String>),
}

impl Cell {
    /// A null of the same column type.
    pub fn null(self) -> Cell {
        match self {
            Cell::Int(_) => Cell::Int(None),
            Cell::Float(_) => Cell::Float(None),
            Cell::Str(_) => Cell::Str(None),
        }
    }
}

fn column<T, F: Fn(&MetricsRow) -> T>(rows: &[MetricsRow], name: &str, f: F) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    Series::new(name.into(), rows.iter().map(f).collect::<Vec<T>>()).into()
}

fn metrics_frame(rows: &[MetricsRow]) -> PolarsResult<DataFrame> {
    let kl_per_dim: ListChunked = rows
        .iter()
        .map(|r| r.kl_per_dim.as_ref().map(|v| Series::new("".into(), v)))
        .collect();
    let by_layer: ListChunked = rows
        .iter()
        .map(|r| {
            r.active_by_layer
                .as_ref()
                .map(|v| Series::new("".into(), v))
        })
        .collect();
    DataFrame::new(
        rows.len(),
        vec![
            column(rows, "run_id", |r| r.run_id.clone()),
            column(rows, "epoch", |r| r.epoch),
            column(rows, "split", |r| r.split.to_string()),
            column(rows, "loss", |r| r.loss),
            column(rows, "neg_elbo", |r| r.neg_elbo),
            column(rows, "recon", |r| r.recon),
            column(rows, "kl", |r| r.kl),
            column(rows, "kl_weighted", |r| r.kl_weighted),
            column(rows, "kl_weight", |r| r.beta),
            kl_per_dim
                .with_name("kl_per_dim".into())
                .into_series()
                .into(),
            column(rows, "active_units", |r| r.active_units),
            by_layer
                .with_name("active_units_by_layer".into())
                .into_series()
                .into(),
            column(rows, "recon_bpd", |r| r.recon_bpd),
            column(rows, "elbo_bpd", |r| r.elbo_bpd),
            column(rows, "mi", |r| r.mi),
            column(rows, "encoder_updates", |r| r.encoder_updates),
            column(rows, "decoder_updates", |r| r.decoder_updates),
            column(rows, "seconds", |r| r.seconds),
            column(rows, "samples_per_sec", |r| r.samples_per_sec),
        ],
    )
}

/// Writes any frame to `path` as Parquet, atomically.
pub fn write_frame(path: &Path, df: DataFrame) -> Result<(), TrackError> {
    stage_frame(path, df)?.commit()
}

/// Stages a frame as Parquet for `path` (see [`Staged`]).
pub fn stage_frame(path: &Path, mut df: DataFrame) -> Result<Staged, TrackError> {
    stage_with(path, |tmp| {
        let file = std::fs::File::create(tmp).map_err(|e| e.to_string())?;
        ParquetWriter::new(file)
            .finish(&mut df)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// Writes every epoch row so far to `path` (the whole table, atomically).
pub fn write_metrics(path: &Path, rows: &[MetricsRow]) -> Result<(), TrackError> {
    stage_metrics(path, rows)?.commit()
}

/// Stages every epoch row so far for `path` (see [`Staged`]).
pub fn stage_metrics(path: &Path, rows: &[MetricsRow]) -> Result<Staged, TrackError> {
    let df = metrics_frame(rows).map_err(|source| TrackError::Polars {
        path: path.into(),
        source,
    })?;
    stage_frame(path, df)
}

/// Reads a whole Parquet file; errors name the path.
pub fn read_frame(path: &Path) -> Result<DataFrame, TrackError> {
    let read_err = |reason: String| TrackError::Read {
        path: path.into(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| read_err(e.to_string()))
}

/// Reads a table written by [`write_metrics`].
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>, TrackError> {
    let err = |e: PolarsError| TrackError::Read {
        path: path.into(),
        reason: e.to_string(),
    };
    let df = read_frame(path)?;
    let f64s = |c: &str| -> Result<Vec<Option<f64>>, TrackError> {
        Ok(df
            .column(c)
            .and_then(|c| c.f64().cloned())
            .map_err(err)?
            .iter()
            .collect())
    };
    let (loss, neg_elbo, recon, kl) = (
        f64s("loss")?,
        f64s("neg_elbo")?,
        f64s("recon")?,
        f64s("kl")?,
    );
    // Tables written before bits/dim existed have no such columns: nulls.
    let optional = |c: &str| -> Result<Vec<Option<f64>>, TrackError> {
        if df.column(c).is_ok() {
            f64s(c)
        } else {
            Ok(vec![None; df.height()])
        }
    };
    let (recon_bpd, elbo_bpd) = (optional("recon_bpd")?, optional("elbo_bpd")?);
    let mi = optional("mi")?;
    // Tables written before the schedules existed have no update counts: nulls.
    let counts = |c: &str| -> Result<Vec<Option<u64>>, TrackError> {
        match df.column(c) {
            Ok(col) => Ok(col.u64().map_err(err)?.iter().collect()),
            Err(_) => Ok(vec![None; df.height()]),
        }
    };
    let (enc_updates, dec_updates) = (counts("encoder_updates")?, counts("decoder_updates")?);
    let (kl_weighted, beta, seconds, sps) = (
        f64s("kl_weighted")?,
        f64s("kl_weight")?,
        f64s("seconds")?,
        f64s("samples_per_sec")?,
    );
    let strs = |c: &str| -> Result<Vec<Option<String>>, TrackError> {
        Ok(df
            .column(c)
            .and_then(|c| c.str().cloned())
            .map_err(err)?
            .iter()
            .map(|s| s.map(String::from))
            .collect())
    };
    let u32s = |c: &str| -> Result<Vec<Option<u32>>, TrackError> {
        Ok(df
            .column(c)
            .and_then(|c| c.u32().cloned())
            .map_err(err)?
            .iter()
            .collect())
    };
    let (run_id, split) = (strs("run_id")?, strs("split")?);
    let (epoch, active) = (u32s("epoch")?, u32s("active_units")?);
    let dims = df
        .column("kl_per_dim")
        .and_then(|c| c.list().cloned())
        .map_err(err)?;
    // Files from before the column existed read as nulls.
    let by_layer = df
        .column("active_units_by_layer")
        .ok()
        .and_then(|c| c.list().ok().cloned());
    let missing = |what: &str| TrackError::Read {
        path: path.into(),
        reason: format!("null {what}"),
    };
    (0..df.height())
        .map(|i| {
            let kl_per_dim = match dims.get_as_series(i) {
                Some(s) => Some(
                    s.f64()
                        .map_err(err)?
                        .iter()
                        .map(|v| v.unwrap_or(f64::NAN))
                        .collect(),
                ),
                None => None,
            };
            let active_by_layer = match by_layer.as_ref().and_then(|l| l.get_as_series(i)) {
                Some(s) => Some(
                    s.u32()
                        .map_err(err)?
                        .iter()
                        .map(|v| v.unwrap_or(0))
                        .collect(),
                ),
                None => None,
            };
            Ok(MetricsRow {
                run_id: run_id[i].clone().ok_or_else(|| missing("run_id"))?,
                epoch: epoch[i].ok_or_else(|| missing("epoch"))?,
                split: match split[i].as_deref() {
                    Some("train") => "train",
                    Some("test") => "test",
                    _ => return Err(missing("split")),
                },
                loss: loss[i].ok_or_else(|| missing("loss"))?,
                neg_elbo: neg_elbo[i],
                recon: recon[i].ok_or_else(|| missing("recon"))?,
                kl: kl[i],
                kl_weighted: kl_weighted[i],
                beta: beta[i].ok_or_else(|| missing("beta"))?,
                kl_per_dim,
                active_units: active[i],
                active_by_layer,
                recon_bpd: recon_bpd[i],
                elbo_bpd: elbo_bpd[i],
                mi: mi[i],
                encoder_updates: enc_updates[i],
                decoder_updates: dec_updates[i],
                seconds: seconds[i].ok_or_else(|| missing("seconds"))?,
                samples_per_sec: sps[i].ok_or_else(|| missing("samples_per_sec"))?,
            })
        })
        .collect()
}

/// A table of `height` rows, each cell repeated down its own typed column.
pub fn frame_of_cells(cells: &[(String, Cell)], height: usize) -> PolarsResult<DataFrame> {
    let columns: Vec<Column> = cells
        .iter()
        .map(|(name, cell)| {
            let name = name.as_str().into();
            match cell {
                Cell::Int(v) => Series::new(name, vec![*v; height]),
                Cell::Float(v) => Series::new(name, vec![*v; height]),
                Cell::Str(v) => Series::new(name, vec![v.clone(); height]),
            }
            .into()
        })
        .collect();
    DataFrame::new(height, columns)
}

/// The final-metric columns of `summary.parquet` (and so of a sweep's `runs.parquet`), in the
/// order they are written; every other column but `run_id` and `status` is a config key.
pub const SUMMARY_METRICS: &[&str] = &[
    "test_neg_elbo",
    "test_recon",
    "test_kl",
    "test_loss",
    "train_neg_elbo",
    "train_recon",
    "log_px_iw",
    "elbo_iw",
    "elbo_gap",
    "iw_seconds",
    "elbo_star",
    "amortization_gap",
    "approximation_gap",
    "estep_seconds",
    "active_units",
    "active_units_by_layer",
    "test_mi",
    "wall_seconds",
    "test_recon_bpd",
    "test_elbo_bpd",
    "nll_bpd",
    "data_levels",
    "bpd_scored_as",
    "iw_khat_bound",
    "iw_khat_share",
    "iw_khat_max",
    "log_px_iw_star",
    "gap_log_px",
    "gap_log_px_from",
    "log_px_ais",
    "ais_chain_sd",
    "ais_acceptance",
    "ais_seconds",
    "bdmc_lower",
    "bdmc_upper",
    "bdmc_width",
    "bdmc_seconds",
    "log_px_iw_se",
    "elbo_iw_se",
    "log_px_ais_se",
    "log_px_iw_star_se",
    "elbo_star_se",
    "bdmc_lower_se",
    "bdmc_upper_se",
    "estep_steps",
];

/// Writes the E-step's convergence curve: `iter` (Adam steps taken) and `elbo` (mean estimate).
pub fn write_estep_curve(path: &Path, curve: &[f64]) -> Result<(), TrackError> {
    let iters: Vec<i64> = (0..curve.len() as i64).collect();
    let df = DataFrame::new(
        curve.len(),
        vec![
            Column::new("iter".into(), iters),
            Column::new("elbo".into(), curve),
        ],
    )
    .map_err(|source| TrackError::Polars {
        path: path.into(),
        source,
    })?;
    write_frame(path, df)
}

/// Writes a one-row table of named cells to `path`, each cell its own typed column.
pub fn write_summary(path: &Path, cells: &[(String, Cell)]) -> Result<(), TrackError> {
    let df = frame_of_cells(cells, 1).map_err(|source| TrackError::Polars {
        path: path.into(),
        source,
    })?;
    write_frame(path, df)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: u32, split: &'static str, kl: Option<f64>) -> MetricsRow {
        MetricsRow {
            run_id: "r".into(),
            epoch,
            split,
            loss: 1.0,
            neg_elbo: kl.map(|k| 1.0 + k),
            recon: 1.0,
            kl,
            kl_weighted: kl,
            beta: 1.0,
            kl_per_dim: kl.map(|k| vec![k / 2.0, k / 2.0]),
            active_units: kl.map(|_| 2),
            active_by_layer: kl.map(|_| vec![1, 1]),
            recon_bpd: kl.map(|k| k / 10.0),
            elbo_bpd: None,
            mi: kl.map(|k| k / 3.0),
            encoder_updates: Some(u64::from(epoch) * 7),
            decoder_updates: None,
            seconds: 0.5,
            samples_per_sec: 100.0,
        }
    }

    #[test]
    fn metrics_round_trip_with_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.parquet");
        write_metrics(&p, &[row(1, "train", Some(3.0)), row(1, "test", None)]).unwrap();
        let df = ParquetReader::new(std::fs::File::open(&p).unwrap())
            .finish()
            .unwrap();
        assert_eq!(df.height(), 2);
        assert_eq!(df.column("epoch").unwrap().dtype(), &DataType::UInt32);
        let kl = df.column("kl").unwrap().f64().unwrap().clone();
        assert_eq!((kl.get(0), kl.get(1)), (Some(3.0), None));
        let dims = df
            .column("kl_per_dim")
            .unwrap()
            .list()
            .unwrap()
            .get_as_series(0)
            .unwrap();
        assert_eq!(dims.f64().unwrap().get(1), Some(1.5));
        let back = read_metrics(&p).unwrap();
        assert_eq!(back[0].recon_bpd, Some(0.3));
        assert_eq!((back[1].recon_bpd, back[0].elbo_bpd), (None, None));
    }

    #[test]
    fn summary_is_one_typed_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.parquet");
        let cells = vec![
            ("latent_dim".to_string(), Cell::Int(Some(20))),
            ("log_px_iw".to_string(), Cell::Float(None)),
            ("model".to_string(), Cell::Str(Some("ae".into()))),
        ];
        write_summary(&p, &cells).unwrap();
        let df = ParquetReader::new(std::fs::File::open(&p).unwrap())
            .finish()
            .unwrap();
        assert_eq!(df.shape(), (1, 3));
        assert_eq!(
            df.column("latent_dim").unwrap().i64().unwrap().get(0),
            Some(20)
        );
        assert_eq!(df.column("log_px_iw").unwrap().f64().unwrap().get(0), None);
    }
}
